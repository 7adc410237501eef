"""Discord's slash commands: discord.py's CommandTree, translated to the one command core.

    tree = app_commands.CommandTree(client)
    DiscordCommands(ChatCommands(app, prefix="discord", origin="discord", names=NAMES, command="/")).install(tree)

Every command here only translates: its options become the core verb's words
(`/schedule time:08:30 timezone:Europe/Berlin` → `time 08:30 Europe/Berlin`), and the core's
`ChatReply` becomes an interaction response. What is Discord's own:

- Permission: commands that change the channel's digest, and `/sources add`, need the Manage
  Server permission in a server (checked on the member's permissions in the interaction; those
  commands but /subscribe also carry it as their default permission, so Discord shows them to
  managers only: any member may `/subscribe dm:True`). In a DM the user is the subscriber and
  may do anything.
- `/subscribe dm:True` subscribes the user's direct messages ("user:<id>") instead of the channel.
- Answers: ephemeral unless the command changed the channel's digest (the core says `public`).
  Discord waits 3 seconds for the first answer: the core runs in a thread, and when it takes
  longer than `deadline` (2.5 s) the interaction is deferred and the answer follows as a
  follow-up. Slow work (`/digest`, `/sources add`) is always deferred.
- Markup: the core's lines hold what users and feeds wrote. Every line is escaped for Discord
  markdown, except the core's own `code spans` (a span cannot hold a backtick, and nothing inside
  one is parsed); preview titles link only through checked http(s) URLs; every answer carries
  `allowed_mentions: none`.
- Autocomplete: topics from the taxonomy (also the last of several comma-separated ones), time
  zones from the system's zone database; at most Discord's 25 choices.
"""

from __future__ import annotations

import asyncio
import logging
import re
import zoneinfo
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import discord
import discord.http
from discord import app_commands

from bot.app.chat import ChatCommands, ChatReply
from bot.digest.discord import discord_url, escape_markdown

log = logging.getLogger(__name__)

# The core's verbs as Discord names them: `/schedule` sets the time, `/digest` previews.
NAMES = {"time": "schedule", "preview": "digest"}
DEADLINE = 2.5  # seconds before the first answer must go (Discord gives up at 3)
CONTENT_MAX = 2_000
CHOICES_MAX = 25  # Discord's most autocomplete choices
NO_MENTIONS = discord.AllowedMentions.none()
MANAGE = "You need the Manage Server permission to change this channel's digest or add sources."
COMMANDS = frozenset(
    {
        "subscribe", "unsubscribe", "topics", "follow", "unfollow", "mute", "unmute", "schedule",
        "frequency", "digest", "sources", "pause", "resume", "status", "help",
    }
)  # fmt: skip
_CODE = re.compile(r"`([^`\n]{1,200})`")


def render_lines(reply: ChatReply) -> str:
    """The reply as Discord message content: escaped lines, then the preview items, within 2,000."""
    lines = [_line(line) for line in reply.lines]
    for number, item in enumerate(reply.items, 1):
        title = escape_markdown(item.title) or "(untitled)"
        link = discord_url(item.url)
        heading = f"**{number}\\.** [{title}](<{link}>)" if link else f"**{number}\\.** {title}"
        lines.append(f"{heading} · {escape_markdown(item.source)}\n-# {escape_markdown(item.why)}")
    text = ""
    for line in lines:
        if len(text) + len(line) + 1 > CONTENT_MAX - 2:
            return text + "\n…"
        text = f"{text}\n{line}" if text else line
    return text or "…"


def _line(line: str) -> str:
    """One line of the core: escaped, its own code spans kept (with "/ verb" read as "/verb")."""
    out: list[str] = []
    position = 0
    for match in _CODE.finditer(line):
        out.append(escape_markdown(line[position : match.start()]))
        span = match.group(1)
        if span.startswith("/ "):
            span = "/" + span[2:]
        elif span.split(" ", 1)[0] in COMMANDS:  # help lists the verbs bare: they are slash commands here
            span = "/" + span
        out.append("`" + span + "`")
        position = match.end()
    out.append(escape_markdown(line[position:]))
    return "".join(out)


@cache
def _zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


