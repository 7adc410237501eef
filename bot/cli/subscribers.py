"""`flarestart subscribers …`: sync from TOML files, add, list, show, pause, resume, remove."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from bot.app.words import describe_next
from bot.cli.common import console, err_console, open_app, print_json, state
from bot.cli.suppressions import app as suppressions_app
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.app.types import NextDelivery, Subscriber, SuppressedEntry, SyncReport

app = typer.Typer(help="Manage who receives digests, and when.", no_args_is_help=True)
app.add_typer(suppressions_app, name="suppressions")

STATUS_STYLE = {
    "active": "green",
    "paused": "yellow",
    "pending": "cyan",
    "bouncing": "red",
    "unsubscribed": "dim",
}


def _topics_text(topics: dict[str, float]) -> str:
    return ", ".join(slug if weight == 1.0 else f"{slug}:{weight:g}" for slug, weight in topics.items())


def _label(subscriber: Subscriber) -> str:
    from bot.app.types import subscriber_label

    return subscriber_label(subscriber)


def _subscriber_dict(subscriber: Subscriber, upcoming: NextDelivery | None) -> dict[str, Any]:
    from bot.app.types import SubscriberView

    view = SubscriberView(subscriber, upcoming)
    data = subscriber.model_dump()
    data["destination"] = view.ref
    data["default_topics"] = view.default_topics
    data["next_delivery"] = upcoming.scheduled_at if upcoming is not None else None
    data["next_period"] = upcoming.period if upcoming is not None else None
    data["due_now"] = upcoming.due_now if upcoming is not None else False
    return data


def _parse_topics(text: str | None) -> dict[str, float]:
    """'python,ai' or 'python:2,ai' → {slug: weight}."""
    topics: dict[str, float] = {}
    for part in (text or "").split(","):
        slug, sep, weight = part.strip().partition(":")
        if not slug.strip():
            continue
        try:
            topics[slug.strip().lower()] = float(weight) if sep else 1.0
        except ValueError:
            raise ConfigError(
                f"--topics {part.strip()!r}: a weight must be a number, like python:2"
            ) from None
    return topics


@app.command("sync")
def sync(
    folder: Annotated[
        Path | None,
        typer.Argument(help="Folder of *.toml subscriber files (default: the subscribers_dir setting)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; change nothing.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Make the stored file subscribers match the files: add, change, remove. Safe to repeat.

    Subscribers added with the CLI, the web page or chat are never touched. Any problem in any
    file stops the sync before anything changes.

    Example: flarestart subscribers sync subscribers/ --dry-run
    """
    from bot.app.errors import SubscriberFileError

    where = folder if folder is not None else state.get_settings().subscribers_dir
    with open_app(seed=False) as flarestart:
        try:
            outcome = flarestart.sync_subscribers(where, dry_run=dry_run)
        except SubscriberFileError as exc:
            for problem in exc.problems:
                err_console.print(
                    f"[red]{escape(str(problem.path))}:{problem.line}:[/] {escape(problem.message)}",
                    highlight=False,
                    soft_wrap=True,
                )
            count = len(exc.problems)
            raise ConfigError(
                f"{count} problem{'s' if count > 1 else ''} in the subscriber files in {where}; "
                "nothing changed"
            ) from None
        now = flarestart.now()
    report = outcome.report
    first = {v.ref: describe_next(v.next_delivery, v.subscriber.timezone, now) for v in outcome.added}
    if json:
        places = {entry.email: entry.where for entry in outcome.suppressed}
        print_json(report.as_dict() | {"suppressed_where": places})
        return
    _print_report(report, where, first)
    _print_suppressed(outcome.suppressed)


def _print_suppressed(entries: tuple[SuppressedEntry, ...]) -> None:
    for entry in entries:
        err_console.print(
            f"[yellow]! suppressed[/] {escape(entry.where)}: {escape(entry.email)} is suppressed "
            f"({entry.reason}); nothing is sent to it until they subscribe again from an unsubscribe link",
            highlight=False,
            soft_wrap=True,
        )


