"""`flarestart demo`: the whole pipeline, offline, in one command.

Feeds FlareStart writes itself are served on loopback, added as sources and fetched by the real
ingestor; sample readers get their digests composed, rendered and sent by the real DigestService
through the real SMTP channel, to an SMTP server on loopback that files them into a Maildir.
Everything it starts is stopped before it returns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from bot.cli.common import console, state
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.app import FlareStart
    from bot.app.types import SendResult, SourceReport, Subscriber
    from bot.config import Settings
    from bot.demo import Preview

__all__ = ["demo"]

INBOX = "inbox"  # DIR/inbox/mail is the Maildir, DIR/inbox/*.html the previews
SLACK_CHANNEL = "C0DEMOTEAM"  # the demo team's channel in the local fake Slack
SLACK_TOKEN = "xoxb-flarestart-demo"
# len(bot.demo.SAMPLE_SUBSCRIBERS), which `--help` must not import (tests/cli/test_demo_cli.py checks).
SAMPLE_READERS = 5
QUIET_LOGGERS = ("bot", "mail.log")  # FlareStart's own INFO lines and aiosmtpd's per-connection chatter


@dataclass(frozen=True, slots=True)
class _Sent:
    subscriber: Subscriber
    result: SendResult
    preview: Preview | None  # None when nothing was sent (a quiet day)


def demo(
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            metavar="DIR",
            help="Build the demo in DIR (new or empty) instead of a fresh temporary folder.",
        ),
    ] = None,
    subscribers: Annotated[
        int,
        typer.Option(
            "--subscribers",
            min=1,
            max=SAMPLE_READERS,
            help=f"How many sample readers get a digest (1 … {SAMPLE_READERS}).",
        ),
    ] = 3,
) -> None:
    """See FlareStart work end to end, offline: feeds → fetch → rank → render → SMTP → inbox, and
    a team's Slack channel.

    Serves six feeds FlareStart writes itself (RSS, Atom, JSON Feed) on loopback, adds and fetches
    them, adds sample readers, starts a local SMTP server that files mail into a Maildir, sends each
    reader's digest now, posts a team digest to a local fake Slack (channel C0DEMOTEAM, saved as
    inbox/slack-C0DEMOTEAM.json), and tells you where to look. Your own database and settings for sources,
    SMTP and storage are not touched: the demo keeps its own data folder.

    Example: flarestart demo --keep ./flarestart-demo
    """
    import asyncio

    from bot.app import FlareStart
    from bot.demo import add_sample_subscribers, serve_demo_feeds
    from bot.testing.httpserver import FixtureServer

    started = time.monotonic()
    folder = _demo_folder(keep)
    base = state.get_settings()
    settings = base.model_copy(
        update={
            "data_dir": folder,
            "database_url": None,
            "allow_private_urls": True,  # the demo's feeds live on 127.0.0.1
            "sources": [],
            "email": base.email.model_copy(update={"smtp_url": None}),
        }
    )
    console.print(f"[bold]FlareStart demo[/] in {escape(str(folder))}", highlight=False, soft_wrap=True)
    with _library_logs_quiet(), FixtureServer() as feeds:
        app = FlareStart(settings, seed=False)
        try:
            app.mark_seeded()  # later commands in this folder must not add real feeds
            sources = app.add_sources(serve_demo_feeds(feeds, app.now()))
            console.print(
                f"[green]✓[/] Serving {len(sources)} feeds FlareStart wrote itself (RSS, Atom, JSON Feed) "
                f"at {feeds.base_url}",
                highlight=False,
            )
            reports = _fetch(app)
            _print_fetch(reports)
            # The sample readers' topics must exist, or the demo says which.
            readers = add_sample_subscribers(
                app.subscribers, subscribers, validate_topics=app.validate_topics
            )
            console.print(
                f"[green]✓[/] Added {len(readers)} sample subscribers: "
                + ", ".join(f"{r.name} ({r.timezone})" for r in readers),
                highlight=False,
            )
            sent = asyncio.run(_send_digests(app, folder / INBOX, readers))
            team = _post_slack_digest(app, folder / INBOX)
        finally:
            app.close()
    _print_summary(folder, sent, keep is None, base, time.monotonic() - started, team)


def _demo_folder(keep: Path | None) -> Path:
    import tempfile

    if keep is None:
        return Path(tempfile.mkdtemp(prefix="flarestart-demo-")).resolve()
    folder = keep.expanduser().resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(
            f"--keep {keep}: {folder} is not an empty folder; give a new or empty one "
            "(the demo builds its own database there)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--keep {keep}: cannot create {folder}: {exc.strerror}") from None
    return folder


@contextmanager
def _library_logs_quiet() -> Iterator[None]:
    """The demo narrates what happens; INFO log lines would only interleave with it (DEBUG stays)."""
    import logging

    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() == logging.INFO:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, before, strict=True):
            logger.setLevel(level)


def _fetch(app: FlareStart) -> list[SourceReport]:
    """Fetch every demo source with the real ingestor, showing progress as `flarestart fetch` does."""
    from bot.cli.fetching import fetch_progress

    with fetch_progress() as (started, advanced):
        # Six small feeds parse in milliseconds: threads spare the demo starting parser processes.
        run = app.fetch(force=True, on_start=started, on_progress=advanced, parse_in_threads=True)
    return list(run.reports)


def _print_fetch(reports: list[SourceReport]) -> None:
    failed = [r for r in reports if r.status in ("failed", "gone")]
    console.print(
        f"[green]✓[/] Fetched {len(reports)} sources: {sum(r.new for r in reports)} new articles"
        + (f", [red]{len(failed)} failed[/]" if failed else ""),
        highlight=False,
    )
    for report in failed:
        console.print(f"  [red]{escape(report.source)}:[/] {escape(report.error or '')}", highlight=False)


async def _send_digests(app: FlareStart, inbox: Path, readers: list[Subscriber]) -> list[_Sent]:
    """Start the loopback SMTP server, send each reader's digest for the current period through it."""
    from bot.demo import maildir_smtp_server, previewing_smtp_channel

    async with maildir_smtp_server(inbox / "mail") as server:
        email = app.settings.email.model_copy(update={"smtp_url": server.url, "allow_plain": True})
        smtp_settings = app.settings.model_copy(update={"email": email})
        console.print(
            f"[green]✓[/] SMTP server listening on {server.host}:{server.port}, "
            f"filing mail into {escape(str(server.maildir_path))}",
            highlight=False,
            soft_wrap=True,
        )
        channel = previewing_smtp_channel(email, inbox)
        try:
            now = app.now()
            sent = []
            for reader in readers:
                assert reader.id is not None and reader.email is not None
                period = app.current_period(reader, now)
                result = await app.deliver(reader.id, period, through=channel, settings=smtp_settings)
                sent.append(_Sent(reader, result, channel.previews.get(reader.email)))
        finally:
            await channel.aclose()
    return sent


