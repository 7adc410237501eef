"""Syncing subscriber files into the store, on both databases, and the store beneath it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from bot.errors import NotFoundError
from bot.store.engine import make_engine
from bot.store.migrate import upgrade
from bot.store.subscribers import DuplicateSubscriberError, SubscriberBatch, SubscriberStore
from bot.subscribers.files import (
    DEFAULT_CHAT_TOPICS,
    SubscriberFileError,
    SubscriberSpec,
    load_subscriber_files,
)
from bot.subscribers.sync import sync_subscribers
from bot.types import Destination

NOW = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[SubscriberStore]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield SubscriberStore(engine)
    engine.dispose()


def spec(email: str, **changes: object) -> SubscriberSpec:
    base = SubscriberSpec(
        destination=Destination.email(email),
        name=email.split("@")[0].title(),
        timezone="Europe/Berlin",
        delivery_time=time(7, 0),
        frequency="daily",
        topics={"python": 1.0},
        origin="file:subscribers/team.toml",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def emails(store: SubscriberStore) -> list[str]:
    return [s.email or "" for s in store.list()]


def test_add_then_nothing_then_a_change_then_a_removal(store: SubscriberStore) -> None:
    team = [spec("ada@example.com"), spec("grace@example.com")]
    first = sync_subscribers(store, team, now=NOW)
    assert (first.added, first.changed, first.removed, first.unchanged) == (
        ["ada@example.com", "grace@example.com"],
        [],
        [],
        0,
    )
    ada = store.get("ada@example.com")
    assert (ada.status, ada.origin, ada.topics, ada.delivery_time, ada.created_at) == (
        "active",
        "file:subscribers/team.toml",
        {"python": 1.0},
        "07:00",
        NOW,
    )

    again = sync_subscribers(store, team, now=LATER)
    assert (again.added, again.changed, again.removed, again.unchanged) == ([], [], [], 2)
    assert store.get("ada@example.com").updated_at == NOW  # a no-op writes nothing

    edited = [spec("ada@example.com", timezone="Asia/Kolkata", max_items=20), spec("grace@example.com")]
    changed = sync_subscribers(store, edited, now=LATER)
    assert (changed.added, changed.changed, changed.unchanged) == ([], ["ada@example.com"], 1)
    assert changed.changes == {"ada@example.com": ("timezone", "max_items")}
    ada = store.get("ada@example.com")
    assert (ada.timezone, ada.max_items, ada.updated_at, ada.created_at) == ("Asia/Kolkata", 20, LATER, NOW)

    removed = sync_subscribers(store, [spec("grace@example.com")], now=LATER)
    assert (removed.removed, removed.unchanged) == (["ada@example.com"], 1)
    assert emails(store) == ["grace@example.com"]


def test_subscribers_from_the_cli_survive_and_are_not_taken_over(store: SubscriberStore) -> None:
    store.add(spec("cli@example.com", origin="cli"))
    store.add(spec("web@example.com", origin="web"), status="pending")
    report = sync_subscribers(store, [spec("ada@example.com"), spec("web@example.com", name="From a file")])
    assert report.added == ["ada@example.com"]
    assert report.skipped == ["web@example.com"]
    assert report.removed == []
    web = store.get("web@example.com")
    assert (web.origin, web.status, web.name) == ("web", "pending", "Web")
    emptied = sync_subscribers(store, [])
    assert emptied.removed == ["ada@example.com"]
    assert emails(store) == ["cli@example.com", "web@example.com"]


def test_a_sync_never_resumes_someone_who_left_or_paused(store: SubscriberStore) -> None:
    sync_subscribers(store, [spec("ada@example.com"), spec("bob@example.com"), spec("eve@example.com")])
    for email, status in (("ada@example.com", "unsubscribed"), ("bob@example.com", "bouncing")):
        store.set_status(store.get(email).id or 0, status, now=NOW)
    store.set_status(store.get("eve@example.com").id or 0, "paused", now=NOW)
    report = sync_subscribers(
        store, [spec("ada@example.com", name="Ada L."), spec("bob@example.com"), spec("eve@example.com")]
    )
    assert report.changed == ["ada@example.com"]  # preferences follow the file, status does not
    statuses = {s.email: (s.status, s.name) for s in store.list()}
    assert statuses == {
        "ada@example.com": ("unsubscribed", "Ada L."),
        "bob@example.com": ("bouncing", "Bob"),
        "eve@example.com": ("paused", "Eve"),
    }


def test_a_dry_run_reports_and_writes_nothing(store: SubscriberStore) -> None:
    sync_subscribers(store, [spec("ada@example.com"), spec("bob@example.com")])
    report = sync_subscribers(
        store, [spec("ada@example.com", name="Changed"), spec("new@example.com")], dry_run=True
    )
    assert (report.added, report.changed, report.removed, report.dry_run) == (
        ["new@example.com"],
        ["ada@example.com"],
        ["bob@example.com"],
        True,
    )
    assert emails(store) == ["ada@example.com", "bob@example.com"]
    assert store.get("ada@example.com").name == "Ada"


def test_a_failure_half_way_rolls_everything_back(
    store: SubscriberStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync_subscribers(store, [spec("ada@example.com"), spec("old@example.com")])

    def broken_delete(self: SubscriberBatch, ids: object) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(SubscriberBatch, "delete", broken_delete)
    with pytest.raises(RuntimeError):
        sync_subscribers(store, [spec("ada@example.com", name="Changed"), spec("new@example.com")])
    assert emails(store) == ["ada@example.com", "old@example.com"]
    assert store.get("ada@example.com").name == "Ada"


def test_a_broken_file_changes_nothing(store: SubscriberStore, tmp_path: Path) -> None:
    (tmp_path / "team.toml").write_text('[[subscriber]]\nemail = "ada@example.com"\n', encoding="utf-8")
    sync_subscribers(store, load_subscriber_files(tmp_path))
    (tmp_path / "team.toml").write_text(
        '[[subscriber]]\nemail = "ada@example.com"\nname = "Ada"\n[[subscriber]]\nemail = "new@example.com"\n'
        'timezone = "Nowhere"\n',
        encoding="utf-8",
    )
    with pytest.raises(SubscriberFileError, match=re.escape("team.toml:6")):
        sync_subscribers(store, load_subscriber_files(tmp_path))
    [ada] = store.list()
    assert (ada.email, ada.name) == ("ada@example.com", "")


def test_the_same_email_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        sync_subscribers(None, [spec("a@example.com"), spec("a@example.com")])  # type: ignore[arg-type]


# -- the store beneath ----------------------------------------------------------------------------


def test_get_by_email_or_id_and_a_miss_suggests(store: SubscriberStore) -> None:
    added = store.add(spec("ada@example.com", origin="cli"), now=NOW)
    assert store.get("ADA@example.com").id == added.id
    assert store.get(added.id or 0).email == "ada@example.com"
    assert store.get(str(added.id)).email == "ada@example.com"
    store.add(spec("bob@example.com", origin="cli"))
    with pytest.raises(NotFoundError, match=re.escape("did you mean 'ada@example.com'? (see")):
        store.get("ada@exmaple.com")
    with pytest.raises(NotFoundError, match=re.escape("did you mean 'bob@example.com'? (see")):
        store.get("bob")


def test_adding_an_address_twice_is_refused(store: SubscriberStore) -> None:
    store.add(spec("ada@example.com", origin="cli"))
    with pytest.raises(DuplicateSubscriberError, match="already a subscriber"):
        store.add({"email": "Ada@Example.com", "origin": "web"}, status="pending")


def test_status_changes_stamp_what_they_mean(store: SubscriberStore) -> None:
    pending = store.add({"email": "new@example.com", "origin": "web"}, status="pending", now=NOW)
    assert pending.id is not None and pending.confirmed_at is None
    assert [s.email for s in store.active()] == []
    confirmed = store.set_status(pending.id, "active", now=LATER)
    assert (confirmed.status, confirmed.confirmed_at) == ("active", LATER)
    assert [s.email for s in store.active()] == ["new@example.com"]
    left = store.set_status(pending.id, "unsubscribed", now=LATER)
    assert (left.status, left.unsubscribed_at) == ("unsubscribed", LATER)
    assert [s.email for s in store.list("unsubscribed")] == ["new@example.com"]
    with pytest.raises(ValueError, match="status must be one of"):
        store.set_status(pending.id, "gone", now=LATER)


def test_bounces_in_a_row_make_a_subscriber_bouncing_once(store: SubscriberStore) -> None:
    sub_id = store.add(spec("ada@example.com", origin="cli")).id or 0
    assert store.record_bounce(sub_id, limit=3) is False
    store.reset_bounces(sub_id)
    assert [store.record_bounce(sub_id, limit=3) for _ in range(4)] == [False, False, True, False]
    bouncing = store.get(sub_id)
    assert (bouncing.status, bouncing.consecutive_bounces) == ("bouncing", 4)
    resumed = store.set_status(sub_id, "active", now=NOW)
    assert (resumed.status, resumed.consecutive_bounces) == ("active", 0)


def test_update_and_remove(store: SubscriberStore) -> None:
    sub_id = store.add(spec("ada@example.com", origin="cli")).id or 0
    updated = store.update(sub_id, max_items=5, topics={"ai": 2.0}, now=LATER)
    assert (updated.max_items, updated.topics, updated.updated_at) == (5, {"ai": 2.0}, LATER)
    with pytest.raises(ValueError, match="status"):
        store.update(sub_id, status="active")
    assert store.remove("ada@example.com").id == sub_id
    assert store.list() == []
    with pytest.raises(NotFoundError):
        store.remove("ada@example.com")


def test_records_and_schedules_read_only_what_sending_and_planning_need(store: SubscriberStore) -> None:
    ada = store.add(spec("ada@example.com", origin="cli", topics={"python": 2.0}), now=NOW)
    bob = store.add({"email": "bob@example.com", "origin": "web", "timezone": "Asia/Tokyo"}, status="pending")
    paused = store.add({"email": "cy@example.com", "origin": "cli"}, status="paused")
    assert ada.id is not None and bob.id is not None and paused.id is not None

    found = store.records([ada.id, bob.id, 999_999])
    record = store.record(ada.id)

    assert set(found) == {ada.id, bob.id}
    assert found[ada.id] == record
    assert (record.email, record.timezone, record.delivery_time, record.topics) == (
        "ada@example.com",
        "Europe/Berlin",
        "07:00",
        {"python": 2.0},
    )
    assert (found[bob.id].status, found[bob.id].timezone) == ("pending", "Asia/Tokyo")
    with pytest.raises(NotFoundError, match="999999"):
        store.record(999_999)
    assert store.schedules() == [(ada.id, "active", "Europe/Berlin", "07:00", "daily", "email")]
    assert [s.id for s in store.schedules(("active", "pending"))] == [ada.id, bob.id]
    with pytest.raises(ValueError, match="status must be one of"):
        store.schedules(("gone",))


def test_a_sync_of_another_folder_removes_only_that_folders_subscribers(
    store: SubscriberStore, tmp_path: Path
) -> None:
    default, other = tmp_path / "subscribers", tmp_path / "elsewhere"
    default.mkdir()
    other.mkdir()
    team = [spec("ada@example.com", origin=f"file:{default / 'team.toml'}")]
    guests = [
        spec("grace@example.com", origin=f"file:{other / 'guests.toml'}"),
        spec("linus@example.com", origin=f"file:{other / 'guests.toml'}"),
    ]
    sync_subscribers(store, team, folder=default, now=NOW)
    sync_subscribers(store, guests, folder=other, now=NOW)

    # guests.toml loses Linus; the default folder is not read this time and keeps Ada.
    report = sync_subscribers(store, guests[:1], folder=other, now=LATER)

    assert (report.removed, report.unchanged) == (["linus@example.com"], 1)
    assert emails(store) == ["ada@example.com", "grace@example.com"]
    # An empty folder removes its own subscribers, and only them.
    assert sync_subscribers(store, [], folder=other, now=LATER).removed == ["grace@example.com"]
    assert emails(store) == ["ada@example.com"]


TEAM_CHANNELS = """\
[[subscriber]]
email = "ada@example.com"
topics = ["python"]

