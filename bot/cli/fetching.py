"""`flarestart fetch`, `articles list` and `prune`: the ingestion engine from the terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli.common import ago, console, feed_text, open_app, parse_duration, print_json, state
from bot.errors import SourceError

if TYPE_CHECKING:
    from bot.app.types import Source, SourceReport

    ProgressHook = Callable[[SourceReport], None]

# Beyond this many sources a row each is a wall to scroll past (and rich takes ~0.5 ms a row):
# the table keeps the sources that need a look, the totals count the rest, --json has them all.
TABLE_ROWS_MAX = 30
STATUS_STYLE = {
    "updated": "green",
    "unchanged": "dim",
    "not_modified": "dim",
    "failed": "red",
    "gone": "red",
}


def freeze_heap_then(on_start: Callable[[list[Source]], None]) -> Callable[[list[Source]], None]:
    """`on_start`, after moving the heap out of the garbage collector's scans when the process is
    the command (`state.one_shot`).

    When ingest starts, everything the command imports and opens is in place and lives until the
    process exits; frozen, it is no longer walked by the collections that ingest's allocations set
    off (0.06-0.15 s of pauses over 200 feeds otherwise). Not in a process that goes on after the
    command (tests, a program calling `main`): frozen garbage would never be collected there.
    """

    def begin(sources: list[Source]) -> None:
        if state.one_shot:
            import gc

            gc.freeze()
            gc.enable()  # paused by `collections_paused` while the command started
        on_start(sources)

    return begin


@contextmanager
def collections_paused() -> Iterator[None]:
    """No garbage collection while the command (`state.one_shot`) imports pydantic, SQLAlchemy
    and httpx and opens the store: what it builds then lives until the process exits, yet the
    ~200 collections those allocations set off walked it for 0.03-0.05 s. Collection resumes as
    ingest starts (`freeze_heap_then`), or on leaving when ingest never starts."""
    import gc

    if not state.one_shot or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextmanager
def fetch_progress(*, disable: bool = False) -> Iterator[tuple[Callable[[list[Source]], None], ProgressHook]]:
    """A progress bar over the sources of one ingest run: the (on_start, on_progress) hooks to pass."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]Fetching"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
        disable=disable,
    )
    task = progress.add_task("", total=None)

    def started(sources: list[Source]) -> None:
        progress.update(task, total=len(sources))

    def advanced(report: SourceReport) -> None:
        progress.update(task, advance=1, description=report.source[:40])

    with progress:
        yield started, advanced


