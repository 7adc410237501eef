"""`flarestart subscribers …` as an operator types it, on both databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.delivery.service import SEND_TASK, send_job
from bot.jobs.queue import JobQueue
from bot.store.engine import make_engine
from tests.cli.conftest import Runner

TEAM = """\
[[subscriber]]
email = "ada@example.com"
name = "Ada"
timezone = "Europe/Berlin"
topics = ["python", "ai"]

[[subscriber]]
email = "grace@example.com"
frequency = "weekdays"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "subscribers"
    path.mkdir()
    (path / "team.toml").write_text(TEAM, encoding="utf-8")
    return path


def test_sync_reports_added_changed_removed_and_is_idempotent(run: Runner, folder: Path) -> None:
    first = run("subscribers", "sync", str(folder))
    assert first.code == 0, first.err
    assert "+ added   ada@example.com" in first.out and "+ added   grace@example.com" in first.out
    assert "2 added, 0 changed, 0 removed, 0 unchanged" in first.out

    again = run("subscribers", "sync", str(folder))
    assert "0 added, 0 changed, 0 removed, 2 unchanged" in again.out

    (folder / "team.toml").write_text(TEAM.replace("Europe/Berlin", "Asia/Kolkata").split("\n\n")[0] + "\n")
    edited = run("subscribers", "sync", str(folder))
    assert "~ changed ada@example.com (timezone)" in edited.out
    assert "- removed grace@example.com (no longer in any file; deleted)" in edited.out
    assert "0 added, 1 changed, 1 removed, 0 unchanged" in edited.out
    assert [s["email"] for s in run("subscribers", "list", "--json").json()] == ["ada@example.com"]


