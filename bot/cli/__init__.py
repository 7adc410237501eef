"""The `flarestart` command: one entry point, a sub-command per job, errors in one line."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.main import get_command_name

from bot import __version__
from bot.cli import delivery, demo, discord, fetching, ranking, slack, sources, subscribers, web
from bot.cli.common import console, err_console, open_app, print_json, state
from bot.cli.usage import exit_code_for
from bot.errors import FlareStartError

# Every import here is paid by `flarestart --version`: the commands import what they use.

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
app.command("slack")(slack.slack)
app.command("discord")(discord.discord)
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
        from bot.config import load_settings

        state.use(load_settings(config_file=config))


@app.command()
def run() -> None:
    """Run the service: fetches sources on schedule and sends each subscriber's digest when due,
    until Ctrl-C or SIGTERM. Subscriber files (subscribers_dir) are synced at start.

    Example: FLARESTART_DATA_DIR=./data flarestart run
    """
    settings = state.get_settings()
    with open_app() as flarestart:
        problems = flarestart.sync_subscriber_files_at_start()
        for problem in problems:
            err_console.print(f"[red]{escape(problem)}[/]", highlight=False, soft_wrap=True)
        if problems:
            err_console.print(
                f"[yellow]subscriber files in {escape(str(settings.subscribers_dir))} not synced; "
                "fix them and restart[/]",
                highlight=False,
            )
        readers = flarestart.active_subscriber_count()
        count = flarestart.source_count()
        where = settings.effective_database_url if settings.database_url else settings.database_path
        target = "SMTP" if settings.email.smtp_url else f"the outbox in {settings.outbox_dir}"
        err_console.print(
            f"[bold]FlareStart {__version__}[/] running on {where}: {count} source(s), "
            f"{readers} active subscriber(s), digests to {target}. Ctrl-C stops."
        )
        if not readers:
            err_console.print(
                f"[yellow]No active subscribers, so no digest goes out.[/] Add one: "
                f"`flarestart subscribers add you@example.com --topics python`, or a TOML file in "
                f"{settings.subscribers_dir} (see subscribers/example.toml).",
                highlight=False,
                soft_wrap=True,
            )
        flarestart.run()


@config_app.command("show")
def config_show(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show every setting, its value (secrets masked) and where it came from.

    Example: FLARESTART_FETCH_CONCURRENCY=8 flarestart config show
    """
    from rich.table import Table

    from bot.app import FlareStart

    rows = FlareStart(state.get_settings()).describe_config()
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
    from bot.app import FlareStart

    before, after = FlareStart(state.get_settings()).upgrade_database()
    if before == after:
        console.print(f"Database is up to date (revision {after}).")
    else:
        console.print(f"Database upgraded from {before or 'empty'} to {after}.")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and of this code."""
    from bot.app import FlareStart

    current, head = FlareStart(state.get_settings()).database_revision()
    console.print(f"database: {current or 'empty'}; code: {head}")


def app_for(args: list[str]) -> typer.Typer:
    """`app` holding only the command or group that `args` name first, beside the root's options.

    typer builds the click command of every registered command, its parameters read from the
    function's signature, on every start: ~20 ms for all of ours, where the one that runs needs
    ~1 ms. Parsing, help and errors are those of the whole app for that command. Options first
    (`--config x.toml fetch`) get the whole app; the root's help, `--version` and a mistyped
    command get its outline, which answers them the same way.
    """
    if os.environ.get("_FLARESTART_COMPLETE"):  # shell completion: the words come in the environment
        return app
    if not args or set(args) <= {"-h", "--help", "--version"}:
        return _outline()
    if args[0].startswith("-"):
        return app
    commands = [
        c
        for c in app.registered_commands
        if c.callback is not None and (c.name or get_command_name(c.callback.__name__)) == args[0]
    ]
    groups = [g for g in app.registered_groups if g.name == args[0]]
    if not commands and not groups:
        return _outline()
    one = copy.copy(app)
    one.registered_commands, one.registered_groups = commands, groups
    return one


def _outline() -> typer.Typer:
    """`app` with its groups' commands left out: the root's help lists a group by its name and
    help line only, and a mistyped command needs only names. Building every group's commands
    (~60, each read from its signature) was a third of `flarestart --help`'s time."""
    outline = copy.copy(app)
    outline.registered_groups = []
    for group in app.registered_groups:
        shell = copy.copy(group)
        if group.typer_instance is not None:
            empty = copy.copy(group.typer_instance)
            empty.registered_commands, empty.registered_groups = [], []
            shell.typer_instance = empty
        outline.registered_groups.append(shell)
    return outline


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: expected errors become one line and an exit code; anything else is a
    bug and keeps its traceback."""
    try:
        # Outside standalone mode the parser returns the code of typer.Exit instead of exiting.
        chosen = app_for(sys.argv[1:] if argv is None else argv)
        code: Any = chosen(args=argv, prog_name="flarestart", standalone_mode=False)
    except FlareStartError as exc:
        # escaped: messages quote user input and TOML headers such as [fetch], not rich markup
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        cli_code = exit_code_for(exc)
        if cli_code is None:
            raise
        sys.exit(cli_code)
    if isinstance(code, int) and code:
        sys.exit(code)


def entry() -> None:
    """The `flarestart` script and `python -m bot`: `main`, then an exit that skips tearing the
    interpreter down. Every command has closed what it opened (stores, pools, servers) by the time
    it returns, so the teardown only frees memory the process gives back anyway: 0.2 s for
    `sources list` and 0.6 s for `fetch --all` over 200 feeds, paid by every command. A bug's
    traceback takes the ordinary path. Tests call `main`, which never exits the process this way.
    """
    import logging
    import os

    code = 0
    state.one_shot = True
    try:
        main()
    except SystemExit as exc:
        if isinstance(exc.code, str):  # sys.exit("message"), as Python prints it
            sys.stderr.write(exc.code + "\n")
            code = 1
        else:
            code = int(exc.code or 0)
    logging.shutdown()  # flushes the log handlers
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # `flarestart … | head`: the reader left; nothing more to say
        pass
    os._exit(code)


__all__ = ["app", "entry", "main", "open_app"]
