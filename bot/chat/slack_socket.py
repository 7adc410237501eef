"""Socket Mode: `/flarestart` for teams without a public URL (`flarestart slack`).

slack-sdk's asyncio Socket Mode client (its aiohttp flavour: aiohttp is already installed for
the Web API client, so no websocket library is added) opens a WebSocket with the app-level token
(`SLACK_APP_TOKEN`, `xapp-…`); Slack sends each slash command as an envelope, and the same
`SlackCommandHandler` as the HTTP door answers it: the acknowledgement carries the first answer,
and slow work follows through `response_url`. The WebSocket is the authentication here, so there
is no signature to check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot.chat.slack import SlackCommand, SlackCommandHandler
from bot.errors import ConfigError

log = logging.getLogger(__name__)


async def run_socket_mode(
    handler: SlackCommandHandler,
    *,
    app_token: str,
    api_url: str | None = None,
    stop: asyncio.Event,
    on_connected: Callable[[], None] | None = None,
) -> None:
    """Answer slash commands until `stop` is set. `api_url`: the Web API base (a stand-in)."""
    from slack_sdk.errors import SlackApiError
    from slack_sdk.socket_mode.aiohttp import SocketModeClient
    from slack_sdk.socket_mode.request import SocketModeRequest
    from slack_sdk.socket_mode.response import SocketModeResponse
    from slack_sdk.web.async_client import AsyncWebClient

    web = AsyncWebClient(base_url=api_url) if api_url else AsyncWebClient()
    client = SocketModeClient(app_token=app_token, web_client=web, logger=log)
    follow_ups: set[asyncio.Task[None]] = set()

    async def on_request(client: SocketModeClient, request: SocketModeRequest) -> None:
        if request.type != "slash_commands" or not isinstance(request.payload, dict):
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
            return
        answer = await handler.handle(SlackCommand.of(request.payload))
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=request.envelope_id, payload=answer.payload)
        )
        if answer.follow_up is not None:
            task = asyncio.create_task(answer.follow_up())
            follow_ups.add(task)
            task.add_done_callback(follow_ups.discard)

    client.socket_mode_request_listeners.append(on_request)  # type: ignore[arg-type]
    try:
        # The client retries a refused token for ever; ask once here, so a wrong or revoked token
        # is one clear error (and the URL it gives is the client's first).
        try:
            opened = await web.apps_connections_open(app_token=app_token)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            raise ConfigError(
                f"Slack refused SLACK_APP_TOKEN ({error or exc}): it must be an app-level token "
                "(xapp-…) with the connections:write scope, and Socket Mode must be on"
            ) from None
        client.wss_uri = opened["url"]
        await client.connect()  # type: ignore[no-untyped-call]
        log.info("slack socket mode connected")
        if on_connected is not None:
            on_connected()
        await stop.wait()
        if follow_ups:
            await asyncio.wait(follow_ups, timeout=10)
    finally:
        await client.close()  # type: ignore[no-untyped-call]
