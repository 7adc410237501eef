"""`flarestart slack`: `/flarestart` for teams without a public URL, over Slack's Socket Mode."""

from __future__ import annotations

from bot.cli.common import err_console, open_app, state


def slack() -> None:
    """Answer /flarestart in Slack over Socket Mode until Ctrl-C or SIGTERM: no public URL needed.

    Needs SLACK_APP_TOKEN (an app-level token, xapp-…, with connections:write) and Socket Mode on
    in the app (docs/slack-app-manifest.yml). The same commands as POST /slack/commands on
    `flarestart serve`; run one of the two.

    Example: SLACK_APP_TOKEN=xapp-1-… flarestart slack
    """
    import asyncio
    import signal

    from bot.app.chat import ChatCommands
    from bot.chat.slack import SlackCommandHandler, slack_options
    from bot.chat.slack_socket import run_socket_mode
    from bot.errors import ConfigError

    options = slack_options(state.get_settings())
    if not options.app_token:
        raise ConfigError(
            "flarestart slack needs SLACK_APP_TOKEN, an app-level token (xapp-…) with "
            "connections:write; or serve /slack/commands with `flarestart serve` and SLACK_SIGNING_SECRET"
        )
    app_token = options.app_token

    def connected() -> None:
        where = f" (Web API at {options.api_url})" if options.api_url else ""
        err_console.print(
            f"[bold]FlareStart for Slack[/] connected over Socket Mode{where}: /flarestart answers. "
            "Ctrl-C stops.",
            highlight=False,
        )

    with open_app(seed=False) as flarestart:
        flarestart.open()  # a bad DATABASE_URL is a one-line error before connecting
        handler = SlackCommandHandler(
            ChatCommands(flarestart, prefix="slack", origin="slack"), stand_in=options.stand_in
        )

        async def serve() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await run_socket_mode(
                handler, app_token=app_token, api_url=options.api_url, stop=stop, on_connected=connected
            )

        asyncio.run(serve())
