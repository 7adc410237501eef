"""`flarestart send` and `flarestart deliveries list`: one digest by hand, and the delivery ledger."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from bot.channels.base import Channel
from bot.channels.email import SmtpChannel
from bot.channels.outbox import OutboxChannel
from bot.cli.common import ago, console, open_store, print_json, state
from bot.config import Settings
from bot.delivery.ledger import STATUSES, DeliveryLedger
from bot.delivery.service import DigestService, SendResult, make_channel
from bot.errors import ConfigError, DeliveryTransientError, FlareStartError
from bot.store import Store
from bot.store.models import Delivery, Subscriber
from bot.store.subscribers import SubscriberError, SubscriberStore
from bot.store.types import utcnow
from bot.subscribers.schedule import next_delivery_at, parse_delivery_time, period_for

__all__ = ["current_period", "deliveries_app", "describe_destination", "send"]

STATUS_STYLE = {"pending": "cyan", "sending": "yellow", "sent": "green", "failed": "red", "skipped": "dim"}
RECENT_DELIVERIES = 20  # a subscriber's newest ledger rows, where the current period's row is


class NothingToSendError(FlareStartError):
    """`send` has no digest to send: none is due, today has none, or this one failed for good."""


def current_period(frequency: str, local_date: date) -> str | None:
    """The period `local_date` falls in, whether or not it is a delivery day: the date for daily
    and weekdays (None on a weekend for weekdays), the ISO week for weekly."""
    if frequency.startswith("weekly"):
        year, week, _ = local_date.isocalendar()
        return f"{year}-W{week:02d}"
    return period_for(frequency, local_date)


def describe_destination(channel: Channel, address: str) -> str:
    """Where a digest for `address` goes through `channel`, in words."""
    if isinstance(channel, SmtpChannel):
        return f"{address} through {channel.target}"
    if isinstance(channel, OutboxChannel):
        return f"the outbox Maildir {channel.maildir_path}"
    return f"{address} via {channel.name}"


def _local(moment: datetime, timezone: str) -> str:
    return moment.astimezone(ZoneInfo(timezone)).strftime("%a %Y-%m-%d %H:%M %Z")


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What `send` did, for the one line (or the JSON) it prints."""

    result: SendResult
    channel: str
    destination: str
    earlier: Delivery | None = None  # the ledger row that made it not send


def _ledger_row(ledger: DeliveryLedger, subscriber_id: int, period: str, channel: str) -> Delivery | None:
    for row in ledger.list(subscriber_id=subscriber_id, limit=RECENT_DELIVERIES):
        if row.period == period and row.channel == channel:
            return row
    return None


def _period_to_send(service: DigestService, subscriber: Subscriber, now: datetime, *, force: bool) -> str:
    """The due period; with --now the current one. Exits 1 when there is none to send."""
    due = service.due(subscriber, now)
    if due is not None:
        return due.period
    who = subscriber.email or f"#{subscriber.id}"
    upcoming = next_delivery_at(
        now=now,
        timezone=subscriber.timezone,
        delivery_time=parse_delivery_time(subscriber.delivery_time),
        frequency=subscriber.frequency,
    )
    when = f"{_local(upcoming, subscriber.timezone)} ({ago(upcoming, now)})"
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


async def _send_one(
    store: Store, settings: Settings, subscriber: Subscriber, *, force: bool, dry_run: bool
) -> _Outcome:
    assert subscriber.id is not None and subscriber.email is not None
    channel = make_channel(settings)
    try:
        service = DigestService(store, settings, channel)
        period = _period_to_send(service, subscriber, service.clock(), force=force)
        destination = describe_destination(channel, subscriber.email)
        earlier = _ledger_row(service.ledger, subscriber.id, period, channel.name)
        if earlier is not None and earlier.status == "failed":
            raise NothingToSendError(
                f"{subscriber.email}'s digest for {period} failed for good after {earlier.attempts} "
                f"attempt(s), so it is not sent again: {earlier.last_error or 'no error recorded'}"
            )
        if earlier is not None and earlier.status in ("sent", "skipped"):
            status = "already-sent" if earlier.status == "sent" else "skipped"
            result = SendResult(status, subscriber.email, period, len(earlier.article_ids))
            return _Outcome(result, channel.name, destination, earlier)
        try:
            # Not the last attempt: a server that is down leaves the delivery pending, to retry.
            result = await service.send(subscriber.id, period, dry_run=dry_run, last_attempt=False)
        except DeliveryTransientError as exc:
            raise DeliveryTransientError(
                f"{exc}; nothing was sent and the delivery stays pending: run the command again to retry",
                retry_after=exc.retry_after,
            ) from None
        return _Outcome(result, channel.name, destination)
    finally:
        await channel.aclose()