@dataclass(frozen=True, slots=True)
class _Posted:
    result: SendResult
    messages: int  # in the channel
    saved: Path  # the channel's messages as JSON


def _post_slack_digest(app: FlareStart, inbox: Path) -> _Posted:
    """A team channel subscribed with the default topics gets its digest posted, by the real Slack
    channel through slack-sdk, to a fake Slack on loopback; the channel's messages are saved."""
    import asyncio
    import json

    from bot.app import Destination
    from bot.testing.fake_slack import FakeSlack

    with FakeSlack(token=SLACK_TOKEN, rate_limit=False) as slack:
        slack.add_channel(SLACK_CHANNEL)
        team = app.subscribe(Destination("slack", SLACK_CHANNEL), name="Demo team", origin="demo").subscriber
        assert team.id is not None
        settings = app.settings.model_copy(
            update={
                "slack": app.settings.slack.model_copy(
                    update={"bot_token": SLACK_TOKEN, "api_url": slack.api_url}
                )
            }
        )
        result = asyncio.run(app.deliver(team.id, app.current_period(team, app.now()), settings=settings))
        messages = slack.history(SLACK_CHANNEL)
    inbox.mkdir(parents=True, exist_ok=True)
    saved = inbox / f"slack-{SLACK_CHANNEL}.json"
    saved.write_text(json.dumps(messages, indent=2, ensure_ascii=False), encoding="utf-8")
    status = "posted" if result.status == "sent" else f"{result.status}: {result.detail}"
    console.print(
        f"[green]✓[/] Slack digest for channel {SLACK_CHANNEL} ({result.items} items, {status}) "
        f"through slack-sdk to a local fake Slack",
        highlight=False,
        soft_wrap=True,
    )
    return _Posted(result, len(messages), saved)


def _print_summary(
    folder: Path, sent: list[_Sent], temporary: bool, base: Settings, elapsed: float, team: _Posted
) -> None:
    import shlex

    from rich.table import Table

    table = Table(title="Digests sent", title_justify="left")
    for column in ("subscriber", "schedule", "topics", "items", "subject"):
        table.add_column(column, overflow="fold", justify="right" if column == "items" else "left")
    for item in sent:
        reader, result = item.subscriber, item.result
        subject = (
            escape(item.preview.subject)
            if item.preview is not None
            else f"[yellow]{result.status}: {escape(result.detail)}[/]"
        )
        table.add_row(
            escape(reader.email or ""),
            f"{reader.frequency} at {reader.delivery_time} {reader.timezone}",
            ", ".join(reader.topics),
            str(result.items),
            subject,
        )
    console.print(table)
    maildir = folder / INBOX / "mail"
    delivered = sum(item.result.status == "sent" for item in sent)
    prefix = f"FLARESTART_DATA_DIR={shlex.quote(str(folder))}"
    lines = [
        "[bold]Where to look[/]",
        f"  Inbox (a Maildir, {delivered} message{'s' if delivered != 1 else ''}): {escape(str(maildir))}",
        f"    open it with a Maildir-aware mail client, e.g. mutt -f {escape(shlex.quote(str(maildir)))}",
        "  HTML previews, one per digest:",
        *(f"    {escape(str(item.preview.path))}" for item in sent if item.preview is not None),
        f"  Slack channel {SLACK_CHANNEL} ({team.messages} message{'s' if team.messages != 1 else ''}, "
        "the Block Kit as Slack stored it):",
        f"    {escape(str(team.saved))}",
        "  Explore the demo's data:",
        f"    {escape(prefix)} flarestart articles list",
        f"    {escape(prefix)} flarestart preview --topics python,ai --max 5",
        f"    {escape(prefix)} flarestart deliveries list",
        f"    {escape(prefix)} flarestart sources list",
    ]
    if base.database_url:
        lines.append(
            "    (your settings set database_url: unset it for these commands, or they read that database)"
        )
    gone = "delete the folder when you are done" if temporary else "the folder is yours to keep"
    lines.append(f"Done in {elapsed:.1f}s; the feed, SMTP and Slack servers are stopped ({gone}).")
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
