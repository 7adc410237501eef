"""Signed links for the subscriber lifecycle: one-click unsubscribe, double opt-in confirmation,
the preferences page and "subscribe again" (a re-opt-in that lifts a suppression).

Nothing is stored on the server: a token carries what it is for, whom it concerns and when it was
made, and an HMAC over those with the secret key proves we made it. The format is

    token     = base64url(payload) "." base64url(signature)      (no padding, URL-safe)
    payload   = version (1 byte) | purpose (1) | subscriber id (8) | issued at (8, Unix seconds)
    signature = HMAC-SHA256(secret, DOMAIN + payload), first 16 bytes

about 47 characters. Unsubscribe and preferences tokens never expire (links in old mails must
keep working); confirmation tokens expire after CONFIRM_MAX_AGE. A token is good for its one
purpose only: a preferences link cannot unsubscribe, nor an unsubscribe link change preferences.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from bot.errors import FlareStartError

Purpose = Literal["unsubscribe", "confirm", "preferences", "again"]
Reason = Literal["malformed", "forged", "wrong_purpose", "expired", "stale"]

CONFIRM_MAX_AGE = timedelta(days=7)
# How long a token of each purpose stays valid; None = forever.
MAX_AGE: dict[Purpose, timedelta | None] = {
    "unsubscribe": None,
    "confirm": CONFIRM_MAX_AGE,
    "preferences": None,
    "again": CONFIRM_MAX_AGE,  # a re-opt-in is a confirmation: it expires like one
}
UNSUBSCRIBE_PATH = "/u/{token}"
CONFIRM_PATH = "/confirm/{token}"
PREFERENCES_PATH = "/p/{token}"
# "Subscribe again": the id in an `again` token is a suppression's, not a subscriber's.
AGAIN_PATH = "/again/{token}"
AGAIN_REQUEST_PATH = "/u/{token}/again"  # the unsubscribe page's button: mail me a re-opt-in link

_VERSION = 1
_PURPOSE_CODES: dict[Purpose, int] = {"unsubscribe": 1, "confirm": 2, "preferences": 3, "again": 4}
_PURPOSES_BY_CODE = {code: purpose for purpose, code in _PURPOSE_CODES.items()}
_PAYLOAD = struct.Struct(">BBQQ")
_MAC_BYTES = 16
# Keeps these MACs apart from anything else that might one day be signed with the same key.
_DOMAIN = b"flarestart-link\x00"
# Well above a real token (24 + 1 + 22 characters); anything longer is not worth decoding.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64}")
# The payload has room for 2**64 - 1, but subscribers.id is an INTEGER: 32 bits on PostgreSQL,
# which fails a lookup of a larger one rather than finding nobody (SQLite fails past 2**63 - 1).
MAX_SUBSCRIBER_ID = 2**31 - 1


class InvalidTokenError(FlareStartError):
    """A link token we cannot honour. `reason` says why; the link must change nothing."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token says."""

    purpose: Purpose
    subscriber_id: int
    issued_at: datetime


def make_token(
    secret: bytes,
    *,
    purpose: Purpose,
    subscriber_id: int,
    issued_at: datetime | None = None,
) -> str:
    """A URL-safe token that lets whoever holds it act on one subscriber for one purpose."""
    _check_secret(secret)
    if purpose not in _PURPOSE_CODES:
        raise ValueError(f"unknown token purpose {purpose!r}; expected one of {get_args(Purpose)}")
    if not 1 <= subscriber_id <= MAX_SUBSCRIBER_ID:
        raise ValueError(f"subscriber id must be from 1 to {MAX_SUBSCRIBER_ID}, got {subscriber_id}")
    moment = datetime.now(UTC) if issued_at is None else issued_at
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: give issued_at a time zone")
    payload = _PAYLOAD.pack(_VERSION, _PURPOSE_CODES[purpose], subscriber_id, int(moment.timestamp()))
    return f"{_encode(payload)}.{_encode(_sign(secret, payload))}"


def read_token(
    secret: bytes,
    token: str,
    *,
    purpose: Purpose,
    max_age: timedelta | None,
    now: datetime,
) -> int:
    """The subscriber id of a valid token; raises InvalidTokenError (forged, wrong_purpose,
    expired, malformed) otherwise."""
    return read_token_claims(secret, token, purpose=purpose, max_age=max_age, now=now).subscriber_id


def read_token_claims(
    secret: bytes,
    token: str,
    *,
    purpose: Purpose,
    max_age: timedelta | None,
    now: datetime,
) -> TokenClaims:
    """Verify a token and return everything it says (read_token returns only the subscriber id)."""
    _check_secret(secret)
    if not _TOKEN_SHAPE.fullmatch(token):
        raise InvalidTokenError("malformed", "the link is incomplete or damaged")
    encoded_payload, encoded_mac = token.split(".")
    try:
        payload, mac = _decode(encoded_payload), _decode(encoded_mac)
    except ValueError:
        raise InvalidTokenError("malformed", "the link is incomplete or damaged") from None
    if len(mac) != _MAC_BYTES:
        raise InvalidTokenError("malformed", "the link is incomplete or damaged")
    if not hmac.compare_digest(mac, _sign(secret, payload)):
        raise InvalidTokenError("forged", "the link's signature does not match")
    # Past the signature the payload is our own; a bad shape means an older or newer format.
    if len(payload) != _PAYLOAD.size:
        raise InvalidTokenError("malformed", "the link has a format this version cannot read")
    version, code, subscriber_id, issued = _PAYLOAD.unpack(payload)
    token_purpose = _PURPOSES_BY_CODE.get(code)
    if version != _VERSION or token_purpose is None or not 1 <= subscriber_id <= MAX_SUBSCRIBER_ID:
        raise InvalidTokenError("malformed", "the link has a format this version cannot read")
    if token_purpose != purpose:
        raise InvalidTokenError("wrong_purpose", f"the link is for {token_purpose}, not {purpose}")
    issued_at = datetime.fromtimestamp(issued, UTC)
    if max_age is not None and now - issued_at > max_age:
        raise InvalidTokenError("expired", f"the {purpose} link has expired")
    return TokenClaims(purpose=token_purpose, subscriber_id=subscriber_id, issued_at=issued_at)


