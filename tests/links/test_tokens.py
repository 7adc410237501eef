"""Signed link tokens and the key that signs them."""

from __future__ import annotations

import os
import re
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import ConfigError, FlareStartError
from bot.links.secret import SECRET_FILE_NAME, resolve_secret
from bot.links.tokens import (
    _PAYLOAD,
    CONFIRM_MAX_AGE,
    MAX_SUBSCRIBER_ID,
    InvalidTokenError,
    Purpose,
    _encode,
    _sign,
    confirm_url,
    make_token,
    preferences_url,
    read_token,
    read_token_claims,
    unsubscribe_url,
)

SECRET = b"a-test-secret-that-is-long-enough"
NOW = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
URL_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


def flip(text: str, index: int) -> str:
    """The same text with one base64url character changed (a middle one, so still canonical)."""
    replacement = "B" if text[index] != "B" else "C"
    return text[:index] + replacement + text[index + 1 :]


def reason_of(token: str, *, purpose: Purpose = "unsubscribe", max_age: timedelta | None = None) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        read_token(SECRET, token, purpose=purpose, max_age=max_age, now=NOW)
    return caught.value.reason


@pytest.mark.parametrize("purpose", ["unsubscribe", "confirm", "preferences"])
def test_a_token_round_trips_its_subscriber_purpose_and_time(purpose: Purpose) -> None:
    token = make_token(SECRET, purpose=purpose, subscriber_id=4242, issued_at=NOW)

    claims = read_token_claims(SECRET, token, purpose=purpose, max_age=None, now=NOW)

    assert URL_SAFE.fullmatch(token) and len(token) < 64
    assert read_token(SECRET, token, purpose=purpose, max_age=None, now=NOW) == 4242
    assert (claims.purpose, claims.subscriber_id, claims.issued_at) == (purpose, 4242, NOW)


def test_tokens_default_to_now_and_carry_big_ids() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    token = make_token(SECRET, purpose="confirm", subscriber_id=MAX_SUBSCRIBER_ID)

    claims = read_token_claims(SECRET, token, purpose="confirm", max_age=CONFIRM_MAX_AGE, now=NOW)

    assert claims.subscriber_id == MAX_SUBSCRIBER_ID
    assert before <= claims.issued_at <= datetime.now(UTC)


def test_a_tampered_payload_is_forged() -> None:
    payload, mac = make_token(SECRET, purpose="unsubscribe", subscriber_id=7).split(".")

    assert reason_of(f"{flip(payload, 10)}.{mac}") == "forged"


def test_a_tampered_signature_is_forged() -> None:
    payload, mac = make_token(SECRET, purpose="unsubscribe", subscriber_id=7).split(".")

    assert reason_of(f"{payload}.{flip(mac, 5)}") == "forged"


def test_a_token_from_another_key_is_forged() -> None:
    token = make_token(b"some-other-secret-key-entirely!", purpose="unsubscribe", subscriber_id=7)

    assert reason_of(token) == "forged"


def test_one_tokens_payload_with_anothers_signature_is_forged() -> None:
    mine = make_token(SECRET, purpose="unsubscribe", subscriber_id=7).split(".")
    theirs = make_token(SECRET, purpose="unsubscribe", subscriber_id=8).split(".")

    assert reason_of(f"{theirs[0]}.{mine[1]}") == "forged"


def test_an_unsubscribe_token_does_not_confirm_and_back() -> None:
    unsubscribe = make_token(SECRET, purpose="unsubscribe", subscriber_id=7)
    confirm = make_token(SECRET, purpose="confirm", subscriber_id=7)

    assert reason_of(unsubscribe, purpose="confirm", max_age=CONFIRM_MAX_AGE) == "wrong_purpose"
    assert reason_of(confirm, purpose="unsubscribe") == "wrong_purpose"


def test_a_preferences_token_is_good_for_preferences_only_and_never_expires() -> None:
    preferences = make_token(
        SECRET, purpose="preferences", subscriber_id=7, issued_at=NOW - timedelta(days=3650)
    )
    unsubscribe = make_token(SECRET, purpose="unsubscribe", subscriber_id=7)

    assert read_token(SECRET, preferences, purpose="preferences", max_age=None, now=NOW) == 7
    assert reason_of(preferences, purpose="unsubscribe") == "wrong_purpose"
    assert reason_of(preferences, purpose="confirm", max_age=CONFIRM_MAX_AGE) == "wrong_purpose"
    assert reason_of(unsubscribe, purpose="preferences") == "wrong_purpose"


def test_a_confirm_token_expires_after_seven_days() -> None:
    fresh = make_token(SECRET, purpose="confirm", subscriber_id=7, issued_at=NOW - timedelta(days=6))
    stale = make_token(
        SECRET, purpose="confirm", subscriber_id=7, issued_at=NOW - CONFIRM_MAX_AGE - timedelta(seconds=1)
    )

    assert read_token(SECRET, fresh, purpose="confirm", max_age=CONFIRM_MAX_AGE, now=NOW) == 7
    assert reason_of(stale, purpose="confirm", max_age=CONFIRM_MAX_AGE) == "expired"


def test_an_unsubscribe_token_from_years_ago_still_works() -> None:
    old = make_token(SECRET, purpose="unsubscribe", subscriber_id=7, issued_at=NOW - timedelta(days=3650))

    assert read_token(SECRET, old, purpose="unsubscribe", max_age=None, now=NOW) == 7


