"""An unsubscribe is forever: kept by address, whatever syncs do to the subscriber rows (issue 14,
item 1). The issue's own scenario through the real doors (the web's POST /u/…, `subscribers sync`,
`send --now` against aiosmtpd), and the operator's `subscribers suppressions list|remove`, on
SQLite and PostgreSQL."""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.app import FlareStart
from bot.config import Settings, load_settings
from bot.links.tokens import make_token
from bot.store.subscribers import SubscriberStore
from bot.web.app import create_app
from tests.channels.smtp_server import SmtpServer
from tests.cli.conftest import Runner
from tests.delivery.helpers import stocked_store
from tests.web.conftest import running

SECRET = "a-test-secret-key-for-signed-links"
TEAM = """\
# the platform team

[[subscriber]]
email = "ada@example.com"
name = "Ada"
timezone = "UTC"
topics = ["python"]

[[subscriber]]
email = "grace@example.com"
timezone = "UTC"
topics = ["python"]
"""


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def settings_env(run: Runner, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI's environment with SMTP on aiosmtpd and a known key; the same Settings for the web."""
    monkeypatch.setenv("SMTP_URL", smtp.url())
    monkeypatch.setenv("FLARESTART_EMAIL_ALLOW_PLAIN", "1")
    monkeypatch.setenv("SECRET_KEY", SECRET)
    settings = load_settings()
    stocked_store(settings).close()  # a source with today's Python stories: send --now has a digest
    return settings


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "subscribers"
    path.mkdir()
    (path / "team.toml").write_text(TEAM, encoding="utf-8")
    return path


def subscriber_id(settings: Settings, email: str) -> int:
    with FlareStart(settings, seed=False) as app:
        found = app.get_subscriber(email).id
    assert found is not None
    return found


def test_an_unsubscribe_survives_the_entry_going_away_and_coming_back(
    run: Runner, settings_env: Settings, folder: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    assert run("subscribers", "sync", str(folder)).code == 0
    ada = subscriber_id(settings_env, "ada@example.com")
    link = "/u/" + make_token(SECRET.encode(), purpose="unsubscribe", subscriber_id=ada)
    with running(create_app(settings_env)) as url, httpx.Client(base_url=url, timeout=10) as client:
        unsubscribed = client.post(link, content=b"List-Unsubscribe=One-Click")
        assert unsubscribed.status_code == 200 and "unsubscribed" in unsubscribed.text

        # The file goes away (moved aside) and a sync deletes its subscribers; then it comes back.
        shutil.move(folder / "team.toml", tmp_path / "team.toml")
        assert "- removed ada@example.com" in run("subscribers", "sync", str(folder)).out
        shutil.move(tmp_path / "team.toml", folder / "team.toml")
        restored = run("subscribers", "sync", str(folder))
        assert restored.code == 0, restored.err

        # The old link tells the truth about the address, and offers to subscribe again.
        old_link = client.get(link)
    assert "team.toml:4" in restored.err and "ada@example.com is suppressed (unsubscribed)" in restored.err
    statuses = {s["email"]: s["status"] for s in run("subscribers", "list", "--json").json()}
    assert statuses == {"ada@example.com": "unsubscribed", "grace@example.com": "active"}
    assert old_link.status_code == 200
    assert "You're unsubscribed" in old_link.text and "Subscribe again" in old_link.text

    assert run("send", "ada@example.com", "--now").code in (0, 1)
    assert smtp.messages == []  # nothing went to the address that unsubscribed
    sent = run("send", "grace@example.com", "--now")  # while the same send mails anyone else
    assert sent.code == 0, sent.err
    assert [m.rcpt_tos for m in smtp.messages] == [["grace@example.com"]]


def test_sync_never_makes_a_suppressed_entry_active_and_the_planner_skips_it(
    run: Runner, settings_env: Settings, folder: Path
) -> None:
    with FlareStart(settings_env, seed=False) as app:
        app.suppressions.add("ADA@example.com", "complaint", now=app.now(), source="test")
    report = run("subscribers", "sync", str(folder), "--json").json()
    assert report["added"] == ["ada@example.com", "grace@example.com"]
    assert report["suppressed"] == {"ada@example.com": "complaint"}
    assert report["suppressed_where"]["ada@example.com"].endswith("team.toml:4")
    with FlareStart(settings_env, seed=False) as app:
        assert app.get_subscriber("ada@example.com").status == "unsubscribed"
        planned = {row.id for row in SubscriberStore(app.store.engine).schedules(("active", "pending"))}
        assert planned == {subscriber_id(settings_env, "grace@example.com")}


def test_the_operator_lists_and_removes_suppressions_with_a_confirmation(
    run: Runner, settings_env: Settings, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("subscribers", "sync", str(folder)).code == 0
    with FlareStart(settings_env, seed=False) as app:
        app.unsubscribe(subscriber_id(settings_env, "ada@example.com"), source="test")
        app.suppressions.add("gone@example.com", "operator", now=app.now(), note="asked by phone")

    listed = run("subscribers", "suppressions", "list", "--json").json()
    assert [(s["address"], s["reason"]) for s in listed] == [
        ("ada@example.com", "unsubscribed"),
        ("gone@example.com", "operator"),
    ]
    table = run("subscribers", "suppressions", "list")
    assert "ada@example.com" in table.out and "asked by phone" in table.out

    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    declined = run("subscribers", "suppressions", "remove", "ada@example.com")
    assert declined.code == 1 and "Nothing removed." in declined.err
    assert len(run("subscribers", "suppressions", "list", "--json").json()) == 2

    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    confirmed = run("subscribers", "suppressions", "remove", "ADA@example.com")
    assert confirmed.code == 0, confirmed.err
    assert "Removed the suppression of ada@example.com (unsubscribed)." in confirmed.out
    assert "still unsubscribed" in confirmed.err  # the row's status is the reader's: said, not changed

    forced = run("subscribers", "suppressions", "remove", "gone@example.com", "--yes")
    assert forced.code == 0 and run("subscribers", "suppressions", "list", "--json").json() == []

    missing = run("subscribers", "suppressions", "remove", "nobody@example.com", "--yes")
    assert missing.code != 0 and missing.out == ""
    assert len(missing.err.strip().splitlines()) == 1 and "is not suppressed" in missing.err


def test_no_door_re_subscribes_a_suppressed_address(
    run: Runner, settings_env: Settings, smtp: SmtpServer
) -> None:
    with FlareStart(settings_env, seed=False) as app:
        app.suppressions.add("ada@example.com", "unsubscribed", now=app.now(), source="web:one-click")
        app.suppressions.add("bob@example.com", "hard_bounce", now=app.now(), source="delivery")

    added = run("subscribers", "add", "ada@example.com", "--topics", "python")
    assert added.code == 0, added.err
    assert "Added ada@example.com as unsubscribed: the address is suppressed" in added.err
    assert run("subscribers", "add", "bob@example.com").code == 0
    statuses = {s["email"]: s["status"] for s in run("subscribers", "list", "--json").json()}
    assert statuses == {"ada@example.com": "unsubscribed", "bob@example.com": "bouncing"}

    sample = run("send", "--test", "Ada@example.com")
    assert sample.code != 0 and len(sample.err.strip().splitlines()) == 1
    assert "ada@example.com is suppressed (unsubscribed): a test digest is not sent to it" in sample.err
    assert smtp.messages == []