[[subscriber]]
name = "Platform team"
slack = { channel = "C0PLATFORM" }
delivery_time = "09:00"

[[subscriber]]
name = "Release notes"
slack = { webhook_env = "RELEASES_SLACK_WEBHOOK" }
topics = ["devops"]
"""


def test_a_sync_with_slack_entries_adds_changes_and_removes_them_by_destination(
    store: SubscriberStore, tmp_path: Path
) -> None:
    (tmp_path / "team.toml").write_text(TEAM_CHANNELS, encoding="utf-8")
    first = sync_subscribers(store, load_subscriber_files(tmp_path), folder=tmp_path, now=NOW)
    assert first.added == ["ada@example.com", "slack:C0PLATFORM", "slack:webhook_env:RELEASES_SLACK_WEBHOOK"]
    platform = store.get("slack:C0PLATFORM")
    assert (platform.email, platform.destination_kind, platform.address, platform.name) == (
        None,
        "slack",
        "C0PLATFORM",
        "Platform team",
    )
    assert set(platform.topics) == set(DEFAULT_CHAT_TOPICS)  # none chosen: the chat default
    assert store.get("ada@example.com").topics == {"python": 1.0}  # email readers get no default

    again = sync_subscribers(store, load_subscriber_files(tmp_path), folder=tmp_path, now=NOW)
    assert (again.added, again.changed, again.unchanged) == ([], [], 3)

    changed = TEAM_CHANNELS.replace('delivery_time = "09:00"', 'delivery_time = "10:00"').replace(
        '[[subscriber]]\nname = "Release notes"\nslack = { webhook_env = "RELEASES_SLACK_WEBHOOK" }\n'
        'topics = ["devops"]\n',
        "",
    )
    (tmp_path / "team.toml").write_text(changed, encoding="utf-8")
    third = sync_subscribers(store, load_subscriber_files(tmp_path), folder=tmp_path, now=NOW)
    assert (third.changed, third.changes, third.removed) == (
        ["slack:C0PLATFORM"],
        {"slack:C0PLATFORM": ("delivery_time",)},
        ["slack:webhook_env:RELEASES_SLACK_WEBHOOK"],
    )
    assert store.get("slack:C0PLATFORM").delivery_time == "10:00"


def test_the_same_slack_channel_twice_names_both_lines(tmp_path: Path) -> None:
    (tmp_path / "team.toml").write_text(
        '[[subscriber]]\nslack = { channel = "C0PLATFORM" }\n\n[[subscriber]]\nname = "again"\n'
        'slack = { channel = "c0platform" }\n',
        encoding="utf-8",
    )
    with pytest.raises(SubscriberFileError) as caught:
        load_subscriber_files(tmp_path)
    assert [str(p).split("/")[-1] for p in caught.value.problems] == [
        "team.toml:4: slack:C0PLATFORM is already a subscriber at line 1"
    ]


def test_a_bad_slack_entry_is_placed_on_its_line(tmp_path: Path) -> None:
    (tmp_path / "team.toml").write_text(
        '[[subscriber]]\nemail = "ada@example.com"\n\n[[subscriber]]\nname = "Platform"\n'
        'slack = { channel = "#platform" }\n',
        encoding="utf-8",
    )
    with pytest.raises(SubscriberFileError) as caught:
        load_subscriber_files(tmp_path)
    [problem] = caught.value.problems
    assert problem.line == 6 and "'#platform' is not a Slack channel id" in problem.message