def _print_report(report: SyncReport, folder: Path, first: dict[str, str]) -> None:
    for email in report.added:
        when = f"; first digest {first[email]}" if email in first else ""
        console.print(f"[green]+ added[/]   {email}{when}", highlight=False, soft_wrap=True)
    for email in report.changed:
        fields = ", ".join(report.changes.get(email, ()))
        console.print(f"[yellow]~ changed[/] {email} ({fields})", highlight=False, soft_wrap=True)
    for email in report.removed:
        console.print(
            f"[red]- removed[/] {email} (no longer in any file; deleted)", highlight=False, soft_wrap=True
        )
    for email in report.skipped:
        console.print(
            f"[dim]! skipped[/] {email}: added outside the files; remove it there first to manage it here",
            highlight=False,
            soft_wrap=True,
        )
    verb = "Would sync" if report.dry_run else "Synced"
    console.print(
        f"{verb} {folder}: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.removed)} removed, {report.unchanged} unchanged"
        + (f", {len(report.skipped)} skipped" if report.skipped else "")
        + (" (dry run: nothing written)." if report.dry_run else "."),
        highlight=False,
        soft_wrap=True,
    )


@app.command("add")
def add(
    email: Annotated[
        str | None, typer.Argument(help="The subscriber's email address (or give --slack).")
    ] = None,
    slack: Annotated[
        str | None,
        typer.Option(
            "--slack", metavar="CHANNEL_ID", help="A Slack channel id (C0123ABCD), posted by the bot."
        ),
    ] = None,
    slack_webhook_env: Annotated[
        str | None,
        typer.Option(
            "--slack-webhook-env",
            metavar="NAME",
            help="The environment variable holding a Slack incoming webhook URL.",
        ),
    ] = None,
    discord: Annotated[
        str | None,
        typer.Option("--discord", metavar="CHANNEL_ID", help="A Discord channel id, posted by the bot."),
    ] = None,
    discord_webhook_env: Annotated[
        str | None,
        typer.Option(
            "--discord-webhook-env",
            metavar="NAME",
            help="The environment variable holding a Discord webhook URL.",
        ),
    ] = None,
    discord_user: Annotated[
        str | None,
        typer.Option("--discord-user", metavar="USER_ID", help="A Discord user id: the digest as a DM."),
    ] = None,
    name: Annotated[str, typer.Option(help="How the digest greets them.")] = "",
    topics: Annotated[
        str | None, typer.Option(help="Comma-separated topic slugs, optionally weighted: python:2,ai.")
    ] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. Europe/Berlin.")] = "UTC",
    time: Annotated[str, typer.Option("--time", help="Local delivery time, HH:MM.")] = "07:00",
    frequency: Annotated[str, typer.Option(help="daily, weekdays or weekly:mon … weekly:sun.")] = "daily",
    max_items: Annotated[int, typer.Option("--max", help="Stories in one digest, 1 … 50.")] = 10,
    json: Annotated[bool, typer.Option("--json", help="Print the new subscriber as JSON.")] = False,
) -> None:
    """Add an active subscriber (no confirmation email: you vouch for them): an email address,
    a Slack channel, or a Discord channel, webhook or user (a channel without --topics gets a
    default set).

    Example: flarestart subscribers add ada@example.com --name Ada --topics python,ai --timezone Europe/Berlin

    Example: flarestart subscribers add --slack C0123ABCD --name "Platform team" --time 09:00

    Example: flarestart subscribers add --discord 112233445566778899 --name Community
    """
    from bot.app import Destination

    given = [
        v
        for v in (email, slack, slack_webhook_env, discord, discord_webhook_env, discord_user)
        if v is not None
    ]
    if len(given) != 1:
        raise ConfigError(
            "give exactly one destination: an EMAIL, --slack CHANNEL_ID, --slack-webhook-env NAME, "
            "--discord CHANNEL_ID, --discord-webhook-env NAME or --discord-user USER_ID"
        )
    if discord is not None:
        destination = Destination("discord", discord)
    elif discord_webhook_env is not None:
        destination = Destination("discord", "webhook_env:" + discord_webhook_env)
    elif discord_user is not None:
        destination = Destination("discord", "user:" + discord_user)
    elif slack is not None:
        destination = Destination("slack", slack)
    elif slack_webhook_env is not None:
        destination = Destination("slack", "webhook_env:" + slack_webhook_env)
    else:
        destination = Destination.email(email or "")
    with open_app(seed=False) as flarestart:
        added = flarestart.subscribe(
            destination,
            name=name,
            timezone=timezone,
            delivery_time=time,
            frequency=frequency,
            topics=_parse_topics(topics),
            max_items=max_items,
            origin="cli",
        )
        now = flarestart.now()
    subscriber, upcoming = added.subscriber, added.next_delivery
    if json:
        print_json(_subscriber_dict(subscriber, upcoming))
        return
    if subscriber.status in ("unsubscribed", "bouncing"):
        err_console.print(
            f"[yellow]Added {subscriber.email} as {subscriber.status}:[/] the address is suppressed, so no "
            "digest goes to it until they subscribe again from an unsubscribe link "
            "(see `flarestart subscribers suppressions list`).",
            highlight=False,
            soft_wrap=True,
        )
        return
    first = describe_next(upcoming, subscriber.timezone, now)
    default = " (the default topics for a channel: --topics chooses others)" if added.default_topics else ""
    console.print(
        f"[green]Added[/] {escape(added.label)}: {subscriber.frequency} at {subscriber.delivery_time} "
        f"{subscriber.timezone}; topics {_topics_text(subscriber.topics) or 'all'}{default}; "
        f"first digest {first}.",
        highlight=False,
        soft_wrap=True,
    )


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help="Only this status: active, paused, pending, bouncing, unsubscribed.")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List subscribers with their status, schedule, topics and next delivery.

    Example: flarestart subscribers list --json | jq '.[] | select(.status == "bouncing") | .destination'
    """
    from rich.table import Table

    if status is not None and status not in STATUS_STYLE:
        raise ConfigError(f"--status {status!r}: expected one of {', '.join(STATUS_STYLE)}")
    with open_app(seed=False) as flarestart:
        views = flarestart.list_subscribers(status)
        now = flarestart.now()
    subscribers = [v.subscriber for v in views]
    upcoming = {v.subscriber.id or 0: v.next_delivery for v in views if v.next_delivery is not None}
    if json:
        print_json([_subscriber_dict(s, upcoming.get(s.id or 0)) for s in subscribers])
        return
    if not subscribers:
        console.print(
            "No subscribers yet. Add one: [bold]flarestart subscribers add EMAIL[/], "
            "or describe them in TOML files and run [bold]flarestart subscribers sync[/]."
        )
        return
    table = Table(title=f"{len(subscribers)} subscribers", title_justify="left")
    for column in (
        "destination",
        "name",
        "status",
        "time zone",
        "time",
        "frequency",
        "topics",
        "next delivery",
    ):
        table.add_column(column, overflow="fold")
    for s in subscribers:
        style = STATUS_STYLE.get(s.status, "")
        table.add_row(
            escape(_label(s)),
            s.name,
            f"[{style}]{s.status}[/]",
            s.timezone,
            s.delivery_time,
            s.frequency,
            _topics_text(s.topics) or "all",
            describe_next(upcoming.get(s.id or 0), s.timezone, now),
        )
    console.print(table)


@app.command("show")
def show(
    subscriber: Annotated[str, typer.Argument(help="Email, id, or slack:CHANNEL_ID.")],
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show everything about one subscriber, and when their next digest goes out.

    Example: flarestart subscribers show ada@example.com

    Example: flarestart subscribers show slack:C0123ABCD
    """
    from rich.table import Table

    with open_app(seed=False) as flarestart:
        view = flarestart.subscriber(subscriber)
        now = flarestart.now()
    found, upcoming = view.subscriber, view.next_delivery
    if json:
        print_json(_subscriber_dict(found, upcoming))
        return
    mutes = (
        ("muted topics", ", ".join(found.muted_topics)),
        ("muted keywords", ", ".join(found.muted_keywords)),
        ("muted sources", ", ".join(found.muted_sources)),
    )
    reason = f" ({escape(found.status_reason)})" if found.status_reason else ""
    default = " (the default for a channel)" if view.default_topics else ""
    rows: list[tuple[str, str]] = [
        ("destination", escape(view.label)),
        ("ref", escape(view.ref)),
        ("name", escape(found.name) or "-"),
        ("status", f"[{STATUS_STYLE.get(found.status, '')}]{found.status}[/]{reason}"),
        ("schedule", f"{found.frequency} at {found.delivery_time} {found.timezone}"),
        ("next delivery", describe_next(upcoming, found.timezone, now)),
        ("topics", (_topics_text(found.topics) or "all") + default),
        *((label, value or "-") for label, value in mutes),
        ("source weights", _topics_text(found.source_weights) or "-"),
        ("max items", str(found.max_items)),
        ("origin", found.origin),
        ("bounces in a row", str(found.consecutive_bounces)),
        ("created", found.created_at.isoformat(timespec="seconds")),
        ("confirmed", found.confirmed_at.isoformat(timespec="seconds") if found.confirmed_at else "-"),
        (
            "unsubscribed",
            found.unsubscribed_at.isoformat(timespec="seconds") if found.unsubscribed_at else "-",
        ),
    ]
    table = Table(title=f"Subscriber #{found.id}", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)


