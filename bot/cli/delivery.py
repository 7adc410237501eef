"""`flarestart send` and `flarestart deliveries list|retry`: one digest by hand, the delivery ledger,
and failed digests sent again."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape

from bot.cli.common import ago, console, err_console, open_store, parse_duration, print_json, state
from bot.errors import ConfigError, DeliveryTransientError, FlareStartError

if TYPE_CHECKING:
    from bot.channels.base import Channel, OutgoingDigest, Receipt
    from bot.config import Settings
    from bot.delivery.ledger import DeliveryLedger
    from bot.delivery.service import DigestService, SendResult
    from bot.store import Store
    from bot.store.models import Delivery, Subscriber

# Every import here is paid by `flarestart --version` (the CLI imports this module at start):
# each command imports the store and the pipeline it uses.

__all__ = [
    "RetryOutcome",
    "current_period",
    "deliveries_app",
    "describe_destination",
    "retry_failed",
    "send",
]

STATUS_STYLE = {"pending": "cyan", "sending": "yellow", "sent": "green", "failed": "red", "skipped": "dim"}
RECENT_DELIVERIES = 20  # a subscriber's newest ledger rows, where the current period's row is


class NothingToSendError(FlareStartError):
    """`send` has no digest to send: none is due, today has none, or this one failed for good."""


def current_period(frequency: str, local_date: date) -> str | None:
    """The period `local_date` falls in, whether or not it is a delivery day: the date for daily
    and weekdays (None on a weekend for weekdays), the ISO week for weekly."""
    from bot.subscribers.schedule import period_for

    if frequency.startswith("weekly"):
        year, week, _ = local_date.isocalendar()
        return f"{year}-W{week:02d}"
    return period_for(frequency, local_date)


def describe_destination(channel: Channel, address: str) -> str:
    """Where a digest for `address` goes through `channel`, in words."""
    from bot.channels.email import SmtpChannel
    from bot.channels.outbox import OutboxChannel

    if isinstance(channel, SmtpChannel):
        return f"{address} through {channel.target}"
    if isinstance(channel, OutboxChannel):
        return f"the outbox Maildir {channel.maildir_path}"
    return f"{address} via {channel.name}"


@dataclass(frozen=True, slots=True)
class _Outcome:
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
    from bot.cli.subscribers import describe_next
    from bot.subscribers.schedule import next_delivery, parse_delivery_time

    upcoming = next_delivery(
        now=now,
        timezone=subscriber.timezone,
        delivery_time=parse_delivery_time(subscriber.delivery_time),
        frequency=subscriber.frequency,
        catch_up=timedelta(hours=service.settings.delivery.catch_up_hours),
    )
    if upcoming.due_now:
        return upcoming.period
    who = subscriber.email or f"#{subscriber.id}"
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


async def _send_one(
    store: Store, settings: Settings, subscriber: Subscriber, *, force: bool, dry_run: bool
) -> _Outcome:
    from bot.delivery.service import DigestService, SendResult, make_channel

    assert subscriber.id is not None and subscriber.email is not None
    channel = make_channel(settings)
    try:
        service = DigestService(store, settings, channel)
        period = _period_to_send(service, subscriber, service.clock(), force=force)
        destination = describe_destination(channel, subscriber.email)
        earlier = _ledger_row(service.ledger, subscriber.id, period, channel.name)
        if dry_run:  # composed now, whatever the ledger said earlier; the line notes a final row
            result = await service.send(subscriber.id, period, dry_run=True)
            return _Outcome(result, channel.name, destination, earlier, dry_run=True)
        if earlier is not None and earlier.status == "failed":
            raise NothingToSendError(
                f"{subscriber.email}'s digest for {period} failed for good after {earlier.attempts} "
                f"attempt(s), so it is not sent again: {earlier.last_error or 'no error recorded'}; "
                "`flarestart deliveries retry` queues it again once the cause is fixed"
            )
        if earlier is not None and earlier.status == "sent":
            result = SendResult("already-sent", subscriber.email, period, len(earlier.article_ids))
            return _Outcome(result, channel.name, destination, earlier)
        # A skipped (quiet) period is composed again: there may be something to send by now.
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
    subscriber: Annotated[str | None, typer.Argument(help="The subscriber's email or id.")] = None,
    now: Annotated[
        bool,
        typer.Option(
            "--now", help="Send the current period's digest even if its delivery time has not come."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Compose and render only: send nothing, record nothing.")
    ] = False,
    test: Annotated[
        str | None,
        typer.Option(
            "--test",
            metavar="ADDRESS",
            help="Send today's sample digest (the day's best, subject marked [test]) to ADDRESS "
            "through the configured channel; records nothing.",
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Send one subscriber's digest for the period that is due now, through SMTP or the outbox.

    Safe to repeat: the delivery ledger knows what went out, and a period is sent once. Exits 1
    when nothing is due (unless --now) and when the delivery failed. With --test ADDRESS, no
    subscriber is needed: a sample digest checks your SMTP settings end to end.

    Example: flarestart send ada@example.com --now --dry-run
    (or: flarestart send --test you@example.com)
    """
    import asyncio

    from bot.store.subscribers import SubscriberError, SubscriberStore

    settings = state.get_settings()
    if test is not None:
        if subscriber is not None:
            raise ConfigError("give a SUBSCRIBER or --test ADDRESS, not both")
        _send_test(settings, test, dry_run=dry_run, json=json)
        return
    if subscriber is None:
        raise ConfigError(
            "send needs a SUBSCRIBER (email or id), or --test ADDRESS for a sample digest to yourself"
        )
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


