"""The fake Discord is only worth its tests if a real client agrees with it: discord.py's own
HTTPClient, pointed at the fake through `discord.http.Route.BASE`, logs in, posts, meets the rate
limit and syncs application commands there as it would against Discord."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import discord
import discord.http
import pytest

from bot.testing.fake_discord import FakeDiscord

TOKEN = "discord-py-test"
CHANNEL = "720000000000000001"


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord(token=TOKEN, limit=3, per=0.4) as server:
        server.add_channel(CHANNEL)
        yield server


@pytest.fixture
async def http(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[discord.http.HTTPClient]:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_url)
    client = discord.http.HTTPClient(loop=None)  # type: ignore[arg-type]
    await client.static_login(TOKEN)
    try:
        yield client
    finally:
        await client.close()


async def test_discord_py_logs_in_and_a_wrong_token_is_refused(
    fake: FakeDiscord, http: discord.http.HTTPClient
) -> None:
    assert ("GET", "/users/@me") in fake.requests
    other = discord.http.HTTPClient(loop=None)  # type: ignore[arg-type]
    try:
        with pytest.raises(discord.LoginFailure):
            await other.static_login("wrong")
    finally:
        await other.close()


async def test_discord_py_keeps_the_route_limit_as_the_headers_say(
    fake: FakeDiscord, http: discord.http.HTTPClient
) -> None:
    started = time.monotonic()
    for number in range(7):
        with discord.http.handle_message_parameters(content=f"message {number}") as params:
            await http.send_message(CHANNEL, params=params)
    elapsed = time.monotonic() - started
    assert [m["content"] for m in fake.history(CHANNEL)] == [f"message {n}" for n in range(7)]
    assert elapsed >= 0.8 - 0.05  # three windows of 3: it waited for two resets
    history = await http.logs_from(CHANNEL, limit=5)
    assert [m["content"] for m in history] == [f"message {n}" for n in range(6, 1, -1)]  # newest first
    assert all("nonce" not in m for m in history)


async def test_discord_py_gets_discords_form_errors(fake: FakeDiscord, http: discord.http.HTTPClient) -> None:
    embed = discord.Embed(title="x" * 257)
    with (
        discord.http.handle_message_parameters(embed=embed) as params,
        pytest.raises(discord.HTTPException) as caught,
    ):
        await http.send_message(CHANNEL, params=params)
    assert caught.value.status == 400 and caught.value.code == 50035
    assert "Must be 256 or fewer in length" in caught.value.text
    fake.revoke_access(CHANNEL)
    with (
        discord.http.handle_message_parameters(content="hi") as params,
        pytest.raises(discord.Forbidden) as forbidden,
    ):
        await http.send_message(CHANNEL, params=params)
    assert forbidden.value.code == 50001


async def test_a_nonce_with_enforce_nonce_posts_once(
    fake: FakeDiscord, http: discord.http.HTTPClient
) -> None:
    answers = []
    for _ in range(2):
        with discord.http.handle_message_parameters(content="once", nonce="n-1") as params:
            params.payload["enforce_nonce"] = True  # type: ignore[index]
            answers.append(await http.send_message(CHANNEL, params=params))
    assert answers[0]["id"] == answers[1]["id"] and len(fake.history(CHANNEL)) == 1


async def test_commands_sync_to_a_guild_and_globally(
    fake: FakeDiscord, http: discord.http.HTTPClient
) -> None:
    commands = [{"name": "topics", "description": "The topics you can follow", "type": 1}]
    synced = await http.bulk_upsert_guild_commands(fake.application_id, "800", commands)
    assert [c["name"] for c in synced] == ["topics"] and synced[0]["guild_id"] == "800"
    await http.bulk_upsert_global_commands(fake.application_id, commands)
    assert set(fake.commands) == {"800", "global"}
