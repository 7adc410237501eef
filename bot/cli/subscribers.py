"""`flarestart subscribers …`: sync from TOML files, add, list, show, pause, resume, remove."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape

from bot.cli.common import ago, console, err_console, open_store, print_json, state
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.store import Store
    from bot.store.models import Subscriber
    from bot.subscribers.files import SubscriberSpec
    from bot.subscribers.schedule import NextDelivery
    from bot.subscribers.sync import SyncReport

app = typer.Typer(help="Manage who receives digests, and when.", no_args_is_help=True)

STATUS_STYLE = {
    "active": "green",
    "paused": "yellow",
    "pending": "cyan",
    "bouncing": "red",
    "unsubscribed": "dim",
}


def _topic_validator() -> Callable[[Iterable[str]], None] | None:
    """The taxonomy's check for topic slugs (raises ConfigError naming unknown ones and the closest)."""
    from bot.ranking.setup import taxonomy_for

    taxonomy = taxonomy_for(state.get_settings())

    def validate(slugs: Iterable[str]) -> None:
        taxonomy.resolve(slugs)

    return validate


def load_files(folder: Path, store: Store) -> list[SubscriberSpec]:
    """The subscriber files of `folder`, checked against the taxonomy and the store's sources
    (raises SubscriberFileError naming file and line)."""
    from bot.sources.defaults import source_names
    from bot.subscribers.files import load_subscriber_files

    known = source_names(store, state.get_settings())
    return load_subscriber_files(folder, validate_topics=_topic_validator(), known_sources=known)