class DiscordCommands:
    """The slash commands over one `ChatCommands`, for one CommandTree."""

    def __init__(
        self,
        core: ChatCommands,
        *,
        deadline: float = DEADLINE,
        in_thread: Callable[..., Any] = asyncio.to_thread,
    ) -> None:
        self.core = core
        self.deadline = deadline
        self._in_thread = in_thread

    # answering -----------------------------------------------------------------------------

    async def answer(
        self, interaction: discord.Interaction, verb: str, args: Sequence[str], *, dm: bool = False
    ) -> None:
        """Run `verb` for the interaction's channel (or the user's DMs) and answer it."""
        user = str(interaction.user.id)
        in_guild = interaction.guild_id is not None
        changes = self.core.changes_digest(verb) or (verb == "sources" and bool(args))
        if in_guild and changes and not dm and not interaction.permissions.manage_guild:
            log.info(
                "discord command refused: no Manage Server",
                extra={"channel": interaction.channel_id, "user": user, "verb": verb},
            )
            await interaction.response.send_message(MANAGE, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        channel = f"user:{user}" if dm or not in_guild else str(interaction.channel_id)
        name = getattr(interaction.channel, "name", "") or ("DM" if channel.startswith("user:") else "")
        where = {"channel": channel, "user": user, "channel_name": str(name)}
        work = asyncio.ensure_future(self._in_thread(self.core.run, verb, list(args), **where))
        try:
            reply: ChatReply = await asyncio.wait_for(asyncio.shield(work), self.deadline)
        except TimeoutError:
            log.warning("discord command slow: deferred", extra={"channel": channel, "verb": verb})
            await interaction.response.defer(ephemeral=not changes, thinking=True)
            reply = await work
            await self._follow_up(interaction, reply)
            return
        if reply.later:
            await interaction.response.defer(ephemeral=True, thinking=True)
            finished = await self._in_thread(self.core.finish, reply.verb, list(reply.args), **where)
            await self._follow_up(interaction, finished)
            return
        await interaction.response.send_message(
            render_lines(reply), ephemeral=not reply.public, allowed_mentions=NO_MENTIONS
        )

    async def _follow_up(self, interaction: discord.Interaction, reply: ChatReply) -> None:
        await interaction.followup.send(
            render_lines(reply), ephemeral=not reply.public, allowed_mentions=NO_MENTIONS
        )

    # autocomplete --------------------------------------------------------------------------

    def topic_choices(self, current: str) -> list[app_commands.Choice[str]]:
        """Topics whose slug or name starts with (else contains) the last comma-separated word."""
        head, comma, last = current.rpartition(",")
        prefix = head + comma
        typed = last.strip().lower()
        topics = [t for t in self.core.app.topics() if t.kind != "kind"]
        starts = [t for t in topics if t.slug.startswith(typed) or t.name.lower().startswith(typed)]
        contains = [t for t in topics if t not in starts and (typed in t.slug or typed in t.name.lower())]
        choices = []
        for topic in (starts + contains)[:CHOICES_MAX]:
            value = (prefix + topic.slug)[:100]
            choices.append(app_commands.Choice(name=(prefix + topic.name)[:100], value=value))
        return choices

    @staticmethod
    def zone_choices(current: str) -> list[app_commands.Choice[str]]:
        typed = current.strip().lower().replace(" ", "_")
        zones = _zones()
        starts = [z for z in zones if z.lower().startswith(typed)]
        rest = [z for z in zones if typed in z.lower() and not z.lower().startswith(typed)]
        return [app_commands.Choice(name=zone, value=zone) for zone in (starts + rest)[:CHOICES_MAX]]

    # the commands --------------------------------------------------------------------------

    def install(self, tree: app_commands.CommandTree[Any]) -> None:
        """Add every command to `tree` (globally; `--guild` copies them to one server to sync)."""
        bot = self
        manage = app_commands.default_permissions(manage_guild=True)

        async def topics_autocomplete(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return bot.topic_choices(current)

        async def zone_autocomplete(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            return bot.zone_choices(current)

        @tree.command(name="subscribe", description="Send this channel (or your DMs) a FlareStart digest")
        @app_commands.describe(topics="Topics, comma-separated (optional)", dm="Send it to your DMs instead")
        @app_commands.autocomplete(topics=topics_autocomplete)
        async def subscribe(interaction: discord.Interaction, topics: str = "", dm: bool = False) -> None:
            await bot.answer(interaction, "subscribe", [topics] if topics.strip() else [], dm=dm)

        @tree.command(name="unsubscribe", description="Stop this channel's digest")
        @manage
        async def unsubscribe(interaction: discord.Interaction) -> None:
            await bot.answer(interaction, "unsubscribe", [])

        @tree.command(name="topics", description="The topics you can follow")
        async def topics(interaction: discord.Interaction) -> None:
            await bot.answer(interaction, "topics", [])

        @tree.command(name="follow", description="Add topics to this channel's digest")
        @app_commands.autocomplete(topic=topics_autocomplete)
        @manage
        async def follow(interaction: discord.Interaction, topic: str) -> None:
            await bot.answer(interaction, "follow", [topic])

        @tree.command(name="unfollow", description="Remove topics from this channel's digest")
        @app_commands.autocomplete(topic=topics_autocomplete)
        @manage
        async def unfollow(interaction: discord.Interaction, topic: str) -> None:
            await bot.answer(interaction, "unfollow", [topic])

        @tree.command(name="mute", description="Hide articles about a topic, from a source, or with a word")
        @manage
        async def mute(interaction: discord.Interaction, what: str) -> None:
            await bot.answer(interaction, "mute", [what])

        @tree.command(name="unmute", description="Show muted articles again")
        @manage
        async def unmute(interaction: discord.Interaction, what: str) -> None:
            await bot.answer(interaction, "unmute", [what])

        @tree.command(name="schedule", description="When the digest arrives, e.g. 08:30 Europe/Berlin")
        @app_commands.describe(time="HH:MM", timezone="A time zone such as Europe/Berlin")
        @app_commands.autocomplete(timezone=zone_autocomplete)
        @manage
        async def schedule(interaction: discord.Interaction, time: str, timezone: str = "") -> None:
            await bot.answer(interaction, "schedule", [time, timezone] if timezone else [time])

        @tree.command(name="frequency", description="How often the digest arrives")
        @app_commands.choices(
            every=[
                app_commands.Choice(name=name, value=name)
                for name in (
                    "daily",
                    "weekdays",
                    *(f"weekly:{d}" for d in ("mon", "tue", "wed", "thu", "fri")),
                )
            ]
        )
        @manage
        async def frequency(interaction: discord.Interaction, every: str) -> None:
            await bot.answer(interaction, "frequency", [every])

        @tree.command(name="digest", description="The digest as it would go now (only you see it)")
        async def digest(interaction: discord.Interaction) -> None:
            await bot.answer(interaction, "digest", [])

        @tree.command(name="pause", description="Stop sending until /resume")
        @manage
        async def pause(interaction: discord.Interaction) -> None:
            await bot.answer(interaction, "pause", [])

        @tree.command(name="resume", description="Send the digest again")
        @manage
        async def resume(interaction: discord.Interaction) -> None:
            await bot.answer(interaction, "resume", [])

        @tree.command(name="status", description="What this channel gets, and when the next digest goes")
        async def status(interaction: discord.Interaction) -> None:
            await bot.answer(interaction, "status", [])

        @tree.command(name="help", description="What FlareStart's commands do")
        async def help_(interaction: discord.Interaction) -> None:
            await bot.answer(interaction, "help", [])

        sources = app_commands.Group(name="sources", description="The sources articles come from")

        @sources.command(name="list", description="The sources articles come from")
        async def sources_list(interaction: discord.Interaction) -> None:
            await bot.answer(interaction, "sources", [])

        @sources.command(name="add", description="Add a feed or a site (Manage Server)")
        @app_commands.describe(url="A feed or a site's address (https://…)")
        async def sources_add(interaction: discord.Interaction, url: str) -> None:
            await bot.answer(interaction, "sources", ["add", url])

        tree.add_command(sources)


def make_client(core: ChatCommands, *, api_url: str, guild: int | None = None) -> discord.Client:
    """A discord.py client whose tree carries the commands; on start it syncs them to `guild`
    (at once, for development) or globally (Discord may take up to an hour to show them)."""
    discord.http.Route.BASE = api_url.rstrip("/")
    client = discord.Client(intents=discord.Intents.none())  # slash commands need no intents
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
    DiscordCommands(core).install(tree)

    async def setup_hook() -> None:
        if guild is not None:
            target = discord.Object(id=guild)
            tree.copy_global_to(guild=target)
            synced = await tree.sync(guild=target)
        else:
            synced = await tree.sync()
        log.info("discord commands synced", extra={"guild": guild or "global", "commands": len(synced)})

    client.setup_hook = setup_hook  # type: ignore[method-assign]
    return client