def _send_test(settings: Settings, address: str, *, dry_run: bool, json: bool) -> None:
    """`send --test`: the sample digest through the real channel; nothing recorded."""
    import asyncio
    import secrets

    from bot.delivery.service import placeholders
    from bot.subscribers.files import normalize_email

    try:
        address = normalize_email(address)
    except ValueError as exc:
        raise ConfigError(f"--test: {exc}") from None
    for warning in placeholders(settings) if settings.email.smtp_url else ():
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    # Its links are signed with a throwaway key: they must not work for whoever is subscriber #1.
    throwaway = settings.model_copy(update={"secret_key": secrets.token_hex(32)})
    with open_store() as store:
        result = asyncio.run(_run_test(store, throwaway, address, dry_run=dry_run))
    outgoing, receipt = result.outgoing, result.receipt
    if json:
        print_json(
            {
                "status": "dry-run" if dry_run else "sent",
                "to": address,
                "items": result.items,
                "subject": outgoing.rendered.subject,
                "channel": result.channel,
                "destination": result.destination,
                "message_id": outgoing.message_id,
                "detail": receipt.detail if receipt is not None else None,
                "recorded": False,
            }
        )
        return
    what = f'a test digest ({result.items} items, subject "{escape(outgoing.rendered.subject)}")'
    if dry_run:
        console.print(
            f"[cyan]Dry run:[/] {what} would go to {escape(result.destination)}. Nothing was sent.",
            highlight=False,
            soft_wrap=True,
        )
        return
    server = f" (server: {escape(receipt.detail)})" if receipt is not None and receipt.detail else ""
    console.print(
        f"[green]Sent[/] {what} to {escape(result.destination)}{server}. Nothing was recorded: "
        "no delivery, and the articles stay new for every reader.",
        highlight=False,
        soft_wrap=True,
    )


@dataclass(frozen=True, slots=True)
class _TestOutcome:
    outgoing: OutgoingDigest
    items: int
    receipt: Receipt | None
    channel: str
    destination: str


async def _run_test(store: Store, settings: Settings, address: str, *, dry_run: bool) -> _TestOutcome:
    from bot.delivery.service import DigestService, make_channel

    channel = make_channel(settings)
    try:
        service = DigestService(store, settings, channel)
        sent = await service.send_test(address, dry_run=dry_run)
    finally:
        await channel.aclose()
    destination = describe_destination(channel, address)
    return _TestOutcome(sent.outgoing, sent.items, sent.receipt, channel.name, destination)


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
    if outcome.dry_run:
        if result.status == "dry-run":
            line = (
                f"[cyan]Dry run:[/] {digest} would have {result.items} items, subject "
                f'"{escape(result.detail)}", and would go to {escape(outcome.destination)}. '
                "Nothing was sent or recorded."
            )
        else:
            line = (
                f"[cyan]Dry run:[/] {digest} would be skipped: {escape(result.detail)}. Nothing was recorded."
            )
        if earlier is not None and earlier.status in ("sent", "failed"):
            when = f" {ago(earlier.sent_at)}" if earlier.sent_at else ""
            final = f"went out{when}" if earlier.status == "sent" else "failed for good"
            line += f" (The ledger says this period {final}, so a real send sends nothing.)"
        return line
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
    from rich.table import Table

    from bot.delivery.ledger import STATUSES, DeliveryLedger
    from bot.store.subscribers import SubscriberStore
    from bot.store.types import utcnow

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


