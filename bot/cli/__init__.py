"""The `flarestart` command: one entry point, a sub-command per job, errors in one line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.table import Table

from bot import __version__
from bot.cli import delivery, demo, fetching, ranking, sources, subscribers, web
from bot.cli.common import console, err_console, open_store, print_json, state
from bot.config import describe, load_settings
from bot.errors import FlareStartError
from bot.logs import setup_logging
from bot.store import Store
from bot.store.engine import make_engine
from bot.store.migrate import current_revision, head_revision, upgrade
from bot.store.subscribers import SubscriberStore
from bot.subscribers.files import SubscriberFileError
from bot.subscribers.sync import sync_subscribers

app = typer.Typer(
    name="flarestart",
    help="FlareStart bot: where developers start their day. Gathers tech feeds, ranks them "
    "per subscriber and delivers digests.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(sources.app, name="sources")
app.add_typer(fetching.articles_app, name="articles")
app.command("fetch")(fetching.fetch)
app.command("prune")(fetching.prune)
app.add_typer(ranking.topics_app, name="topics")
app.command("preview")(ranking.preview)
app.command("serve")(web.serve)
app.add_typer(subscribers.app, name="subscribers")
app.command("send")(delivery.send)
app.add_typer(delivery.deliveries_app, name="deliveries")
app.command("demo")(demo.demo)
config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"flarestart {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Settings file (default: ./flarestart.toml)."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Settings come from the environment, then flarestart.toml, then defaults."""
    if config is not None:
        state.settings = load_settings(config_file=config)
        setup_logging(state.settings.log_level, state.settings.log_format)


@app.command()
def run() -> None:
    """Run the service: fetches sources on schedule and sends each subscriber's digest when due,
    until Ctrl-C or SIGTERM. Subscriber files (subscribers_dir) are synced at start.

    Example: FLARESTART_DATA_DIR=./data flarestart run
    """
    from bot.daemon import run_daemon

    settings = state.get_settings()
    with open_store() as store:
        readers = _sync_subscriber_files(store)
        count = len(store.list_sources())
        where = settings.effective_database_url if settings.database_url else settings.database_path
        target = "SMTP" if settings.email.smtp_url else f"the outbox in {settings.outbox_dir}"
        err_console.print(
            f"[bold]FlareStart {__version__}[/] running on {where}: {count} source(s), "
            f"{readers} active subscriber(s), digests to {target}. Ctrl-C stops."
        )
        asyncio.run(run_daemon(store, settings))


def _sync_subscriber_files(store: Store) -> int:
    """Pick up the subscriber files at start; broken files are reported and change nothing."""
    folder = state.get_settings().subscribers_dir
    subscriber_store = SubscriberStore(store.engine)
    if folder.is_dir():
        try:
            specs = subscribers.load_files(folder, store)
        except SubscriberFileError as exc:
            for problem in exc.problems:
                err_console.print(f"[red]{problem}[/]", highlight=False, soft_wrap=True)
            err_console.print(f"[yellow]subscriber files in {folder} not synced; fix them and restart[/]")
        else:
            sync_subscribers(subscriber_store, specs, folder=folder)  # logs what it added, changed, removed
    return len(subscriber_store.active())


@config_app.command("show")
def config_show(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show every setting, its value (secrets masked) and where it came from.

    Example: FLARESTART_FETCH_CONCURRENCY=8 flarestart config show
    """
    rows = describe(state.get_settings())
    if json:
        print_json(
            [
                {
                    "key": k,
                    "value": v if isinstance(v, int | float | bool | None) else str(v),
                    "origin": o,
                }
                for k, v, o in rows
            ]
        )
        return
    table = Table(title="Effective settings", title_justify="left")
    for column in ("key", "value", "from"):
        table.add_column(column, overflow="fold")
    for key, value, origin in rows:
        table.add_row(key, str(value), origin)
    console.print(table)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (also done at every start). Example: flarestart db upgrade"""
    engine = make_engine(state.get_settings().effective_database_url)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    if before == after:
        console.print(f"Database is up to date (revision {after}).")
    else:
        console.print(f"Database upgraded from {before or 'empty'} to {after}.")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and of this code."""
    engine = make_engine(state.get_settings().effective_database_url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    console.print(f"database: {current or 'empty'}; code: {head_revision()}")


def main() -> None:
    """Console-script entry: expected errors become one line and an exit code."""
    try:
        # Outside standalone mode click returns the code of typer.Exit instead of exiting with it.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except FlareStartError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main", "open_store"]
