"""`flarestart discord` as an operator meets it: a missing or refused token is one line, the token
never shows in `config show`, and the API URL points the bot at a stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import discord.http
import pytest

from bot.testing.fake_discord import FakeDiscord, seen
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
    [message] = result.json()
    assert message["allowed_mentions"] == {"parse": []}
    titles = [embed["title"] for embed in message["embeds"]]
    assert "Faster builds with \\<cargo\\> & friends" in titles  # escaped for Discord markdown
    assert all(embed["url"].startswith("https://loop.example/") for embed in message["embeds"])
    assert message["content"].startswith("**FlareStart · ")


CHANNEL = "760000000000000001"
LOST = "760000000000000002"


@pytest.fixture
def discord_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDiscord]:
    """A fake Discord the CLI's settings point at, with a channel, a webhook and the bot's token."""
    with FakeDiscord(token="cli-bot-token") as fake:
        fake.add_channel(CHANNEL)
        fake.add_channel(LOST)
        monkeypatch.setenv("DISCORD_BOT_TOKEN", "cli-bot-token")
        monkeypatch.setenv("FLARESTART_DISCORD_API_URL", fake.api_url)
        monkeypatch.setenv("COMMUNITY_WEBHOOK", fake.add_webhook("760000000000000003"))
        yield fake


def _discord_subscribers(cli: Runner, folder: Path) -> None:
    folder.mkdir()
    (folder / "discord.toml").write_text(
        "\n".join(
            f'[[subscriber]]\nname = "{name}"\ndiscord = {destination}\ntopics = ["python"]\n'
            for name, destination in (
                ("Community", f'{{ channel = "{CHANNEL}" }}'),
                ("Hooked", '{ webhook_env = "COMMUNITY_WEBHOOK" }'),
                ("Lost", f'{{ channel = "{LOST}" }}'),
            )
        ),
        encoding="utf-8",
    )
    synced = cli("subscribers", "sync", str(folder))
    assert synced.code == 0, synced.err


@pytest.mark.usefixtures("fetched")
def test_send_posts_a_discord_digest_once_and_deliveries_list_shows_it(
    cli: Runner, discord_fake: FakeDiscord, tmp_path: Path
) -> None:
    _discord_subscribers(cli, tmp_path / "subscribers")
    previewed = cli("preview", f"discord:{CHANNEL}", "--discord-json")
    assert previewed.code == 0 and len(previewed.json()[0]["embeds"]) == 3
    assert discord_fake.history(CHANNEL) == []  # a preview posts nothing
    first = cli("send", f"discord:{CHANNEL}", "--now")
    again = cli("send", f"discord:{CHANNEL}", "--now")
    hooked = cli("send", "discord:webhook_env:COMMUNITY_WEBHOOK", "--now")
    assert first.code == 0 and again.code == 0 and hooked.code == 0, (first.err, again.err, hooked.err)
    [message] = discord_fake.history(CHANNEL)
    assert len(message["embeds"]) == 3 and message["allowed_mentions"] == {"parse": []}
    assert message["nonce"] and "Faster builds with" in seen(message).text
    assert "Already sent" in again.out
    assert f"to Discord channel {CHANNEL} (1 part(s): 1 posted)" in " ".join(first.out.split())
    assert len(discord_fake.history("760000000000000003")) == 1  # the webhook's channel
    listed = cli("deliveries", "list", "--json")
    assert listed.code == 0
    rows = [row for row in listed.json() if row["channel"] == "discord"]
    assert len(rows) == 2 and {row["status"] for row in rows} == {"sent"}


@pytest.mark.usefixtures("fetched")
def test_lost_access_fails_the_delivery_and_pauses_the_subscriber_with_the_reason(
    cli: Runner, discord_fake: FakeDiscord, tmp_path: Path
) -> None:
    _discord_subscribers(cli, tmp_path / "subscribers")
    discord_fake.revoke_access(LOST)
    failed = cli("send", f"discord:{LOST}", "--now")
    assert failed.code != 0 and "no access to Discord channel" in failed.err
    shown = cli("subscribers", "show", f"discord:{LOST}", "--json")
    assert shown.json()["status"] == "paused"
    assert "no access to Discord channel" in shown.json()["status_reason"]
    table = cli("subscribers", "show", f"discord:{LOST}")
    assert "paused (the FlareStart bot has no access" in " ".join(table.out.split())


@pytest.mark.usefixtures("fetched")
def test_once_access_is_back_the_operator_resumes_and_retries_the_failed_digest(
    cli: Runner, discord_fake: FakeDiscord, tmp_path: Path
) -> None:
    _discord_subscribers(cli, tmp_path / "subscribers")
    discord_fake.revoke_access(LOST)
    assert cli("send", f"discord:{LOST}", "--now").code != 0
    paused = cli("deliveries", "retry", "--channel", "discord", "--json").json()
    assert [row["outcome"] for row in paused] == ["skipped"] and "paused" in paused[0]["detail"]
    discord_fake.channels[LOST].access = True
    assert cli("subscribers", "resume", f"discord:{LOST}").code == 0
    [retried] = cli("deliveries", "retry", "--channel", "discord", "--json").json()
    assert (retried["subscriber"], retried["channel"], retried["outcome"]) == (
        f"discord:{LOST}",
        "discord",
        "requeued",
    )


def test_subscribers_add_takes_every_discord_form_and_checks_the_ids(cli: Runner) -> None:
    for args, ref in (
        (["--discord", "112233445566778899"], "discord:112233445566778899"),
        (["--discord-webhook-env", "COMMUNITY_WEBHOOK"], "discord:webhook_env:COMMUNITY_WEBHOOK"),
        (["--discord-user", "998877665544332211"], "discord:user:998877665544332211"),
    ):
        added = cli("subscribers", "add", *args, "--json")
        assert added.code == 0, added.err
        assert cli("subscribers", "show", ref, "--json").json()["destination_kind"] == "discord"
    refused = cli("subscribers", "add", "--discord", "#general")
    assert refused.code != 0 and "is not a Discord channel id" in refused.err
    both = cli("subscribers", "add", "--discord", "112233445566778899", "--slack", "C0123ABCD")
    assert both.code != 0 and "exactly one destination" in both.err