def fetch(
    source: Annotated[
        list[str] | None,
        typer.Option("--source", "-s", help="Only this source (name or URL); repeatable."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Fetch every enabled source, due or not.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the per-source reports as JSON.")] = False,
) -> None:
    """Fetch the sources that are due, then show what each one gave.

    Exits 0 when the run completed, even if some feeds failed (see the table); 1 when every
    source fetched failed.

    Example: flarestart fetch --all
    """
    with (
        collections_paused(),
        open_app() as flarestart,
        fetch_progress(disable=json) as (started, advanced),
    ):
        run = flarestart.fetch(
            refs=source or (), force=all_, on_start=freeze_heap_then(started), on_progress=advanced
        )
    reports, next_due = list(run.reports), run.next_due
    if json:
        print_json([asdict(r) for r in reports])
    elif not reports:
        console.print(f"Nothing is due. Next fetch {ago(next_due)}; `flarestart fetch --all` fetches now.")
    else:
        _print_reports(reports)
    if reports and all(_failed(r) for r in reports):
        # Nothing came in: a script (or cron) must see it. Some failures alone are a normal day.
        raise AllSourcesFailedError(
            f"every source failed ({len(reports)} of {len(reports)}), no article was fetched: "
            "check the network, or the reasons in `flarestart sources list`"
        )


class AllSourcesFailedError(SourceError):
    """`fetch` ran and not one source answered."""


def _failed(report: SourceReport) -> bool:
    return report.status in ("failed", "gone")


def _needs_a_look(report: SourceReport) -> bool:
    return _failed(report) or bool(report.moved_to or report.warning)


def _print_reports(reports: list[SourceReport]) -> None:
    from rich.table import Table

    shown = reports
    title = "Fetch summary"
    if len(reports) > TABLE_ROWS_MAX:
        shown = [r for r in reports if _needs_a_look(r)]
        title = f"Fetch summary: the {len(shown)} of {len(reports)} sources that need a look"
    table = Table(title=title, title_justify="left")
    for column in ("source", "result", "new", "updated", "unchanged", "time", "reason"):
        table.add_column(
            column,
            overflow="fold",
            justify="right" if column in ("new", "updated", "unchanged", "time") else "left",
        )
    order = {"failed": 0, "gone": 1, "updated": 2, "unchanged": 3, "not_modified": 4}
    for r in sorted(shown, key=lambda r: (order[r.status], r.source.lower())):
        result = "304" if r.status == "not_modified" else r.status
        reason = r.error or (f"moved to {r.moved_to}" if r.moved_to else "") or (r.warning or "")
        table.add_row(  # names and reasons quote feeds and URLs: Text, not markup
            feed_text(r.source),
            f"[{STATUS_STYLE[r.status]}]{result}[/]",
            str(r.new),
            str(r.updated),
            str(r.unchanged),
            f"{r.elapsed:.2f}s",
            feed_text(reason[:100]),
        )
    if shown:
        console.print(table)
    failed = sum(_failed(r) for r in reports)
    console.print(
        f"{len(reports)} sources: {sum(r.new for r in reports)} new articles, "
        f"{sum(r.updated for r in reports)} updated, "
        f"{sum(r.status == 'not_modified' for r in reports)} not modified, "
        + (f"[red]{failed} failed[/]" if failed else "0 failed")
    )
    if len(shown) < len(reports):
        console.print(
            f"{len(reports) - len(shown)} sources fetched without a problem are not listed; "
            "`flarestart fetch --json` reports each one, `flarestart sources list` shows them all."
        )


articles_app = typer.Typer(help="Look at the stored articles.", no_args_is_help=True)


@articles_app.command("list")
def articles_list(
    source: Annotated[str | None, typer.Option("--source", "-s", help="Only this source.")] = None,
    since: Annotated[str | None, typer.Option(help="Only newer than this, e.g. 24h or 7d.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show stored articles, newest first. Example: flarestart articles list --since 24h --source Dev.to"""
    from rich.table import Table

    age = parse_duration(since, option="--since") if since else None
    with open_app() as flarestart:
        stored = flarestart.list_articles(source=source, since=age, limit=limit)
    rows = [(row.article, row.source) for row in stored]
    if json:
        print_json(
            [{**article.model_dump(exclude={"content_hash"}), "source": name} for article, name in rows]
        )
        return
    table = Table(title=f"{len(rows)} articles", title_justify="left")
    for column in ("published", "source", "title", "tags"):
        table.add_column(column, overflow="fold")
    for article, name in rows:
        table.add_row(  # what feeds wrote is Text: a "[" in a title is not markup
            ago(article.published_at),
            feed_text(name),
            feed_text(article.title, link=article.url),
            feed_text(", ".join(article.tags[:4])),
        )
    console.print(table)


def prune(
    older_than: Annotated[
        str | None, typer.Option(help="Age limit, e.g. 30d (default: prune_after_days setting).")
    ] = None,
) -> None:
    """Delete articles published before the age limit. Example: flarestart prune --older-than 30d"""
    age = parse_duration(older_than, option="--older-than") if older_than else None
    with open_app() as flarestart:
        removed, cutoff = flarestart.prune(older_than=age)
    console.print(f"Removed {removed} article(s) published before {cutoff:%Y-%m-%d %H:%M} UTC.")
