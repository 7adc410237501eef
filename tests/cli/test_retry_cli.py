"""`flarestart deliveries retry`: failed digests back in the queue, a table for people and JSON
for scripts; bad options are one line naming the option, exit 2."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import load_settings
from bot.delivery.ledger import DeliveryLedger
from bot.jobs.queue import JobQueue
from bot.store import Store
from bot.store.subscribers import SubscriberStore
from tests.cli.conftest import Runner

NOW = datetime.now(UTC)


@pytest.fixture
def store(cli: Runner) -> Iterator[Store]:
    """The store the `cli` fixture's commands use (same data folder), migrated."""
    assert cli("subscribers", "list", "--json").code == 0
    store = Store.open(load_settings())
    yield store
    store.close()


def failed(store: Store, email: str, *, status: str = "active", hours_ago: float = 1) -> int:
    """A daily reader whose digest failed for good `hours_ago` (through the outbox, the channel
    without SMTP_URL), and whose send job is pruned."""
    moment = NOW - timedelta(hours=hours_ago)
    due = moment - timedelta(minutes=5)  # the delivery was due five minutes before it failed
    values = {"email": email, "timezone": "UTC", "delivery_time": f"{due:%H:%M}", "topics": {"python": 1.0}}
    reader = SubscriberStore(store.engine).add(values, status=status)
    assert reader.id is not None
    ledger = DeliveryLedger(store.engine)
    opened = ledger.begin(reader.id, f"{due:%Y-%m-%d}", "outbox", now=moment)
    ledger.mark_failed(opened.id, error="550 5.7.1 relay denied", permanent=True, now=moment)
    return opened.id


def test_retry_json_shape_and_the_rows_it_changed(cli: Runner, store: Store) -> None:
    requeued = failed(store, "ada@example.com", hours_ago=0)
    skipped = failed(store, "carl@example.com", status="bouncing")

    result = cli("deliveries", "retry", "--json")

    assert result.code == 0, result.err
    rows = {row["subscriber"]: row for row in result.json()}
    assert set(rows) == {"ada@example.com", "carl@example.com"}
    assert set(rows["ada@example.com"]) == {
        "id",
        "subscriber_id",
        "subscriber",
        "period",
        "channel",
        "attempts",
        "last_error",
        "outcome",
        "detail",
    }
    assert (rows["ada@example.com"]["id"], rows["ada@example.com"]["outcome"]) == (requeued, "requeued")
    assert rows["ada@example.com"]["last_error"] == "550 5.7.1 relay denied"
    assert (rows["carl@example.com"]["outcome"], rows["carl@example.com"]["detail"]) == (
        "skipped",
        "subscriber is bouncing: nothing is sent to them",
    )
    ledger = DeliveryLedger(store.engine)
    assert (ledger.get(requeued).status, ledger.get(skipped).status) == ("pending", "failed")
    assert JobQueue(store.engine).counts()["queued"] == 1


def test_retry_prints_a_table_and_says_who_sends_them(cli: Runner, store: Store) -> None:
    failed(store, "ada@example.com")
    failed(store, "dora@example.com", status="unsubscribed")

    result = cli("deliveries", "retry")

    assert result.code == 0, result.err
    assert "2 failed deliveries" in result.out
    ada = next(line for line in result.out.splitlines() if "ada@example.com" in line)
    dora = next(line for line in result.out.splitlines() if "dora@example.com" in line)
    assert "requeued" in ada and "new send job" in ada and "relay denied" in ada
    assert "skipped" in dora and "unsubscribed" in dora
    assert "1 requeued, 1 skipped" in result.out and "flarestart run" in result.out


def test_dry_run_prints_what_would_happen_and_changes_nothing(cli: Runner, store: Store) -> None:
    delivery = failed(store, "ada@example.com")

    result = cli("deliveries", "retry", "--dry-run")

    assert result.code == 0, result.err
    assert "would-requeue" in result.out and "Dry run: nothing changed" in result.out
    assert DeliveryLedger(store.engine).get(delivery).status == "failed"
    assert sum(JobQueue(store.engine).counts().values()) == 0


def test_nothing_to_retry_is_not_an_error(cli: Runner, store: Store) -> None:
    failed(store, "ada@example.com", hours_ago=72)  # older than the default 48 h

    table, json = cli("deliveries", "retry"), cli("deliveries", "retry", "--json")

    assert (table.code, json.code) == (0, 0)
    assert "nothing to retry" in table.out and json.json() == []


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--since", "two days"), "--since"),
        (("--since", "48"), "--since"),
        (("--period", "yesterday"), "--period"),
        (("--channel", "pigeon"), "--channel"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(cli: Runner, args: tuple[str, ...], option: str) -> None:
    result = cli("deliveries", "retry", *args)

    assert result.code == 2
    [line] = result.err.strip().splitlines()
    assert option in line
