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


def test_unknown_topics_and_invalid_destinations_are_refused(settings: Settings) -> None:
    with FlareStart(settings, seed=False, clock=lambda: NOW) as app:
        with pytest.raises(ConfigError, match="pyhton"):
            app.subscribe("ada@example.com", topics={"pyhton": 1.0})
        with pytest.raises(ConfigError, match="not a Slack channel id"):
            app.subscribe(Destination("slack", "#general"), topics={"python": 1.0})
        with pytest.raises(ConfigError, match="not an environment variable name"):
            app.subscribe("slack:webhook_env:https://hooks.slack.com/services/T/B/x")
        assert app.list_subscribers() == []


def test_a_slack_channel_subscribes_with_the_default_topics_and_is_found_by_its_ref(
    settings: Settings,
) -> None:
    with FlareStart(settings, seed=False, clock=lambda: NOW) as app:
        added = app.subscribe(Destination("slack", "c0123abcd"))
        assert (added.destination, added.default_topics) == (Destination("slack", "C0123ABCD"), True)
        assert added.subscriber.email is None
        assert added.label == "Slack channel C0123ABCD" and added.ref == "slack:C0123ABCD"
        chosen = app.subscribe("slack:webhook_env:TEAM_SLACK_WEBHOOK", topics={"python": 1.0})
        assert chosen.default_topics is False and chosen.label == "Slack webhook $TEAM_SLACK_WEBHOOK"
        assert app.subscriber("slack:C0123ABCD").subscriber.id == added.subscriber.id
        with pytest.raises(SubscriberError, match="slack:C0123ABCD is already a subscriber"):
            app.subscribe("slack:C0123ABCD")
        app.subscribe("ada@example.com")  # an email reader beside them, listed first
        assert [v.ref for v in app.list_subscribers()] == [
            "ada@example.com",
            "slack:C0123ABCD",
            "slack:webhook_env:TEAM_SLACK_WEBHOOK",
        ]


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