RETRY_SINCE = "48h"  # the default look-back: a typo in a filter never resends a month
RETRY_CHANNELS = ("email", "outbox")
_PERIOD = re.compile(r"^\d{4}-(?:\d{2}-\d{2}|W\d{2})$")
REQUEUED, WOULD_REQUEUE, SKIPPED = "requeued", "would-requeue", "skipped"
OUTCOME_STYLE = {REQUEUED: "green", WOULD_REQUEUE: "cyan", SKIPPED: "yellow"}


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    """What `deliveries retry` did (or, in a dry run, would do) with one failed delivery."""

    delivery: Delivery
    subscriber: str
    outcome: str  # requeued | would-requeue | skipped
    detail: str


class _Rollback(Exception):
    """Undo one delivery's retry: the reason it is skipped."""


def retry_failed(
    service: DigestService,
    *,
    since: datetime,
    subscriber_id: int | None = None,
    period: str | None = None,
    channel: str | None = None,
    dry_run: bool = False,
) -> list[RetryOutcome]:
    """Put digests that failed for good back in the queue: each delivery failed → pending and its
    send job runnable again (requeued, or enqueued anew when it was pruned), in one transaction
    per delivery. Subscribers who are not active are skipped; so is a row that changed meanwhile
    (the ledger's guarded move says so), which keeps a sent digest from ever going twice."""
    rows = service.ledger.failed_since(since, subscriber_id=subscriber_id, period=period, channel=channel)
    subscribers = {s.id: s for s in service.subscribers.list()}
    outcomes = []
    for row in rows:
        subscriber = subscribers.get(row.subscriber_id)
        who = (subscriber.email if subscriber is not None else None) or f"#{row.subscriber_id}"
        reason = _not_retried(row, subscriber, service.channel.name)
        if reason is not None or subscriber is None:
            outcomes.append(RetryOutcome(row, who, SKIPPED, reason or "the subscriber is gone"))
            continue
        try:
            detail = (_dry_retry if dry_run else _retry_one)(service, row, subscriber)
        except _Rollback as exc:
            outcomes.append(RetryOutcome(row, who, SKIPPED, str(exc)))
            continue
        outcomes.append(RetryOutcome(row, who, WOULD_REQUEUE if dry_run else REQUEUED, detail))
    return outcomes


def _not_retried(row: Delivery, subscriber: Subscriber | None, channel: str) -> str | None:
    from bot.delivery.service import CONFIRM_PERIOD

    if row.period == CONFIRM_PERIOD:
        return "a double opt-in mail, not a digest"
    if subscriber is None:
        return "the subscriber is gone"
    if subscriber.status != "active" or not subscriber.email:
        return f"subscriber is {subscriber.status}: nothing is sent to them"
    if row.channel != channel:
        return f"failed through {row.channel}, but the configured channel is {channel}"
    return None


def _retry_one(service: DigestService, row: Delivery, subscriber: Subscriber) -> str:
    from bot.delivery.service import send_job_key

    assert row.id is not None
    key = send_job_key(row.subscriber_id, row.period, row.channel)
    now = service.clock()
    with service.store.engine.begin() as conn:
        if not service.ledger.reopen(row.id, now=now, connection=conn):
            raise _Rollback(f"changed meanwhile (now {service.ledger.get(row.id).status}): left alone")
        if service.queue.requeue(key, now=now, connection=conn):
            return "send job queued again"
        job_status = service.queue.status_of(key, connection=conn)
        if job_status == "queued":
            return "its send job was still queued"
        if job_status is not None:
            raise _Rollback(f"its send job is {job_status}: try again once it has finished")
        job = service.send_job_for(subscriber, row.period, around=row.created_at)
        if job is None:
            raise _Rollback(_SCHEDULE_CHANGED)
        service.queue.enqueue_one(job, connection=conn)
        return "new send job (the old one was pruned)"


