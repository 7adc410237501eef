"""`flarestart sources …`: add (with autodiscovery), list, remove, enable, disable, import, export."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from bot.cli.common import ago, console, err_console, open_app, print_json
from bot.errors import OPMLError, SourceError

if TYPE_CHECKING:
    from bot.app.types import SourceListing

app = typer.Typer(help="Manage the feeds FlareStart reads.", no_args_is_help=True)
NAME_WIDTH_MAX = 24  # `sources list` cuts longer names with an ellipsis


def _split_topics(topics: str | None) -> tuple[str, ...]:
    return tuple(t.strip().lower() for t in (topics or "").split(",") if t.strip())


@app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="A feed URL, or a web page that links to its feed.")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the feed's title).")] = None,
    topics: Annotated[str | None, typer.Option(help="Comma-separated topics, e.g. python,ai.")] = None,
    weight: Annotated[float, typer.Option(min=0.01, help="Ranking weight of this source.")] = 1.0,
    category: Annotated[str | None, typer.Option(help="Folder, kept in OPML exports.")] = None,
) -> None:
    """Add a source. A page URL is searched for its <link rel="alternate"> feed.

    Example: flarestart sources add https://blog.python.org --topics python
    """
    with open_app() as flarestart, console.status(f"Looking for a feed at {url} …"):
        added = flarestart.add_source(
            url, name=name, topics=_split_topics(topics), weight=weight, category=category
        )
    found = f" (found from {added.asked_url})" if added.feed_url != added.asked_url else ""
    console.print(
        f"[green]Added[/] {added.source.name!r}: {added.feed_url}{found}; "
        f"{added.entries} entries in the feed now. They are stored on the next fetch."
    )


def _status(source: SourceListing) -> str:
    if not source.enabled:
        return "[red]gone[/]" if source.disabled_reason else "[dim]disabled[/]"
    if source.error_count:
        return f"[yellow]failing ×{source.error_count}[/]"
    return "[green]ok[/]" if source.last_success_at else "[cyan]new[/]"


def _source_dict(source: SourceListing) -> dict[str, object]:
    data = source.as_dict()
    data["status"] = (
        "disabled"
        if not source.enabled
        else "failing"
        if source.error_count
        else "ok"
        if source.last_success_at
        else "new"
    )
    return data


@app.command("list")
def list_(
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List sources with status, last and next fetch, errors and the last error.

    Example: flarestart sources list --json | jq '.[] | select(.status == "failing")'
    """
    from rich.table import Table

    with open_app() as flarestart:
        sources = flarestart.list_sources()
    if json:
        print_json([_source_dict(s) for s in sources])
        return
    if not sources:
        console.print("No sources yet. Add one: [bold]flarestart sources add URL[/]")
        return
    table = Table(title=f"{len(sources)} sources", title_justify="left")
    # At 80 columns: a name stays on one line, cut with an ellipsis rather than broken inside a
    # word; the other columns wrap at spaces and the last error folds. The error count is the
    # status's ("failing ×3"), so it takes no column of its own.
    table.add_column("name", no_wrap=True, overflow="ellipsis", max_width=NAME_WIDTH_MAX)
    table.add_column("status")
    table.add_column("articles", justify="right")
    table.add_column("last fetch")
    table.add_column("next fetch")
    table.add_column("last error", overflow="fold")
    for s in sources:
        table.add_row(
            s.name,
            _status(s),
            str(s.articles),
            ago(s.last_fetch_at),
            ago(s.next_fetch_at) if s.enabled else "-",
            (s.disabled_reason or s.last_error or "")[:80],
        )
    console.print(table)


@app.command("remove")
def remove(ref: Annotated[str, typer.Argument(help="Source name, URL or id.")]) -> None:
    """Remove a source and its articles. Example: flarestart sources remove "The Verge" """
    with open_app() as flarestart:
        source = flarestart.remove_source(ref)
    console.print(f"Removed {source.name!r} ({source.url}).")


@app.command("enable")
def enable(ref: Annotated[str, typer.Argument(help="Source name, URL or id.")]) -> None:
    """Enable a source again; it is fetched on the next run. Example: flarestart sources enable Dev.to"""
    with open_app() as flarestart:
        source = flarestart.enable_source(ref, True)
    console.print(f"Enabled {source.name!r}; it is due now.")


@app.command("disable")
def disable(ref: Annotated[str, typer.Argument(help="Source name, URL or id.")]) -> None:
    """Stop fetching a source (its articles stay). Example: flarestart sources disable TechCrunch"""
    with open_app() as flarestart:
        source = flarestart.enable_source(ref, False)
    console.print(f"Disabled {source.name!r}.")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="An OPML file (e.g. exported from another reader).")],
    skip_invalid: Annotated[
        bool, typer.Option(help="Import the valid outlines even when some are bad.")
    ] = False,
) -> None:
    """Import sources from OPML, folders kept as categories. All or nothing unless --skip-invalid.

    Example: flarestart sources import subscriptions.opml
    """
    from bot.app.types import OPMLImportRefused

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise OPMLError(f"{file}: cannot read: {exc.strerror}") from None
    with open_app() as flarestart:
        try:
            imported = flarestart.import_sources(data, origin=str(file), skip_invalid=skip_invalid)
        except OPMLImportRefused as exc:
            _print_problems(file, exc.problems)
            raise
    _print_problems(file, imported.problems)
    console.print(
        f"Imported {imported.imported} source(s) from {file}"
        + (f"; {imported.present} already present" if imported.present else "")
        + (f"; {len(imported.problems)} skipped as invalid" if imported.problems else "")
        + "."
    )


def _print_problems(file: Path, problems: tuple[str, ...]) -> None:
    for problem in problems:
        err_console.print(f"[yellow]{escape(str(file))}:[/] {escape(problem)}", highlight=False)


@app.command("export")
def export(
    file: Annotated[Path | None, typer.Argument(help="Write here instead of standard output.")] = None,
) -> None:
    """Export all sources as OPML 2.0, categories as folders.

    Example: flarestart sources export feeds.opml
    """
    with open_app() as flarestart:
        exported = flarestart.export_sources()
    data = exported.opml
    if file is None:
        typer.echo(data.decode("utf-8"), nl=False)
        return
    try:
        file.write_bytes(data)
    except OSError as exc:
        raise SourceError(f"{file}: cannot write: {exc.strerror}") from None
    err_console.print(f"Exported {exported.count} source(s) to {file}.")
