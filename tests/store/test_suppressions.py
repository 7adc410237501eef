"""The suppression store: kept by address (normalised), the first word stands, and the upgrade
to it loses no unsubscribe or bounce recorded before it. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from bot.store.engine import make_engine
from bot.store.migrate import upgrade
from bot.store.subscribers import SubscriberStore
from bot.store.suppressions import SuppressionStore

NOW = datetime(2026, 12, 5, 7, 0, tzinfo=UTC)


def test_the_upgrade_suppresses_addresses_already_unsubscribed_or_bouncing(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0005")
        with engine.begin() as conn:
            for email, status in (("ada@example.com", "unsubscribed"), ("bob@example.com", "bouncing")):
                conn.execute(
                    text(
                        "INSERT INTO subscribers (email, name, timezone, delivery_time, frequency, topics, "
                        "muted_topics, muted_keywords, muted_sources, source_weights, max_items, status, "
                        "origin, consecutive_bounces, created_at, updated_at) VALUES (:email, '', 'UTC', "
                        "'07:00', 'daily', '{}', '[]', '[]', '[]', '{}', 10, :status, 'cli', 0, :now, :now)"
                    ),
                    {"email": email, "status": status, "now": NOW.replace(tzinfo=None)},
                )
            conn.execute(
                text(
                    "INSERT INTO subscribers (email, name, timezone, delivery_time, frequency, topics, "
                    "muted_topics, muted_keywords, muted_sources, source_weights, max_items, status, origin, "
                    "consecutive_bounces, created_at, updated_at) VALUES ('cy@example.com', '', 'UTC', "
                    "'07:00', 'daily', '{}', '[]', '[]', '[]', '{}', 10, 'active', 'cli', 0, :now, :now)"
                ),
                {"now": NOW.replace(tzinfo=None)},
            )
        upgrade(engine)
        found = {s.address: s.reason for s in SuppressionStore(engine).list()}
    finally:
        engine.dispose()
    assert found == {"ada@example.com": "unsubscribed", "bob@example.com": "hard_bounce"}


def test_an_address_is_suppressed_once_whatever_its_case_and_the_first_reason_stands(engine: Engine) -> None:
    store = SuppressionStore(engine)
    assert store.add(" Ada@Example.com ", "unsubscribed", now=NOW, source="web:one-click")
    assert not store.add("ada@example.com", "hard_bounce", now=NOW + timedelta(days=1))
    (only,) = store.list()
    assert (only.address, only.reason, only.source, only.created_at) == (
        "ada@example.com",
        "unsubscribed",
        "web:one-click",
        NOW,
    )
    assert set(store.among(["ADA@example.com", "bob@example.com"])) == {"ada@example.com"}


def test_the_claim_check_follows_the_subscribers_address(engine: Engine) -> None:
    subscribers = SubscriberStore(engine)
    ada = subscribers.add({"email": "ada@example.com"}).id
    assert ada is not None
    store = SuppressionStore(engine)
    assert not store.subscriber_suppressed(ada)
    store.add("ada@example.com", "operator", now=NOW)
    assert store.subscriber_suppressed(ada)
    assert store.remove("ADA@example.com") is not None and not store.subscriber_suppressed(ada)
    assert store.remove("ada@example.com") is None


def test_a_lift_is_for_the_suppression_it_was_made_for(engine: Engine) -> None:
    store = SuppressionStore(engine)
    store.add("ada@example.com", "unsubscribed", now=NOW)
    found = store.get("ada@example.com")
    assert found is not None
    assert not store.lift(found.id, made_before=NOW - timedelta(seconds=1))  # a link older than it
    assert store.lift(found.id, made_before=NOW + timedelta(minutes=5))
    assert store.get("ada@example.com") is None


def test_a_re_opt_in_mail_is_allowed_once_per_interval(engine: Engine) -> None:
    store = SuppressionStore(engine)
    store.add("ada@example.com", "unsubscribed", now=NOW)
    found = store.get("ada@example.com")
    assert found is not None
    every = timedelta(minutes=10)
    assert store.take_reoptin_turn(found.id, now=NOW, every=every)
    assert not store.take_reoptin_turn(found.id, now=NOW + timedelta(minutes=9), every=every)
    assert store.take_reoptin_turn(found.id, now=NOW + timedelta(minutes=10), every=every)