def unsubscribe_url(
    base_url: str, secret: bytes, subscriber_id: int, *, issued_at: datetime | None = None
) -> str:
    """The one-click unsubscribe URL for mails (List-Unsubscribe) and digests' footers."""
    token = make_token(secret, purpose="unsubscribe", subscriber_id=subscriber_id, issued_at=issued_at)
    return base_url.rstrip("/") + UNSUBSCRIBE_PATH.format(token=token)


def confirm_url(
    base_url: str, secret: bytes, subscriber_id: int, *, issued_at: datetime | None = None
) -> str:
    """The double opt-in URL for a pending subscriber's confirmation mail."""
    token = make_token(secret, purpose="confirm", subscriber_id=subscriber_id, issued_at=issued_at)
    return base_url.rstrip("/") + CONFIRM_PATH.format(token=token)


def preferences_url(
    base_url: str, secret: bytes, subscriber_id: int, *, issued_at: datetime | None = None
) -> str:
    """The preferences page for digests' footers ("Choose your topics and time")."""
    token = make_token(secret, purpose="preferences", subscriber_id=subscriber_id, issued_at=issued_at)
    return base_url.rstrip("/") + PREFERENCES_PATH.format(token=token)


def again_url(base_url: str, secret: bytes, suppression_id: int, *, issued_at: datetime | None = None) -> str:
    """The re-opt-in link of a "subscribe again" mail: it lifts suppression `suppression_id`."""
    token = make_token(secret, purpose="again", subscriber_id=suppression_id, issued_at=issued_at)
    return base_url.rstrip("/") + AGAIN_PATH.format(token=token)


def _sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, _DOMAIN + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _check_secret(secret: bytes) -> None:
    if not secret:
        raise ValueError("an empty secret signs nothing")


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None
    # Only the canonical spelling counts: otherwise one token would have several valid forms.
    if _encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


# -- "view in browser": one digest of one subscriber ----------------------------------------------
#
# A digest is (subscriber, period): the token signs both, under a MAC domain of its own, so no
# lifecycle token reads as a view token or the other way round. It never expires (old mails'
# links keep working) and it only shows what was sent; it changes nothing.

VIEW_PATH = "/d/{token}"
_VIEW_VERSION = 1
_VIEW_HEAD = struct.Struct(">BQ")
_VIEW_DOMAIN = b"flarestart-view\x00"
_PERIOD_SHAPE = re.compile(r"[0-9A-Za-z:_-]{1,20}")


def make_view_token(secret: bytes, *, subscriber_id: int, period: str) -> str:
    """The token of /d/{token}: this subscriber's digest of this period, as sent."""
    _check_secret(secret)
    if not 1 <= subscriber_id <= MAX_SUBSCRIBER_ID:
        raise ValueError(f"subscriber id must be from 1 to {MAX_SUBSCRIBER_ID}, got {subscriber_id}")
    if not _PERIOD_SHAPE.fullmatch(period):
        raise ValueError(f"period {period!r} is not a digest period")
    payload = _VIEW_HEAD.pack(_VIEW_VERSION, subscriber_id) + period.encode("ascii")
    mac = hmac.new(secret, _VIEW_DOMAIN + payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return f"{_encode(payload)}.{_encode(mac)}"


def read_view_token(secret: bytes, token: str) -> tuple[int, str]:
    """(subscriber id, period) of a valid view token; InvalidTokenError otherwise."""
    _check_secret(secret)
    if not _TOKEN_SHAPE.fullmatch(token):
        raise InvalidTokenError("malformed", "the link is incomplete or damaged")
    encoded_payload, encoded_mac = token.split(".")
    try:
        payload, mac = _decode(encoded_payload), _decode(encoded_mac)
    except ValueError:
        raise InvalidTokenError("malformed", "the link is incomplete or damaged") from None
    expected = hmac.new(secret, _VIEW_DOMAIN + payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, expected):
        raise InvalidTokenError("forged", "the link's signature does not match")
    if len(payload) <= _VIEW_HEAD.size:
        raise InvalidTokenError("malformed", "the link has a format this version cannot read")
    version, subscriber_id = _VIEW_HEAD.unpack(payload[: _VIEW_HEAD.size])
    period = payload[_VIEW_HEAD.size :].decode("ascii", errors="replace")
    if version != _VIEW_VERSION or not _PERIOD_SHAPE.fullmatch(period):
        raise InvalidTokenError("malformed", "the link has a format this version cannot read")
    return subscriber_id, period


def view_url(base_url: str, secret: bytes, subscriber_id: int, period: str) -> str:
    """The digest's "View in browser" link; "" for a period no digest page can show (none of ours:
    a day, a week, a test send), so a digest is never held up by its link."""
    if not _PERIOD_SHAPE.fullmatch(period):
        return ""
    token = make_view_token(secret, subscriber_id=subscriber_id, period=period)
    return base_url.rstrip("/") + VIEW_PATH.format(token=token)
