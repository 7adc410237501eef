"""`flarestart sources …`: add (with autodiscovery), list, remove, enable, disable, import, export."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from bot.cli.common import ago, console, err_console, open_store, print_json, state
from bot.errors import OPMLError, SourceError

if TYPE_CHECKING:
    from bot.sources.types import ParsedFeed
    from bot.store import Store
    from bot.store.models import Source

app = typer.Typer(help="Manage the feeds FlareStart reads.", no_args_is_help=True)
NAME_WIDTH_MAX = 24  # `sources list` cuts longer names with an ellipsis


def _split_topics(topics: str | None) -> tuple[str, ...]:
    return tuple(t.strip().lower() for t in (topics or "").split(",") if t.strip())


async def _discover(url: str) -> tuple[str, ParsedFeed]:
    from bot.sources.discover import discover_feed
    from bot.sources.fetch import Fetcher
    from bot.sources.parse import parse_feed

    settings = state.get_settings()
    async with Fetcher(settings.fetch, allow_private=settings.allow_private_urls) as fetcher:
        return await discover_feed(
            url,
            fetch=lambda u: fetcher.fetch(u, trusted=True),
            parse=lambda body, u, kind: parse_feed(body, url=u, content_type=kind),
        )


def _refuse_known_url(store: Store, url: str) -> None:
    from bot.store import DuplicateSourceError

    for source in store.list_sources():
        if source.url == url:
            raise DuplicateSourceError(f"{url} is already a source, named {source.name!r}")


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
    import asyncio

    from bot.sources.netguard import check_url
    from bot.store import NewSource

    url = check_url(url)
    with open_store() as store:
        _refuse_known_url(store, url)
        with console.status(f"Looking for a feed at {url} …"):
            feed_url, feed = asyncio.run(_discover(url))
        if feed_url != url:
            _refuse_known_url(store, feed_url)
        display = name or feed.title or urlsplit(feed_url).hostname or feed_url
        source = store.add_source(
            NewSource(
                display,
                feed_url,
                site_url=feed.site_url,
                title=feed.title,
                topics=_split_topics(topics),
                weight=weight,
                category=category,
            )
        )
    found = f" (found from {url})" if feed_url != url else ""
    console.print(
        f"[green]Added[/] {source.name!r}: {feed_url}{found}; "
        f"{len(feed.entries)} entries in the feed now. They are stored on the next fetch."
    )


def _status(source: Source) -> str:
    if not source.enabled:
        return "[red]gone[/]" if source.disabled_reason else "[dim]disabled[/]"
    if source.error_count:
        return f"[yellow]failing ×{source.error_count}[/]"
    return "[green]ok[/]" if source.last_success_at else "[cyan]new[/]"


def _source_dict(source: Source, articles: int) -> dict[str, object]:
    data = source.model_dump()
    data["articles"] = articles
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

    with open_store() as store:
        sources = store.list_sources()
        counts = store.article_counts()
    if json:
        print_json([_source_dict(s, counts.get(s.id or 0, 0)) for s in sources])
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
            str(counts.get(s.id or 0, 0)),
            ago(s.last_fetch_at),
            ago(s.next_fetch_at) if s.enabled else "-",
            (s.disabled_reason or s.last_error or "")[:80],
        )
    console.print(table)


@app.command("remove")
def remove(ref: Annotated[str, typer.Argument(help="Source name, URL or id.")]) -> None:
    """Remove a source and its articles. Example: flarestart sources remove "The Verge" """
    with open_store() as store:
        source = store.remove_source(ref)
    console.print(f"Removed {source.name!r} ({source.url}).")


@app.command("enable")
def enable(ref: Annotated[str, typer.Argument(help="Source name, URL or id.")]) -> None:
    """Enable a source again; it is fetched on the next run. Example: flarestart sources enable Dev.to"""
    with open_store() as store:
        source = store.set_enabled(ref, True)
    console.print(f"Enabled {source.name!r}; it is due now.")


@app.command("disable")
def disable(ref: Annotated[str, typer.Argument(help="Source name, URL or id.")]) -> None:
    """Stop fetching a source (its articles stay). Example: flarestart sources disable TechCrunch"""
    with open_store() as store:
        source = store.set_enabled(ref, False)
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
    from bot.sources.opml import parse_opml
    from bot.store import NewSource

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise OPMLError(f"{file}: cannot read: {exc.strerror}") from None
    feeds, problems = parse_opml(data, origin=str(file))
    if problems:
        for problem in problems:
            err_console.print(f"[yellow]{escape(str(file))}:[/] {escape(str(problem))}", highlight=False)
        if not skip_invalid:
            raise OPMLError(
                f"{file}: {len(problems)} invalid outline(s), nothing imported "
                "(fix them, or pass --skip-invalid to import the valid ones)"
            )
    with open_store() as store:
        known = {s.url for s in store.list_sources()}
        names = {s.name for s in store.list_sources()}
        fresh = [f for f in feeds if f.url not in known]
        to_add = []
        for feed in fresh:
            name = _unique_name(feed.name, names)
            names.add(name)
            to_add.append(
                NewSource(
                    name,
                    feed.url,
                    site_url=feed.site_url,
                    topics=feed.topics,
                    weight=feed.weight,
                    category=feed.category,
                )
            )
        store.add_sources(to_add)
    console.print(
        f"Imported {len(to_add)} source(s) from {file}"
        + (f"; {len(feeds) - len(fresh)} already present" if len(fresh) < len(feeds) else "")
        + (f"; {len(problems)} skipped as invalid" if problems else "")
        + "."
    )


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate


@app.command("export")
def export(
    file: Annotated[Path | None, typer.Argument(help="Write here instead of standard output.")] = None,
) -> None:
    """Export all sources as OPML 2.0, categories as folders.

    Example: flarestart sources export feeds.opml
    """
    from bot.sources.opml import OutlineFeed, export_opml

    with open_store() as store:
        feeds = [
            OutlineFeed(
                url=s.url,
                name=s.name,
                site_url=s.site_url,
                category=s.category,
                topics=tuple(s.topics),
                weight=s.weight,
            )
            for s in store.list_sources()
        ]
    data = export_opml(feeds)
    if file is None:
        typer.echo(data.decode("utf-8"), nl=False)
        return
    try:
        file.write_bytes(data)
    except OSError as exc:
        raise SourceError(f"{file}: cannot write: {exc.strerror}") from None
    err_console.print(f"Exported {len(feeds)} source(s) to {file}.")
