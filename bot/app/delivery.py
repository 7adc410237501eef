"""The sending verbs of the application layer: one subscriber's digest by hand, and a sample
digest to any address. `FlareStart.send` and `send_test` call these; the daemon sends through
`DigestService` and the batch sender itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.app.words import describe_next
from bot.channels.base import Channel, OutgoingDigest, Receipt
from bot.channels.email import SmtpChannel
from bot.channels.outbox import OutboxChannel
from bot.channels.registry import registry_for
from bot.config import Settings
from bot.delivery.ledger import DeliveryLedger
from bot.delivery.service import DigestService, SendResult
from bot.errors import DeliveryBusyError, DeliveryPermanentError, DeliveryTransientError, FlareStartError
from bot.store import Store
from bot.store.models import Delivery, Subscriber
from bot.store.parts import DatabasePartLog
from bot.subscribers.schedule import current_period, next_delivery, parse_delivery_time
from bot.types import subscriber_ref

RECENT_DELIVERIES = 20  # a subscriber's newest ledger rows, where the current period's row is


class NothingToSendError(FlareStartError):
    """`send` has no digest to send: none is due, today has none, or this one failed for good."""


def describe_destination(channel: Channel, address: str) -> str:
    """Where a digest for `address` goes through `channel`, in words."""
    if isinstance(channel, SmtpChannel):
        return f"{address} through {channel.target}"
    if isinstance(channel, OutboxChannel):
        return f"the outbox Maildir {channel.maildir_path}"
    return f"{address} via {channel.name}"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What `send` did, for the one line (or the JSON) it prints."""

    result: SendResult
    channel: str
    destination: str
    earlier: Delivery | None = None  # the ledger row that made it not send (or, dry, what it says)
    dry_run: bool = False


def _ledger_row(ledger: DeliveryLedger, subscriber_id: int, period: str, channel: str) -> Delivery | None:
    for row in ledger.list(subscriber_id=subscriber_id, limit=RECENT_DELIVERIES):
        if row.period == period and row.channel == channel:
            return row
    return None


def _period_to_send(service: DigestService, subscriber: Subscriber, now: datetime, *, force: bool) -> str:
    """The due period; with --now the current one. Exits 1 when there is none to send."""
    upcoming = next_delivery(
        now=now,
        timezone=subscriber.timezone,
        delivery_time=parse_delivery_time(subscriber.delivery_time),
        frequency=subscriber.frequency,
        catch_up=timedelta(hours=service.settings.delivery.catch_up_hours),
    )
    if upcoming.due_now:
        return upcoming.period
    who = subscriber_ref(subscriber)
    when = describe_next(upcoming, subscriber.timezone, now)
    if not force:
        raise NothingToSendError(
            f"nothing due for {who}: the next digest is {when}; "
            f"`flarestart send {who} --now` sends the current one now"
        )
    today = now.astimezone(ZoneInfo(subscriber.timezone)).date()
    period = current_period(subscriber.frequency, today)
    if period is None:
        raise NothingToSendError(
            f"{who} gets digests on weekdays only, and it is {today:%A} in {subscriber.timezone}; "
            f"the next one is {when}"
        )
    return period


async def send_one(
    store: Store, settings: Settings, subscriber: Subscriber, *, force: bool, dry_run: bool
) -> SendOutcome:
    assert subscriber.id is not None and subscriber.address
    who = subscriber_ref(subscriber)
    channels = registry_for(settings, DatabasePartLog(store.engine))
    channel = channels.for_subscriber(subscriber)
    try:
        service = DigestService(store, settings, channels)
        period = _period_to_send(service, subscriber, service.clock(), force=force)
        destination = describe_destination(channel, subscriber.address)
        earlier = _ledger_row(service.ledger, subscriber.id, period, channel.name)
        if dry_run:  # composed now, whatever the ledger said earlier; the line notes a final row
            result = await service.send(subscriber.id, period, dry_run=True)
            return SendOutcome(result, channel.name, destination, earlier, dry_run=True)
        if earlier is not None and earlier.status == "failed":
            raise NothingToSendError(
                f"{who}'s digest for {period} failed for good after {earlier.attempts} "
                f"attempt(s), so it is not sent again: {earlier.last_error or 'no error recorded'}; "
                "`flarestart deliveries retry` queues it again once the cause is fixed"
            )
        if earlier is not None and earlier.status == "sent":
            result = SendResult("already-sent", who, period, len(earlier.article_ids))
            return SendOutcome(result, channel.name, destination, earlier)
        # A skipped (quiet) period is composed again: there may be something to send by now.
        try:
            # Not the last attempt: a server that is down leaves the delivery pending, to retry.
            result = await service.send(subscriber.id, period, dry_run=dry_run, last_attempt=False)
        except DeliveryBusyError:
            raise  # another door is sending it now: said as is, nothing sent here
        except DeliveryPermanentError as exc:
            if not exc.pauses:
                raise
            raise DeliveryPermanentError(
                f"{exc}; {who} is paused until `flarestart subscribers resume {who}`"
            ) from None
        except DeliveryTransientError as exc:
            raise DeliveryTransientError(
                f"{exc}; nothing was sent and the delivery stays pending: run the command again to retry",
                retry_after=exc.retry_after,
            ) from None
        return SendOutcome(result, channel.name, destination)
    finally:
        await channels.aclose()


@dataclass(frozen=True, slots=True)
class SampleSend:
    outgoing: OutgoingDigest
    items: int
    receipt: Receipt | None
    channel: str
    destination: str


async def run_test(store: Store, settings: Settings, address: str, *, dry_run: bool) -> SampleSend:
    channels = registry_for(settings)
    channel = channels.for_kind("email")
    try:
        service = DigestService(store, settings, channels)
        sent = await service.send_test(address, dry_run=dry_run)
    finally:
        await channels.aclose()
    destination = describe_destination(channel, address)
    return SampleSend(sent.outgoing, sent.items, sent.receipt, channel.name, destination)