def send(
    subscriber: Annotated[str, typer.Argument(help="The subscriber's email or id.")],
    now: Annotated[
        bool,
        typer.Option(
            "--now", help="Send the current period's digest even if its delivery time has not come."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Compose and render only: send nothing, record nothing.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Send one subscriber's digest for the period that is due now, through SMTP or the outbox.

    Safe to repeat: the delivery ledger knows what went out, and a period is sent once. Exits 1
    when nothing is due (unless --now) and when the delivery failed.

    Example: flarestart send ada@example.com --now --dry-run
    """
    settings = state.get_settings()
    with open_store(seed=False) as store:
        row = SubscriberStore(store.engine).get(subscriber)
        who = row.email or f"#{row.id}"
        if row.status != "active":
            hint = (
                "; `flarestart subscribers resume` sends to them again"
                if row.status != "unsubscribed"
                else ""
            )
            raise SubscriberError(f"{who} is {row.status}, so no digest goes to them{hint}")
        if not row.email:
            raise SubscriberError(f"subscriber #{row.id} has no email address to send to")
        outcome = asyncio.run(_send_one(store, settings, row, force=now, dry_run=dry_run))
    if json:
        print_json(_outcome_json(outcome))
    else:
        console.print(_outcome_line(outcome), highlight=False, soft_wrap=True)


def _outcome_line(outcome: _Outcome) -> str:
    result, earlier = outcome.result, outcome.earlier
    digest = f"{escape(result.subscriber)}'s digest for {result.period}"
    if result.status == "sent":
        receipt = result.receipt
        where = outcome.destination
        if receipt is not None and outcome.channel == "outbox":
            where += f" (HTML preview: {escape(receipt.destination)})"
        elif receipt is not None and receipt.detail:
            where += f" (server: {escape(receipt.detail)})"
        return f"[green]Sent[/] {digest}: {result.items} items to {escape(where)}."
    if result.status == "dry-run":
        return (
            f"[cyan]Dry run:[/] {digest} would have {result.items} items, subject "
            f'"{escape(result.detail)}", and would go to {escape(outcome.destination)}. '
            "Nothing was sent or recorded."
        )
    if result.status == "already-sent":
        when = f" {ago(earlier.sent_at)}" if earlier is not None and earlier.sent_at else ""
        return f"Already sent: {digest} went out{when}; nothing sent again."
    reason = result.detail or (earlier.last_error if earlier is not None else "") or "nothing to send"
    return f"[yellow]Skipped[/] {digest}: {escape(reason)}."


def _outcome_json(outcome: _Outcome) -> dict[str, Any]:
    result, receipt = outcome.result, outcome.result.receipt
    return {
        "status": result.status,
        "subscriber": result.subscriber,
        "period": result.period,
        "items": result.items,
        "channel": outcome.channel,
        "destination": outcome.destination,
        "subject": result.detail if result.status == "dry-run" else None,
        "detail": None if result.status == "dry-run" else (result.detail or None),
        "message_id": (
            receipt.message_id
            if receipt is not None
            else (outcome.earlier.message_id if outcome.earlier is not None else None)
        ),
        "sent_at": outcome.earlier.sent_at if outcome.earlier is not None else None,
    }


deliveries_app = typer.Typer(
    help="The delivery ledger: every digest sent, skipped or failed.", no_args_is_help=True
)


@deliveries_app.command("list")
def deliveries_list(
    status: Annotated[
        str | None, typer.Option(help="Only this status: pending, sending, sent, failed or skipped.")
    ] = None,
    subscriber: Annotated[str | None, typer.Option(help="Only this subscriber (email or id).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List deliveries, newest first: who, which period, status, attempts and the last error.

    Example: flarestart deliveries list --status failed --json | jq '.[].last_error'
    """
    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status {status!r}: expected one of {', '.join(STATUSES)}")
    with open_store(seed=False) as store:
        subscribers = SubscriberStore(store.engine)
        wanted = subscribers.get(subscriber).id if subscriber is not None else None
        ledger = DeliveryLedger(store.engine)
        rows = ledger.list(status=status, subscriber_id=wanted, limit=limit)
        counts = ledger.counts()
        emails = {s.id: s.email or f"#{s.id}" for s in subscribers.list()}
    if json:
        print_json([_delivery_json(row, emails.get(row.subscriber_id)) for row in rows])
        return
    if not rows:
        filtered = status is not None or subscriber is not None
        console.print(
            "No deliveries match."
            if filtered
            else "No deliveries yet. Send one: [bold]flarestart send EMAIL[/]"
        )
        return
    now = utcnow()
    table = Table(title=f"{len(rows)} deliver{'y' if len(rows) == 1 else 'ies'}", title_justify="left")
    for column in ("subscriber", "period", "channel", "status", "attempts", "last error", "sent"):
        table.add_column(column, overflow="fold", justify="right" if column == "attempts" else "left")
    for row in rows:
        style = STATUS_STYLE.get(row.status, "")
        table.add_row(
            escape(emails.get(row.subscriber_id, f"#{row.subscriber_id}")),
            row.period,
            row.channel,
            f"[{style}]{row.status}[/]",
            str(row.attempts),
            escape((row.last_error or "")[:100]),
            ago(row.sent_at, now),
        )
    console.print(table)
    console.print(
        "All deliveries: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s]) + ".",
        highlight=False,
    )


def _delivery_json(row: Delivery, email: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "subscriber_id": row.subscriber_id,
        "subscriber": email,
        "period": row.period,
        "channel": row.channel,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "message_id": row.message_id,
        "article_ids": list(row.article_ids),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "sent_at": row.sent_at,
    }
