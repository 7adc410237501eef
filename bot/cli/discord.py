"""`flarestart discord`: the Discord bot that answers FlareStart's slash commands."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.common import err_console, open_app, state
from bot.errors import ConfigError


def discord(
    guild: Annotated[
        int | None,
        typer.Option(
            "--guild", min=1, help="Sync the commands to this server id only (at once; for development)."
        ),
    ] = None,
) -> None:
    """Connect to Discord as the bot (DISCORD_BOT_TOKEN) and answer /subscribe, /schedule, /digest,
    /sources … until Ctrl-C or SIGTERM. Without --guild the commands are synced globally.

    Example: DISCORD_BOT_TOKEN=… flarestart discord --guild 112233445566778899
    """
    settings = state.get_settings()
    token = settings.discord.bot_token
    if not token:
        raise ConfigError(
            "no Discord bot token: set DISCORD_BOT_TOKEN (the bot's token from the developer portal)"
        )
    import discord as discord_py

    from bot.app.chat import ChatCommands
    from bot.chat.discord import NAMES, make_client

    with open_app() as flarestart:
        core = ChatCommands(flarestart, prefix="discord", origin="discord", names=NAMES, command="/")
        client = make_client(core, api_url=settings.discord.api_url, guild=guild)
        err_console.print(
            f"[bold]FlareStart on Discord[/]: connecting; the commands sync "
            f"{'to server ' + str(guild) if guild else 'globally (Discord may take an hour to show them)'}."
            " Ctrl-C stops.",
            highlight=False,
        )
        try:
            client.run(token, log_handler=None)
        except discord_py.LoginFailure:
            raise ConfigError("Discord refused the bot token: check DISCORD_BOT_TOKEN") from None
