"""Discord's slash commands as a server meets them: raw interaction payloads, as the gateway hands
them over, go through discord.py's real CommandTree; what the bot answered is what the fake
Discord received (interaction callbacks and follow-ups), and the effect is read from the store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import discord
import discord.http
import pytest
from discord import app_commands

from bot.app import FlareStart
from bot.app.chat import ChatCommands
from bot.chat.discord import MANAGE, NAMES, DiscordCommands
from bot.config import Settings, load_settings
from bot.testing.fake_discord import APPLICATION_ID, FakeDiscord, seen
from bot.testing.httpserver import FixtureServer

TOKEN = "discord-commands-test"
GUILD = "810000000000000001"
CHANNEL = "820000000000000001"
ADA = "830000000000000001"
NOW = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
MANAGE_GUILD = 1 << 5
_ids = itertools.count(1_000_000_000_000_000_000)


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord(token=TOKEN) as server:
        yield server


@pytest.fixture
def app(settings: Settings) -> Iterator[FlareStart]:
    with FlareStart(settings, seed=False, clock=lambda: NOW) as flarestart:
        yield flarestart


class Bot:
    """A logged-in discord.py client whose tree carries FlareStart's commands."""

    def __init__(
        self, client: discord.Client, tree: app_commands.CommandTree[Any], fake: FakeDiscord
    ) -> None:
        self.client = client
        self.tree = tree
        self.fake = fake

    async def send(
        self,
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        kind: int = 2,
        permissions: int = MANAGE_GUILD,
        guild: bool = True,
        user: str = ADA,
    ) -> list[dict[str, Any]]:
        """One interaction as the gateway delivers it; the callbacks and follow-ups it caused."""
        token = self.fake.add_interaction_token()
        member_user = {
            "id": user,
            "username": "ada",
            "discriminator": "0",
            "avatar": None,
            "global_name": "Ada",
        }
        payload: dict[str, Any] = {
            "id": str(next(_ids)),
            "application_id": APPLICATION_ID,
            "type": kind,
            "token": token,
            "version": 1,
            "locale": "en-US",
            "app_permissions": str((1 << 11) | (1 << 14)),
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "authorizing_integration_owners": {},
            "context": 0 if guild else 1,
            "data": {"id": str(next(_ids)), "name": name, "type": 1, "options": options or []},
        }
        if guild:
            payload |= {
                "guild_id": GUILD,
                "guild_locale": "en-US",
                "channel_id": CHANNEL,
                "channel": {
                    "id": CHANNEL,
                    "type": 0,
                    "name": "team-news",
                    "guild_id": GUILD,
                    "position": 3,
                    "permission_overwrites": [],
                    "nsfw": False,
                    "parent_id": None,
                    "topic": None,
                    "last_message_id": None,
                    "rate_limit_per_user": 0,
                    "flags": 0,
                    "permissions": str(permissions),
                },
                "member": {
                    "user": member_user,
                    "roles": [],
                    "permissions": str(permissions),
                    "joined_at": "2025-01-01T00:00:00+00:00",
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                },
            }
        else:
            dm = str(next(_ids))
            payload |= {
                "channel_id": dm,
                "channel": {
                    "id": dm,
                    "type": 1,
                    "last_message_id": None,
                    "recipients": [member_user],
                    "flags": 0,
                },
                "user": member_user,
            }
        self.client._connection.parse_interaction_create(payload)  # type: ignore[arg-type]
        for _ in range(500):  # the tree answers in a task of its own
            await asyncio.sleep(0.01)
            got = [c for c in self.fake.callbacks if c["token"] == token]
            got += [f for f in self.fake.followups if f["token"] == token]
            if got and (got[0].get("type") != 5 or len(got) > 1):
                return got
        raise AssertionError(f"/{name} got no answer")


@pytest.fixture
async def bot(fake: FakeDiscord, app: FlareStart, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bot]:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_url)
    client = discord.Client(intents=discord.Intents.none(), application_id=int(APPLICATION_ID))
    tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)
    core = ChatCommands(app, prefix="discord", origin="discord", names=NAMES, command="/")
    DiscordCommands(core).install(tree)
    await client.login(TOKEN)
    try:
        yield Bot(client, tree, fake)
    finally:
        await client.close()


def text(answer: dict[str, Any]) -> str:
    """What a member sees of an answer (a callback's data or a follow-up)."""
    data = answer.get("data", answer)
    return seen({"content": data.get("content", ""), "allowed_mentions": data.get("allowed_mentions")}).text


