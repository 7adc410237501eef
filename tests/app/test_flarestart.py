"""The application layer as a door meets it: one object from the Settings, verbs with typed results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.app import FlareStart
from bot.config import Settings
from bot.errors import ConfigError
from bot.store.subscribers import SubscriberError
from bot.types import Destination

NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday, 06:00 UTC


def test_verbs_without_a_database_never_open_the_store(settings: Settings) -> None:
    with FlareStart(settings) as app:
        slugs = {topic.slug for topic in app.topics()}
        keys = {key for key, _, _ in app.describe_config()}
    assert "python" in slugs and "data_dir" in keys
    assert not settings.database_path.exists()


def test_a_destination_subscribed_paused_resumed_and_removed(settings: Settings) -> None:
    with FlareStart(settings, seed=False, clock=lambda: NOW) as app:
        added = app.subscribe(
            Destination.email("ada@example.com"), name="Ada", topics={"python": 1.0}, delivery_time="07:00"
        )
        assert added.subscriber.status == "active" and added.subscriber.origin == "cli"
        assert added.next_delivery is not None
        assert added.next_delivery.scheduled_at == NOW + timedelta(hours=1)

        paused = app.pause("ada@example.com")
        again = app.pause("ada@example.com")
        assert (paused.was, paused.subscriber.status, paused.changed) == ("active", "paused", True)
        assert again.changed is False
        assert app.subscriber("ada@example.com").next_delivery is None  # paused: no digest

        resumed = app.resume(added.subscriber.id or 0)
        assert (resumed.was, resumed.subscriber.status) == ("paused", "active")

        removed = app.remove_subscriber("ada@example.com")
        assert removed.email == "ada@example.com" and app.list_subscribers() == []


def test_an_unsubscribed_reader_is_never_resumed_by_an_operator(settings: Settings) -> None:
    with FlareStart(settings, seed=False, clock=lambda: NOW) as app:
        added = app.subscribe("bob@example.com", topics={"python": 1.0})
        app.subscribers.set_status(added.subscriber.id or 0, "unsubscribed", now=NOW)
        with pytest.raises(SubscriberError, match="only they can subscribe again"):
            app.resume("bob@example.com")


def test_unknown_topics_and_unserved_destinations_are_refused(settings: Settings) -> None:
    with FlareStart(settings, seed=False, clock=lambda: NOW) as app:
        with pytest.raises(ConfigError, match="pyhton"):
            app.subscribe("ada@example.com", topics={"pyhton": 1.0})
        with pytest.raises(ConfigError, match="not served yet"):
            app.subscribe(Destination("slack", "C0123"), topics={"python": 1.0})  # type: ignore[arg-type]
        assert app.list_subscribers() == []


def test_a_sign_up_is_confirmed_once_and_an_unsubscribe_is_final(settings: Settings) -> None:
    with FlareStart(settings, seed=False, clock=lambda: NOW) as app:
        added = app.subscribe("new@example.com", topics={"python": 1.0}, origin="web", status="pending")
        reader = added.subscriber.id or 0
        assert added.next_delivery is None  # pending: nothing goes out before the confirmation

        confirmed, again = app.confirm(reader), app.confirm(reader)
        assert (confirmed.changed, confirmed.was, confirmed.subscriber.status) == (True, "pending", "active")
        assert (again.changed, again.was) == (False, "active")

        gone, twice = app.unsubscribe(reader), app.unsubscribe(reader)
        assert (gone.changed, gone.was, gone.subscriber.status) == (True, "active", "unsubscribed")
        assert twice.changed is False
        late = app.confirm(reader)  # an old confirmation link never undoes an unsubscribe
        assert (late.changed, late.subscriber.status) == (False, "unsubscribed")