@app.command("pause")
def pause(subscriber: Annotated[str, typer.Argument(help="Email, id, or slack:CHANNEL_ID.")]) -> None:
    """Stop sending digests until `resume`.

    Example: flarestart subscribers pause ada@example.com
    """
    with open_app(seed=False) as flarestart:
        change = flarestart.pause(subscriber)
    found = change.subscriber
    if not change.changed:
        console.print(f"{escape(_label(found))} is already paused.", highlight=False, soft_wrap=True)
        return
    console.print(
        f"Paused {escape(_label(found))}; `flarestart subscribers resume` starts them again.",
        highlight=False,
    )


@app.command("resume")
def resume(subscriber: Annotated[str, typer.Argument(help="Email, id, or slack:CHANNEL_ID.")]) -> None:
    """Send digests again (also clears a bouncing state).

    Example: flarestart subscribers resume ada@example.com
    """
    with open_app(seed=False) as flarestart:
        change = flarestart.resume(subscriber)
    found = change.subscriber
    if not change.changed:
        console.print(f"{escape(_label(found))} is already active.", highlight=False, soft_wrap=True)
        return
    console.print(f"Resumed {escape(_label(found))} (was {change.was}).", highlight=False, soft_wrap=True)


@app.command("remove")
def remove(subscriber: Annotated[str, typer.Argument(help="Email, id, or slack:CHANNEL_ID.")]) -> None:
    """Delete a subscriber and their delivery history.

    Example: flarestart subscribers remove ada@example.com
    """
    with open_app(seed=False) as flarestart:
        found = flarestart.remove_subscriber(subscriber)
    console.print(f"Removed {escape(_label(found))}.", highlight=False, soft_wrap=True)
    if found.origin.startswith("file:"):
        err_console.print(
            f"[yellow]note:[/] {escape(_label(found))} comes from {found.origin.removeprefix('file:')}; "
            "delete them there too, or the next sync adds them back.",
            highlight=False,
            soft_wrap=True,
        )