def ephemeral(answer: dict[str, Any]) -> bool:
    data = answer.get("data", answer)
    return bool(int(data.get("flags") or 0) & 64)


async def test_the_commands_sync_to_one_guild(bot: Bot) -> None:
    guild = discord.Object(id=int(GUILD))
    bot.tree.copy_global_to(guild=guild)
    synced = await bot.tree.sync(guild=guild)
    names = {command.name for command in synced}
    assert names >= {"subscribe", "schedule", "digest", "sources", "help", "status", "topics"}
    assert "time" not in names and "preview" not in names  # Discord's names for the core's verbs
    by_name = {c["name"]: c for c in bot.fake.commands[GUILD]}
    assert by_name["follow"]["default_member_permissions"] == str(MANAGE_GUILD)
    assert by_name["subscribe"]["default_member_permissions"] is None  # any member may subscribe their DMs
    assert by_name["status"]["default_member_permissions"] is None


async def test_help_is_ephemeral_and_names_the_discord_commands(bot: Bot) -> None:
    [answer] = await bot.send("help")
    assert answer["type"] == 4 and ephemeral(answer)
    shown = text(answer)
    assert "/schedule" in shown and "/digest" in shown and "/ " not in shown
    assert answer["data"]["allowed_mentions"] == {"parse": []}


async def test_status_of_a_channel_without_a_digest(bot: Bot) -> None:
    [answer] = await bot.send("status")
    assert "gets no digest" in text(answer) and "/subscribe" in text(answer) and ephemeral(answer)


async def test_without_manage_server_a_change_is_refused_and_nothing_changes(
    bot: Bot, app: FlareStart
) -> None:
    [answer] = await bot.send("subscribe", [{"name": "topics", "type": 3, "value": "python"}], permissions=0)
    assert text(answer) == MANAGE and ephemeral(answer)
    [added] = await bot.send(
        "sources",
        [
            {
                "name": "add",
                "type": 1,
                "options": [{"name": "url", "type": 3, "value": "https://x.example/feed"}],
            }
        ],
        permissions=0,
    )
    assert text(added) == MANAGE
    assert app.list_sources() == []


async def test_topics_autocomplete_completes_the_last_of_several(bot: Bot) -> None:
    option = {"name": "topics", "type": 3, "value": "rust,pyth", "focused": True}
    [answer] = await bot.send("subscribe", [option], kind=4)
    assert answer["type"] == 8
    choices = answer["data"]["choices"]
    assert choices and choices[0]["value"] == "rust,python" and len(choices) <= 25


async def test_time_zones_autocomplete(bot: Bot) -> None:
    options = [
        {"name": "time", "type": 3, "value": "08:30"},
        {"name": "timezone", "type": 3, "value": "europe/ber", "focused": True},
    ]
    [answer] = await bot.send("schedule", options, kind=4)
    assert [c["value"] for c in answer["data"]["choices"]] == ["Europe/Berlin"]


async def test_a_private_address_is_refused_with_a_clear_reply(
    fake: FakeDiscord, tmp_path: Path, feed_server: FixtureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = load_settings({"FLARESTART_DATA_DIR": str(tmp_path / "strict")})
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_url)
    with FlareStart(strict, seed=False, clock=lambda: NOW) as app:
        client = discord.Client(intents=discord.Intents.none(), application_id=int(APPLICATION_ID))
        tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)
        DiscordCommands(ChatCommands(app, prefix="discord", names=NAMES, command="/")).install(tree)
        await client.login(TOKEN)
        try:
            url = feed_server.url("/feed.xml")
            options = [{"name": "add", "type": 1, "options": [{"name": "url", "type": 3, "value": url}]}]
            deferred, refused = await Bot(client, tree, fake).send("sources", options)
        finally:
            await client.close()
        assert deferred["type"] == 5 and ephemeral(deferred)  # slow work: deferred at once
        assert refused["kind"] == "followup" and ephemeral(refused)
        assert any(word in text(refused) for word in ("127.0.0.1", "private", "loopback"))
        assert app.list_sources() == []


