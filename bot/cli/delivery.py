"""`flarestart send` and `flarestart deliveries list|retry`: one digest by hand, the delivery ledger,
and failed digests sent again."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from bot.cli.common import ago, console, err_console, open_app, parse_duration, print_json
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.app.types import Delivery, RetryOutcome, SendOutcome

# Every import here is paid by `flarestart --version` (the CLI imports this module at start):
# each command imports the store and the pipeline it uses.

__all__ = ["deliveries_app", "send"]

STATUS_STYLE = {"pending": "cyan", "sending": "yellow", "sent": "green", "failed": "red", "skipped": "dim"}


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
    if test is not None:
        if subscriber is not None:
            raise ConfigError("give a SUBSCRIBER or --test ADDRESS, not both")
        _send_test(test, dry_run=dry_run, json=json)
        return
    if subscriber is None:
        raise ConfigError(
            "send needs a SUBSCRIBER (email or id), or --test ADDRESS for a sample digest to yourself"
        )
    with open_app(seed=False) as flarestart:
        outcome = flarestart.send(subscriber, force=now, dry_run=dry_run)
    if json:
        print_json(_outcome_json(outcome))
    else:
        console.print(_outcome_line(outcome), highlight=False, soft_wrap=True)


def _send_test(address: str, *, dry_run: bool, json: bool) -> None:
    """`send --test`: the sample digest through the real channel; nothing recorded."""
    with open_app() as flarestart:
        flarestart.test_address(address)  # a bad address is the one error, before any warning
        for warning in flarestart.placeholder_warnings():
            err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
        result = flarestart.send_test(address, dry_run=dry_run)
    address = result.outgoing.to_address
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


def _outcome_line(outcome: SendOutcome) -> str:
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


def _outcome_json(outcome: SendOutcome) -> dict[str, Any]:
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

    with open_app(seed=False) as flarestart:
        listing = flarestart.list_deliveries(status=status, subscriber=subscriber, limit=limit)
        now = flarestart.now()
    rows, counts, emails = listing.rows, listing.counts, listing.addresses
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
        "All deliveries: " + ", ".join(f"{counts[s]} {s}" for s in listing.statuses if counts[s]) + ".",
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
RETRY_CHANNELS = ("email", "outbox", "slack")
SKIPPED = "skipped"  # RetryOutcome.outcome: requeued | would-requeue | skipped
OUTCOME_STYLE = {"requeued": "green", "would-requeue": "cyan", SKIPPED: "yellow"}
_PERIOD = re.compile(r"^\d{4}-(?:\d{2}-\d{2}|W\d{2})$")


@deliveries_app.command("retry")
def deliveries_retry(
    period: Annotated[
        str | None, typer.Option(help="Only this period: a day (2026-11-27) or an ISO week (2026-W48).")
    ] = None,
    subscriber: Annotated[str | None, typer.Option(help="Only this subscriber (email or id).")] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel: email, outbox or slack.")] = None,
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
    age = parse_duration(since, option="--since")
    if period is not None and not _PERIOD.match(period):
        raise ConfigError(f"--period {period!r}: expected a day like 2026-11-27 or a week like 2026-W48")
    if channel is not None and channel not in RETRY_CHANNELS:
        raise ConfigError(f"--channel {channel!r}: expected one of {', '.join(RETRY_CHANNELS)}")
    with open_app(seed=False) as flarestart:
        outcomes = flarestart.retry_deliveries(
            since=age, subscriber=subscriber, period=period, channel=channel, dry_run=dry_run
        )
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