class _Scheduled(Protocol):
    @property
    def id(self) -> int | None: ...
    @property
    def status(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def delivery_time(self) -> str: ...
    @property
    def frequency(self) -> str: ...


def upcoming_deliveries(
    store: Store, subscribers: Sequence[_Scheduled], now: datetime
) -> dict[int, NextDelivery]:
    """Each active subscriber's next digest as `flarestart run` will send it: `next_delivery`
    (catch-up included), with the periods the ledger has settled already left out."""
    from bot.delivery.ledger import DeliveryLedger
    from bot.delivery.service import channel_name, send_job_key
    from bot.jobs.queue import JobQueue
    from bot.subscribers.schedule import next_delivery, parse_delivery_time

    settings = state.get_settings()
    catch_up = timedelta(hours=settings.delivery.catch_up_hours)
    active = [s for s in subscribers if s.status == "active" and s.id is not None]

    def next_for(s: _Scheduled, settled: Container[str] = ()) -> NextDelivery:
        return next_delivery(
            now=now,
            timezone=s.timezone,
            delivery_time=parse_delivery_time(s.delivery_time),
            frequency=s.frequency,
            catch_up=catch_up,
            settled=settled,
        )

    first = {s.id: next_for(s) for s in active if s.id is not None}
    due = [(sid, found.period) for sid, found in first.items() if found.due_now]
    channel = channel_name(settings)
    closed = DeliveryLedger(store.engine).closed(due, channel)
    queue = JobQueue(store.engine)
    # Sent and failed rows are final. A skipped one (a quiet period) is tried again by `run` only
    # while no send job of the period has run yet (one made by `send --now`, for instance).
    done = {
        key
        for key, status in closed.items()
        if status != "skipped" or queue.status_of(send_job_key(*key, channel)) not in (None, "queued")
    }
    return {
        s.id: next_for(s, {first[s.id].period}) if (s.id, first[s.id].period) in done else first[s.id]
        for s in active
        if s.id is not None
    }


def describe_next(found: NextDelivery | None, timezone: str, now: datetime) -> str:
    """The next digest in words, the same in every message."""
    if found is None:
        return "-"
    when = _local(found.scheduled_at, timezone)
    if found.due_now:
        return f"{when} (due now: `flarestart run` sends it within a minute)"
    return f"{when} ({ago(found.scheduled_at, now)})"


def _local(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo(timezone)).strftime("%a %Y-%m-%d %H:%M %Z")


def _topics_text(topics: dict[str, float]) -> str:
    return ", ".join(slug if weight == 1.0 else f"{slug}:{weight:g}" for slug, weight in topics.items())


def _subscriber_dict(subscriber: Subscriber, upcoming: NextDelivery | None) -> dict[str, Any]:
    data = subscriber.model_dump()
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
    from bot.store.subscribers import SubscriberStore
    from bot.subscribers.files import SubscriberFileError
    from bot.subscribers.sync import sync_subscribers

    where = folder if folder is not None else state.get_settings().subscribers_dir
    with open_store(seed=False) as store:
        try:
            specs = load_files(where, store)
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
        report = sync_subscribers(SubscriberStore(store.engine), specs, folder=where, dry_run=dry_run)
        now = datetime.now(UTC)
        added = set(report.added)
        rows = [s for s in SubscriberStore(store.engine).list() if s.email in added]
        upcoming = upcoming_deliveries(store, rows, now)
        first = {s.email: describe_next(upcoming.get(s.id or 0), s.timezone, now) for s in rows}
    if json:
        print_json(report.as_dict())
        return
    _print_report(report, where, first)


def _print_report(report: SyncReport, folder: Path, first: dict[str | None, str]) -> None:
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
    email: Annotated[str, typer.Argument(help="The subscriber's email address.")],
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
    """Add an active subscriber (no confirmation email: you vouch for them).

    Example: flarestart subscribers add ada@example.com --name Ada --topics python,ai --timezone Europe/Berlin
    """
    from bot.store.subscribers import SubscriberStore
    from bot.subscribers.files import make_spec

    spec = make_spec(
        email=email,
        name=name,
        timezone=timezone,
        delivery_time=time,
        frequency=frequency,
        topics=_parse_topics(topics),
        max_items=max_items,
        origin="cli",
        validate_topics=_topic_validator(),
    )
    now = datetime.now(UTC)
    with open_store(seed=False) as store:
        subscriber = SubscriberStore(store.engine).add(spec, status="active", now=now)
        upcoming = upcoming_deliveries(store, [subscriber], now).get(subscriber.id or 0)
    if json:
        print_json(_subscriber_dict(subscriber, upcoming))
        return
    first = describe_next(upcoming, subscriber.timezone, now)
    console.print(
        f"[green]Added[/] {subscriber.email}: {subscriber.frequency} at {subscriber.delivery_time} "
        f"{subscriber.timezone}; first digest {first}.",
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

    Example: flarestart subscribers list --json | jq '.[] | select(.status == "bouncing") | .email'
    """
    from rich.table import Table

    from bot.store.subscribers import SubscriberStore

    if status is not None and status not in STATUS_STYLE:
        raise ConfigError(f"--status {status!r}: expected one of {', '.join(STATUS_STYLE)}")
    now = datetime.now(UTC)
    with open_store(seed=False) as store:
        subscribers = SubscriberStore(store.engine).list(status)
        upcoming = upcoming_deliveries(store, subscribers, now)
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
    for column in ("email", "name", "status", "time zone", "time", "frequency", "topics", "next delivery"):
        table.add_column(column, overflow="fold")
    for s in subscribers:
        style = STATUS_STYLE.get(s.status, "")
        table.add_row(
            s.email or f"#{s.id}",
            s.name,
            f"[{style}]{s.status}[/]",
            s.timezone,
            s.delivery_time,
            s.frequency,
            _topics_text(s.topics) or "-",
            describe_next(upcoming.get(s.id or 0), s.timezone, now),
        )
    console.print(table)


@app.command("show")
def show(
    subscriber: Annotated[str, typer.Argument(help="Email or id.")],
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show everything about one subscriber, and when their next digest goes out.

    Example: flarestart subscribers show ada@example.com
    """
    from rich.table import Table

    from bot.store.subscribers import SubscriberStore

    now = datetime.now(UTC)
    with open_store(seed=False) as store:
        found = SubscriberStore(store.engine).get(subscriber)
        upcoming = upcoming_deliveries(store, [found], now).get(found.id or 0)
    if json:
        print_json(_subscriber_dict(found, upcoming))
        return
    mutes = (
        ("muted topics", ", ".join(found.muted_topics)),
        ("muted keywords", ", ".join(found.muted_keywords)),
        ("muted sources", ", ".join(found.muted_sources)),
    )
    rows: list[tuple[str, str]] = [
        ("email", found.email or "-"),
        ("name", found.name or "-"),
        ("status", f"[{STATUS_STYLE.get(found.status, '')}]{found.status}[/]"),
        ("schedule", f"{found.frequency} at {found.delivery_time} {found.timezone}"),
        ("next delivery", describe_next(upcoming, found.timezone, now)),
        ("topics", _topics_text(found.topics) or "-"),
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
def pause(subscriber: Annotated[str, typer.Argument(help="Email or id.")]) -> None:
    """Stop sending digests until `resume`.

    Example: flarestart subscribers pause ada@example.com
    """
    from bot.store.subscribers import SubscriberError, SubscriberStore

    with open_store(seed=False) as store:
        subscribers = SubscriberStore(store.engine)
        found = subscribers.get(subscriber)
        if found.status == "paused":
            console.print(f"{found.email} is already paused.", highlight=False, soft_wrap=True)
            return
        if found.status == "unsubscribed":
            raise SubscriberError(f"{found.email} has unsubscribed; there is nothing to pause")
        assert found.id is not None
        subscribers.set_status(found.id, "paused", now=datetime.now(UTC))
    console.print(
        f"Paused {found.email}; `flarestart subscribers resume` starts them again.", highlight=False
    )


@app.command("resume")
def resume(subscriber: Annotated[str, typer.Argument(help="Email or id.")]) -> None:
    """Send digests again (also clears a bouncing state).

    Example: flarestart subscribers resume ada@example.com
    """
    from bot.store.subscribers import SubscriberError, SubscriberStore

    with open_store(seed=False) as store:
        subscribers = SubscriberStore(store.engine)
        found = subscribers.get(subscriber)
        if found.status == "active":
            console.print(f"{found.email} is already active.", highlight=False, soft_wrap=True)
            return
        if found.status == "unsubscribed":
            raise SubscriberError(f"{found.email} unsubscribed themselves; only they can subscribe again")
        assert found.id is not None
        was = found.status
        subscribers.set_status(found.id, "active", now=datetime.now(UTC))
    console.print(f"Resumed {found.email} (was {was}).", highlight=False, soft_wrap=True)


@app.command("remove")
def remove(subscriber: Annotated[str, typer.Argument(help="Email or id.")]) -> None:
    """Delete a subscriber and their delivery history.

    Example: flarestart subscribers remove ada@example.com
    """
    from bot.store.subscribers import SubscriberStore

    with open_store(seed=False) as store:
        found = SubscriberStore(store.engine).remove(subscriber)
    console.print(f"Removed {found.email or f'#{found.id}'}.", highlight=False, soft_wrap=True)
    if found.origin.startswith("file:"):
        err_console.print(
            f"[yellow]note:[/] {found.email} comes from {found.origin.removeprefix('file:')}; "
            "delete them there too, or the next sync adds them back.",
            highlight=False,
            soft_wrap=True,
        )
