"""The channel registry: which channel serves a destination, made only when a send needs it."""

from __future__ import annotations

import pytest

from bot.channels.email import SmtpChannel
from bot.channels.outbox import OutboxChannel
from bot.channels.registry import ChannelRegistry, destination_of, registry_for
from bot.config import Settings
from bot.errors import ConfigError
from bot.store.models import Subscriber


async def test_without_smtp_email_goes_to_the_outbox_made_on_first_use(settings: Settings) -> None:
    registry = registry_for(settings)
    assert registry.name_for("email") == "outbox"
    assert list(registry.made()) == [] and not settings.outbox_dir.exists()

    reader = Subscriber(id=1, email="ada@example.com")
    channel = registry.for_subscriber(reader)

    assert isinstance(channel, OutboxChannel) and registry.for_kind("email") is channel
    assert list(registry.made()) == [channel]
    assert str(destination_of(reader)) == "ada@example.com"
    await registry.aclose()


async def test_with_smtp_email_goes_through_smtp(settings: Settings) -> None:
    smtp = settings.model_copy(
        update={"email": settings.email.model_copy(update={"smtp_url": "smtp://127.0.0.1:2525"})}
    )
    registry = registry_for(smtp)
    assert registry.name_for("email") == "email"
    assert isinstance(registry.for_kind("email"), SmtpChannel)
    await registry.aclose()


def test_a_kind_no_channel_serves_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no channel serves slack destinations"):
        ChannelRegistry().for_kind("slack")