async def test_a_slow_command_is_deferred_and_answered_by_a_follow_up(bot: Bot, app: FlareStart) -> None:
    core = ChatCommands(app, prefix="discord", names=NAMES, command="/")
    original = core.run

    def slow(*args: Any, **kwargs: Any) -> Any:
        import time

        time.sleep(0.3)
        return original(*args, **kwargs)

    core.run = slow  # type: ignore[method-assign]
    bot.tree.clear_commands(guild=None)
    DiscordCommands(core, deadline=0.05).install(bot.tree)
    deferred, answer = await bot.send("topics")
    assert deferred["type"] == 5 and answer["kind"] == "followup"
    assert "Topics you can follow" in text(answer)


async def test_the_digest_preview_is_deferred_and_only_the_member_sees_it(bot: Bot) -> None:
    deferred, answer = await bot.send("digest")
    assert deferred["type"] == 5 and ephemeral(deferred) and ephemeral(answer)
    assert text(answer)


def option(name: str, value: object, kind: int = 3) -> dict[str, Any]:
    return {"name": name, "type": kind, "value": value}


async def test_every_command_changes_the_channels_subscriber_in_the_store(bot: Bot, app: FlareStart) -> None:
    [subscribed] = await bot.send("subscribe", [option("topics", "python,rust")])
    assert not ephemeral(subscribed) and "now gets a FlareStart digest" in text(subscribed)
    row = app.subscriber(f"discord:{CHANNEL}").subscriber
    assert (row.topics, row.origin, row.name, row.status) == (
        {"python": 1.0, "rust": 1.0},
        "discord",
        "team-news",
        "active",
    )

    async def run(name: str, *options: dict[str, Any]) -> dict[str, Any]:
        [answer] = await bot.send(name, list(options))
        return answer

    assert not ephemeral(await run("follow", option("topic", "Go")))  # a name resolves to its slug
    assert not ephemeral(await run("unfollow", option("topic", "rust")))
    await run("mute", option("what", "crypto scam"))
    await run("schedule", option("time", "08:30"), option("timezone", "Europe/Berlin"))
    await run("frequency", option("every", "weekdays"))
    row = app.subscriber(f"discord:{CHANNEL}").subscriber
    assert set(row.topics) == {"python", "go"} and "crypto scam" in row.muted_keywords
    assert (row.delivery_time, row.timezone, row.frequency) == ("08:30", "Europe/Berlin", "weekdays")
    await run("unmute", option("what", "crypto scam"))
    assert app.subscriber(f"discord:{CHANNEL}").subscriber.muted_keywords == []

    paused = await run("pause")
    assert app.subscriber(f"discord:{CHANNEL}").subscriber.status == "paused" and not ephemeral(paused)
    status = await run("status")
    assert ephemeral(status) and "Status: paused" in text(status) and "08:30 (Europe/Berlin)" in text(status)
    await run("resume")
    assert app.subscriber(f"discord:{CHANNEL}").subscriber.status == "active"
    topics = await run("topics")
    assert ephemeral(topics) and "python (followed)" in text(topics)
    listed = await run("sources", {"name": "list", "type": 1, "options": []})
    assert ephemeral(listed) and "no sources yet" in text(listed)
    gone = await run("unsubscribe")
    assert not ephemeral(gone) and app.subscriber(f"discord:{CHANNEL}").subscriber.status == "unsubscribed"


async def test_a_bad_time_zone_is_a_clear_refusal_and_changes_nothing(bot: Bot, app: FlareStart) -> None:
    await bot.send("subscribe", [])
    [answer] = await bot.send("schedule", [option("time", "08:30"), option("timezone", "Europe/Berln")])
    assert ephemeral(answer) and "Europe/Berln" in text(answer)
    assert app.subscriber(f"discord:{CHANNEL}").subscriber.timezone == "UTC"


async def test_subscribe_dm_true_subscribes_the_members_direct_messages(bot: Bot, app: FlareStart) -> None:
    [answer] = await bot.send("subscribe", [option("dm", True, kind=5)], permissions=0)
    assert "now gets a FlareStart digest" in text(answer)
    assert app.subscriber(f"discord:user:{ADA}").subscriber.destination_kind == "discord"
    [status] = await bot.send("status", guild=False)  # in the DM with the bot: the same subscriber
    assert "Topics:" in text(status)


async def test_hostile_words_in_a_reply_stay_inert(bot: Bot) -> None:
    [answer] = await bot.send("subscribe", [option("topics", "@everyone <@&123456789012345678>")])
    shown = seen(
        {"content": answer["data"]["content"], "allowed_mentions": answer["data"]["allowed_mentions"]}
    )
    assert shown.mentions == () and shown.pings == ()
