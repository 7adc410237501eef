"""Which channel serves a destination: the delivery path asks here, per subscriber.

A destination is a kind and an address. Email destinations are served by SMTP when
`email.smtp_url` is set and by the outbox otherwise; Slack destinations by the Slack channel
(bot/channels/slack_channel.py); Discord registers its own kind here. Channels are made on first use, so a command that only
plans or lists opens no connection and writes no file, and the name a kind is served by is known
without making its channel (delivery rows and job keys carry it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from bot.channels.base import Channel
from bot.errors import ConfigError
from bot.types import DESTINATION_KINDS, DestinationKind
from bot.types import destination_of as destination_of

if TYPE_CHECKING:
    from bot.channels.parts import PartLog
    from bot.config import Settings


def destination_kind(subscriber: object) -> DestinationKind:
    """The kind of `subscriber`'s destination (a row, record or schedule of one); one without
    the column (a stand-in reader) is an email subscriber."""
    kind = getattr(subscriber, "destination_kind", None) or "email"
    return kind if kind in DESTINATION_KINDS else "email"


class _Slot:
    __slots__ = ("channel", "make", "name")

    def __init__(self, name: str, make: Callable[[], Channel], channel: Channel | None) -> None:
        self.name, self.make, self.channel = name, make, channel


class ChannelRegistry:
    """The channels of one process, by destination kind; made lazily, closed together."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    @classmethod
    def serving(cls, channel: Channel, *, kind: DestinationKind = "email") -> ChannelRegistry:
        """A registry whose `kind` destinations all go through `channel` (tests, demo, bench)."""
        registry = cls()
        registry.register(kind, channel)
        return registry

    def register(self, kind: DestinationKind, channel: Channel) -> None:
        self._slots[kind] = _Slot(channel.name, lambda: channel, channel)

    def register_lazy(self, kind: DestinationKind, name: str, make: Callable[[], Channel]) -> None:
        """`make` runs the first time a `kind` destination needs sending to."""
        self._slots[kind] = _Slot(name, make, None)

    def _slot(self, kind: str) -> _Slot:
        slot = self._slots.get(kind)
        if slot is None:
            raise ConfigError(f"no channel serves {kind} destinations in this configuration")
        return slot

    def for_kind(self, kind: str) -> Channel:
        slot = self._slot(kind)
        if slot.channel is None:
            slot.channel = slot.make()
        return slot.channel

    def for_subscriber(self, subscriber: object) -> Channel:
        """The channel that serves `subscriber`'s destination."""
        return self.for_kind(destination_kind(subscriber))

    def name_for(self, kind: str) -> str:
        """The name of the channel serving `kind`, without making it."""
        return self._slot(kind).name

    def name_for_subscriber(self, subscriber: object) -> str:
        return self._slot(destination_kind(subscriber)).name

    def names(self) -> dict[str, str]:
        """Destination kind → channel name, for a process that makes its own stand-ins (drafting)."""
        return {kind: slot.name for kind, slot in self._slots.items()}

    def made(self) -> Iterator[Channel]:
        """The channels made so far (each once, though it may serve several kinds)."""
        seen: set[int] = set()
        for slot in self._slots.values():
            if slot.channel is not None and id(slot.channel) not in seen:
                seen.add(id(slot.channel))
                yield slot.channel

    async def aclose(self) -> None:
        for channel in list(self.made()):
            await channel.aclose()


def email_channel_name(settings: Settings) -> str:
    """The name of the channel serving email destinations, without making it."""
    return "email" if settings.email.smtp_url else "outbox"


def registry_for(settings: Settings, part_log: PartLog | None = None) -> ChannelRegistry:
    """Email destinations: SMTP when SMTP_URL is set; otherwise the outbox in the data folder, so
    digests are real files. Slack destinations: the Slack channel, keeping the parts it posts in
    `part_log` (the database's `DatabasePartLog` in service; the callers that have the store pass
    it, a memory log otherwise). Nothing is made until a send needs it."""

    def make_email() -> Channel:
        if settings.email.smtp_url:
            from bot.channels.email import SmtpChannel

            return SmtpChannel(settings.email)
        from bot.channels.outbox import OutboxChannel

        return OutboxChannel(settings.outbox_dir, settings=settings.email)

    def make_slack() -> Channel:
        from bot.channels.parts import MemoryPartLog
        from bot.channels.slack_channel import SlackChannel

        return SlackChannel(settings.slack, part_log=part_log if part_log is not None else MemoryPartLog())

    registry = ChannelRegistry()
    registry.register_lazy("email", email_channel_name(settings), make_email)
    registry.register_lazy("slack", "slack", make_slack)
    return registry