def _valid() -> str:
    return make_token(SECRET, purpose="unsubscribe", subscriber_id=7, issued_at=NOW)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        ".",
        "a.b",
        "abc.def.ghi",
        "x" * 1000 + "." + "y" * 22,
        "payload with spaces.signature",
        "é.é",
        "AAAA.AAAA",
        _valid() + "==",
        _valid() + ".extra",
        _valid().replace(".", ".."),
        _valid()[:3] + "+" + _valid()[4:],  # standard base64, not base64url
        _valid()[:-1],  # a signature cut short
    ],
)
def test_malformed_strings_are_malformed(token: str) -> None:
    reason = reason_of(token)

    # A cut or re-spelled token may still decode to the right length: then only the MAC can tell.
    assert reason in ("malformed", "forged")
    if token in ("", "abc", ".", "a.b", "abc.def.ghi", "é.é", "AAAA.AAAA"):
        assert reason == "malformed"


def test_a_non_canonical_spelling_of_a_valid_token_is_refused() -> None:
    token = _valid()
    payload, mac = token.split(".")
    # 16 MAC bytes are 22 characters whose last one carries 4 unused bits: set one of them.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = alphabet[alphabet.index(mac[-1]) ^ 1]

    assert reason_of(f"{payload}.{mac[:-1]}{twin}") == "malformed"


def test_invalid_token_error_is_an_expected_error_with_a_reason() -> None:
    error = InvalidTokenError("forged", "the link's signature does not match")

    assert isinstance(error, FlareStartError) and error.reason == "forged"


def test_make_token_refuses_what_it_cannot_sign() -> None:
    with pytest.raises(ValueError, match="naive"):
        make_token(SECRET, purpose="confirm", subscriber_id=1, issued_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="subscriber id must be from 1"):
        make_token(SECRET, purpose="confirm", subscriber_id=0)
    with pytest.raises(ValueError, match="empty secret"):
        make_token(b"", purpose="confirm", subscriber_id=1)


def test_urls_put_the_token_under_the_base_url() -> None:
    unsubscribe = unsubscribe_url("https://news.example.com/", SECRET, 7)
    confirm = confirm_url("https://news.example.com", SECRET, 7)
    preferences = preferences_url("https://news.example.com/", SECRET, 7)

    assert unsubscribe.startswith("https://news.example.com/u/")
    assert confirm.startswith("https://news.example.com/confirm/")
    assert preferences.startswith("https://news.example.com/p/")
    token = unsubscribe.rsplit("/", 1)[1]
    assert read_token(SECRET, token, purpose="unsubscribe", max_age=None, now=NOW) == 7
    token = preferences.rsplit("/", 1)[1]
    assert read_token(SECRET, token, purpose="preferences", max_age=None, now=NOW) == 7


# -- the signing key ---------------------------------------------------------------------------


def test_the_configured_secret_key_wins(settings: Settings) -> None:
    configured = settings.model_copy(update={"secret_key": "k" * 40})

    assert resolve_secret(configured) == b"k" * 40
    assert not (settings.data_dir / SECRET_FILE_NAME).exists()


def test_without_a_secret_key_one_is_made_once_and_kept_private(settings: Settings) -> None:
    first = resolve_secret(settings)
    second = resolve_secret(settings)

    path = settings.data_dir / SECRET_FILE_NAME
    assert first == second
    assert re.fullmatch(rb"[0-9a-f]{64}", first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [SECRET_FILE_NAME]  # no temporary left over


def test_processes_starting_together_agree_on_one_key(settings: Settings) -> None:
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        keys.append(resolve_secret(settings))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(keys) == 8 and len(set(keys)) == 1
    assert (settings.data_dir / SECRET_FILE_NAME).read_bytes().strip() == keys[0]


def test_the_kept_key_can_move_to_secret_key(settings: Settings) -> None:
    kept = resolve_secret(settings)
    moved = settings.model_copy(update={"secret_key": kept.decode()})

    token = make_token(kept, purpose="unsubscribe", subscriber_id=3)

    assert read_token(resolve_secret(moved), token, purpose="unsubscribe", max_age=None, now=NOW) == 3


def test_a_damaged_key_file_is_a_config_error(settings: Settings) -> None:
    path: Path = settings.data_dir / SECRET_FILE_NAME
    path.parent.mkdir(parents=True)
    path.write_text("short\n")
    os.chmod(path, 0o600)

    with pytest.raises(ConfigError, match="no usable key"):
        resolve_secret(settings)


def test_a_signed_token_with_an_id_no_database_holds_is_malformed() -> None:
    for impossible in (MAX_SUBSCRIBER_ID + 1, 2**64 - 1):
        payload = _PAYLOAD.pack(1, 1, impossible, int(NOW.timestamp()))
        token = f"{_encode(payload)}.{_encode(_sign(SECRET, payload))}"
        assert reason_of(token) == "malformed"
    with pytest.raises(ValueError, match="subscriber id"):
        make_token(SECRET, purpose="unsubscribe", subscriber_id=MAX_SUBSCRIBER_ID + 1)


def test_a_view_token_names_one_digest_and_nothing_else() -> None:
    from bot.links.tokens import make_view_token, read_view_token

    key = b"a-key-for-view-tokens-only"
    token = make_view_token(key, subscriber_id=42, period="2026-W48")

    assert read_view_token(key, token) == (42, "2026-W48")
    with pytest.raises(InvalidTokenError) as forged:
        read_view_token(b"another-key-entirely", token)
    assert forged.value.reason == "forged"
    lifecycle = make_token(key, purpose="preferences", subscriber_id=42)
    with pytest.raises(InvalidTokenError):  # a preferences link does not open a digest
        read_view_token(key, lifecycle)
    with pytest.raises(InvalidTokenError):  # nor a view link change preferences
        read_token(key, token, purpose="preferences", max_age=None, now=datetime.now(UTC))
    with pytest.raises(ValueError):
        make_view_token(key, subscriber_id=42, period="not a period!")