def test_sync_reads_the_configured_folder_and_can_dry_run(
    run: Runner, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLARESTART_SUBSCRIBERS_DIR", str(folder))
    dry = run("subscribers", "sync", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert dry.json()["added"] == ["ada@example.com", "grace@example.com"]
    assert dry.json()["dry_run"] is True
    assert run("subscribers", "list", "--json").json() == []
    assert "2 added" in run("subscribers", "sync").out


def test_a_broken_file_names_file_and_line_and_changes_nothing(run: Runner, folder: Path) -> None:
    run("subscribers", "sync", str(folder))
    broken = folder / "more.toml"
    broken.write_text(
        '[[subscriber]]\nemail = "new@example.com"\n\n'
        '[[subscriber]]\nemail = "ADA@example.com"\ntimezone = "Europe/Berln"\n',
        encoding="utf-8",
    )
    (folder / "team.toml").write_text(TEAM.replace('name = "Ada"', 'name = "Ada L."'), encoding="utf-8")
    result = run("subscribers", "sync", str(folder))
    assert result.code == 2
    assert f"{broken}:6: ada@example.com: time zone 'Europe/Berln'" in result.err
    assert "did you mean 'Europe/Berlin'?" in result.err
    # Files are read in name order: more.toml claimed the address first.
    assert f"{folder / 'team.toml'}:1: ada@example.com is already a subscriber at {broken}:4" in result.err
    assert "error: 2 problems in the subscriber files" in result.err and "nothing changed" in result.err
    assert "Traceback" not in result.err
    listed = run("subscribers", "list", "--json").json()
    assert [(s["email"], s["name"]) for s in listed] == [
        ("ada@example.com", "Ada"),
        ("grace@example.com", ""),
    ]


def test_add_list_show_pause_resume_remove(run: Runner) -> None:
    added = run(
        "subscribers",
        "add",
        "Ada@Example.com",
        "--name",
        "Ada",
        "--topics",
        "python:2,ai",
        "--timezone",
        "Asia/Kolkata",
        "--time",
        "06:30",
        "--frequency",
        "weekly:fri",
        "--max",
        "12",
    )
    assert added.code == 0, added.err
    assert "Added ada@example.com: weekly:fri at 06:30 Asia/Kolkata" in added.out

    [ada] = run("subscribers", "list", "--json").json()
    assert {k: ada[k] for k in ("email", "name", "status", "timezone", "delivery_time", "frequency")} == {
        "email": "ada@example.com",
        "name": "Ada",
        "status": "active",
        "timezone": "Asia/Kolkata",
        "delivery_time": "06:30",
        "frequency": "weekly:fri",
    }
    assert (ada["topics"], ada["max_items"], ada["origin"]) == ({"python": 2.0, "ai": 1.0}, 12, "cli")
    upcoming = datetime.fromisoformat(ada["next_delivery"])
    assert timedelta(0) < upcoming - datetime.now(UTC) <= timedelta(days=7)
    assert upcoming.astimezone(UTC).strftime("%H:%M") == "01:00"  # 06:30 in Kolkata

    table = run("subscribers", "list")
    assert "ada@example.com" in table.out and "python:2, ai" in table.out and "weekly:fri" in table.out
    shown = run("subscribers", "show", "ada@example.com")
    assert "next delivery" in shown.out and "Fri" in shown.out and "IST" in shown.out
    assert run("subscribers", "show", str(ada["id"]), "--json").json()["email"] == "ada@example.com"

    assert "Paused ada@example.com" in run("subscribers", "pause", "ada@example.com").out
    paused = run("subscribers", "show", "ada@example.com", "--json").json()
    assert (paused["status"], paused["next_delivery"]) == ("paused", None)
    assert "Resumed ada@example.com (was paused)" in run("subscribers", "resume", "ada@example.com").out
    assert run("subscribers", "list", "--status", "active", "--json").json()[0]["email"] == "ada@example.com"

    assert run("subscribers", "remove", "ada@example.com").code == 0
    assert run("subscribers", "list", "--json").json() == []


def test_no_topics_reads_all_topics_in_add_show_and_list(run: Runner) -> None:
    # An empty topic list means every topic: each message says "all", none a bare "-".
    assert "topics all" in run("subscribers", "add", "ada@example.com").out
    shown = run("subscribers", "show", "ada@example.com").out
    assert re.search(r"topics\s*│\s*all\s", shown), shown
    listed = run("subscribers", "list").out
    assert re.search(r"│\s*all\s*│", listed), listed


def test_unknown_subscribers_are_one_line_errors_with_a_hint(run: Runner) -> None:
    run("subscribers", "add", "ada@example.com")
    for command in ("show", "pause", "resume", "remove"):
        result = run("subscribers", command, "ada@exmaple.com")
        assert result.code == 3, command
        assert result.err.startswith("error: no subscriber 'ada@exmaple.com'")
        assert "did you mean 'ada@example.com'?" in result.err


def test_bad_values_and_duplicates_are_refused(run: Runner) -> None:
    bad = run("subscribers", "add", "not-an-address", "--timezone", "Berlin", "--time", "7am")
    assert bad.code == 2
    assert "'not-an-address' is not an email address" in bad.err
    assert "time zone 'Berlin'" in bad.err and "HH:MM" in bad.err
    assert run("subscribers", "add", "ada@example.com").code == 0
    again = run("subscribers", "add", "ADA@example.com")
    assert again.code == 1 and "ada@example.com is already a subscriber (active, from cli)" in again.err
    assert len(run("subscribers", "list", "--json").json()) == 1


def test_an_unsubscribed_reader_cannot_be_resumed_by_the_operator(run: Runner, folder: Path) -> None:
    from bot.cli.common import state
    from bot.store import Store
    from bot.store.subscribers import SubscriberStore

    run("subscribers", "sync", str(folder))
    store = Store.open(state.get_settings())
    try:
        subscribers = SubscriberStore(store.engine)
        subscribers.set_status(
            subscribers.get("ada@example.com").id or 0, "unsubscribed", now=datetime.now(UTC)
        )
    finally:
        store.close()
    refused = run("subscribers", "resume", "ada@example.com")
    assert refused.code == 1 and "unsubscribed themselves" in refused.err
    assert "0 changed" in run("subscribers", "sync", str(folder)).out
    assert run("subscribers", "show", "ada@example.com", "--json").json()["status"] == "unsubscribed"


def test_removing_a_file_subscriber_warns_the_next_sync_brings_them_back(run: Runner, folder: Path) -> None:
    run("subscribers", "sync", str(folder))
    removed = run("subscribers", "remove", "grace@example.com")
    assert removed.code == 0
    assert "team.toml; delete them there too" in removed.err


def test_an_empty_list_says_how_to_add(run: Runner) -> None:
    assert "flarestart subscribers add EMAIL" in run("subscribers", "list").out


def test_sync_refuses_unknown_source_names_with_file_line_and_the_closest(
    run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sources the first run will seed count before it has run: sync may come first.
    config = tmp_path / "seeds.toml"
    config.write_text(
        '[[sources]]\nname = "HackerNoon"\nurl = "https://hackernoon.com/feed"\n'
        '[[sources]]\nname = "The Verge"\nurl = "https://www.theverge.com/rss/index.xml"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("FLARESTART_CONFIG", str(config))
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "team.toml").write_text(
        '[[subscriber]]\nemail = "ada@example.com"\nsource_weights = { "The Verge" = 2 }\n\n'
        '[[subscriber]]\nemail = "grace@example.com"\nmute = { sources = ["Hacker News"] }\n',
        encoding="utf-8",
    )

    result = run("subscribers", "sync", str(folder))

    assert result.code == 2
    assert f"{folder / 'team.toml'}:7: grace@example.com: mute.sources: unknown source 'Hacker News'" in (
        result.err.replace("\n", "")
    )
    assert "did you mean 'HackerNoon'?" in result.err
    assert "nothing changed" in result.err
    assert run("subscribers", "list", "--json").json() == []


def test_syncing_another_folder_keeps_the_default_folders_subscribers(
    run: Runner, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLARESTART_SUBSCRIBERS_DIR", str(folder))
    assert run("subscribers", "sync").code == 0
    other = tmp_path / "guests"
    other.mkdir()
    (other / "guests.toml").write_text('[[subscriber]]\nemail = "linus@example.com"\n', encoding="utf-8")

    result = run("subscribers", "sync", str(other))

    assert result.code == 0, result.err
    assert "1 added, 0 changed, 0 removed" in result.out
    assert "+ added   linus@example.com; first digest " in result.out  # when, as `show` says it
    listed = sorted(s["email"] for s in run("subscribers", "list", "--json").json())
    assert listed == ["ada@example.com", "grace@example.com", "linus@example.com"]
    (other / "guests.toml").unlink()
    emptied = run("subscribers", "sync", str(other))
    assert "- removed linus@example.com" in emptied.out and "1 removed" in emptied.out
    assert len(run("subscribers", "list", "--json").json()) == 2


def test_add_and_show_say_what_run_will_do_with_a_time_just_passed(run: Runner, database_url: str) -> None:
    passed = datetime.now(UTC) - timedelta(minutes=15)

    added = run("subscribers", "add", "ada@example.com", "--time", f"{passed:%H:%M}")

    assert added.code == 0, added.err
    assert "first digest" in added.out and "due now: `flarestart run` sends it within a minute" in added.out
    shown = run("subscribers", "show", "ada@example.com", "--json").json()
    assert (shown["due_now"], shown["next_period"]) == (True, f"{passed:%Y-%m-%d}")
    assert "due now" in run("subscribers", "show", "ada@example.com").out
    # A quiet period skipped by hand is still due: `run` plans it and tries again.
    skipped = run("send", "ada@example.com")
    assert skipped.code == 0 and skipped.out.startswith("Skipped")
    assert run("subscribers", "show", "ada@example.com", "--json").json()["due_now"] is True
    # Once run's send job for it has run (quiet again), the next one is the following day's.
    engine = make_engine(database_url)
    try:
        queue = JobQueue(engine)
        window = {"period": shown["next_period"], "window_start": "", "window_end": ""}
        queue.enqueue_one(send_job(shown["id"], window, channel="outbox", max_attempts=5))
        [job] = queue.claim("test", now=datetime.now(UTC), lease=timedelta(minutes=1), tasks=[SEND_TASK])
        assert queue.finish(job.id, "test", now=datetime.now(UTC), attempt=job.attempts)
    finally:
        engine.dispose()
    after = run("subscribers", "show", "ada@example.com", "--json").json()
    assert after["due_now"] is False and after["next_period"] == f"{passed + timedelta(days=1):%Y-%m-%d}"
    assert "due now" not in run("subscribers", "list").out
