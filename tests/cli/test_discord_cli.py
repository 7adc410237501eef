"""`flarestart discord` as an operator meets it: a missing or refused token is one line, the token
never shows in `config show`, and the API URL points the bot at a stand-in."""

from __future__ import annotations

import discord.http
import pytest

from bot.testing.fake_discord import FakeDiscord
from tests.cli.conftest import Runner
from tests.cli.test_delivery_cli import fetched  # noqa: F401  (a fixture: a fetched loopback source)


def test_without_a_token_it_says_which_variable_to_set(cli: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    result = cli("discord")
    assert result.code == 2
    assert result.err.strip().splitlines() == [
        "error: no Discord bot token: set DISCORD_BOT_TOKEN (the bot's token from the developer portal)"
    ]


def test_a_refused_token_is_one_line_and_asked_of_the_configured_api(
    cli: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)  # restored afterwards
    with FakeDiscord(token="the-real-one") as fake:
        monkeypatch.setenv("DISCORD_BOT_TOKEN", "not-the-real-one")
        monkeypatch.setenv("FLARESTART_DISCORD_API_URL", fake.api_url)
        result = cli("discord", "--guild", "810000000000000001")
        assert ("GET", "/users/@me") in fake.requests
    assert result.code == 2
    assert (
        result.err.strip().splitlines()[-1] == "error: Discord refused the bot token: check DISCORD_BOT_TOKEN"
    )


def test_config_show_masks_the_bot_token(cli: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "MTIz.secret-bot-token")
    result = cli("config", "show")
    assert result.code == 0
    assert "secret-bot-token" not in result.out and "discord.bot_token" in result.out


@pytest.mark.usefixtures("fetched")
def test_preview_discord_json_prints_the_messages_as_posted(cli: Runner) -> None:
    result = cli("preview", "--topics", "python", "--discord-json")
    assert result.code == 0, result.err
    [message] = result.json()["messages"]
    assert message["allowed_mentions"] == {"parse": []}
    titles = [embed["title"] for embed in message["embeds"]]
    assert "Faster builds with \\<cargo\\> & friends" in titles  # escaped for Discord markdown
    assert all(embed["url"].startswith("https://loop.example/") for embed in message["embeds"])
    assert message["content"].startswith("**FlareStart · ")