def _dry_retry(service: DigestService, row: Delivery, subscriber: Subscriber) -> str:
    from bot.delivery.service import send_job_key

    job_status = service.queue.status_of(send_job_key(row.subscriber_id, row.period, row.channel))
    if job_status in ("done", "failed"):
        return "would queue its send job again"
    if job_status == "queued":
        return "its send job is still queued"
    if job_status is not None:
        raise _Rollback(f"its send job is {job_status}: try again once it has finished")
    if service.send_job_for(subscriber, row.period, around=row.created_at) is None:
        raise _Rollback(_SCHEDULE_CHANGED)
    return "would enqueue a new send job (the old one was pruned)"


_SCHEDULE_CHANGED = "its send job was pruned and the subscriber's schedule no longer has this period"


@deliveries_app.command("retry")
def deliveries_retry(
    period: Annotated[
        str | None, typer.Option(help="Only this period: a day (2026-11-27) or an ISO week (2026-W48).")
    ] = None,
    subscriber: Annotated[str | None, typer.Option(help="Only this subscriber (email or id).")] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel: email or outbox.")] = None,
    since: Annotated[
        str, typer.Option(help="Only deliveries that failed this recently, e.g. 6h, 2d.")
    ] = RETRY_SINCE,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be requeued; change nothing.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Send digests that failed for good again, once the cause is fixed (a wrong SMTP password,
    an outage that outlasted the retries): each goes back to pending with its send job queued,
    and the running service (`flarestart run`) sends it. Subscribers who are not active are
    skipped, and a digest that was sent is never selected.

    Example: flarestart deliveries retry --since 6h --dry-run
    """
    import asyncio

    from bot.delivery.service import DigestService, make_channel
    from bot.store.subscribers import SubscriberStore
    from bot.store.types import utcnow

    cutoff = utcnow() - parse_duration(since, option="--since")
    if period is not None and not _PERIOD.match(period):
        raise ConfigError(f"--period {period!r}: expected a day like 2026-11-27 or a week like 2026-W48")
    if channel is not None and channel not in RETRY_CHANNELS:
        raise ConfigError(f"--channel {channel!r}: expected one of {', '.join(RETRY_CHANNELS)}")
    settings = state.get_settings()
    with open_store(seed=False) as store:
        wanted = SubscriberStore(store.engine).get(subscriber).id if subscriber is not None else None
        service_channel = make_channel(settings)
        try:
            service = DigestService(store, settings, service_channel)
            outcomes = retry_failed(
                service, since=cutoff, subscriber_id=wanted, period=period, channel=channel, dry_run=dry_run
            )
        finally:
            asyncio.run(service_channel.aclose())
    if json:
        print_json([_retry_json(outcome) for outcome in outcomes])
        return
    _print_retry(outcomes, since=since, dry_run=dry_run)


def _print_retry(outcomes: list[RetryOutcome], *, since: str, dry_run: bool) -> None:
    from rich.table import Table

    if not outcomes:
        console.print(f"No failed deliveries in the last {escape(since)} match; nothing to retry.")
        return
    table = Table(
        title=f"{len(outcomes)} failed deliver{'y' if len(outcomes) == 1 else 'ies'}", title_justify="left"
    )
    for column in ("subscriber", "period", "channel", "attempts", "last error", "outcome", "detail"):
        table.add_column(column, overflow="fold", justify="right" if column == "attempts" else "left")
    for outcome in outcomes:
        row = outcome.delivery
        table.add_row(
            escape(outcome.subscriber),
            row.period,
            row.channel,
            str(row.attempts),
            escape((row.last_error or "")[:100]),
            f"[{OUTCOME_STYLE[outcome.outcome]}]{outcome.outcome}[/]",
            escape(outcome.detail),
        )
    console.print(table)
    chosen = sum(outcome.outcome != SKIPPED for outcome in outcomes)
    skipped = len(outcomes) - chosen
    if dry_run:
        line = f"Dry run: nothing changed. {chosen} would be requeued, {skipped} skipped."
    elif chosen:
        line = (
            f"{chosen} requeued, {skipped} skipped. The running service (`flarestart run`) sends them; "
            "`flarestart send EMAIL --now` sends one of the current period at once."
        )
    else:
        line = f"Nothing requeued: {skipped} skipped."
    console.print(line, highlight=False, soft_wrap=True)


def _retry_json(outcome: RetryOutcome) -> dict[str, Any]:
    row = outcome.delivery
    return {
        "id": row.id,
        "subscriber_id": row.subscriber_id,
        "subscriber": outcome.subscriber,
        "period": row.period,
        "channel": row.channel,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "outcome": outcome.outcome,
        "detail": outcome.detail,
    }
