"""`flarestart serve`: the web endpoints (sign-up, archive, unsubscribe, confirm, preferences, health, metrics) under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.common import err_console, open_app, state


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: web.host; 0.0.0.0 on a platform).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port to listen on (default: web.port, or PORT).")
    ] = None,
) -> None:
    """Serve the sign-up page, the archive, one-click unsubscribe, double opt-in confirmation, the preferences page, /healthz and (with web.metrics_token) /metrics until Ctrl-C or SIGTERM.

    Example: flarestart serve --host 0.0.0.0 --port 8000
    """
    import uvicorn

    from bot.web.app import create_app
    from bot.web.server import connections_allowed, server_config

    settings = state.get_settings()
    # Open (and migrate) once here, so a bad DATABASE_URL is a one-line error, not a server trace.
    with open_app(seed=False) as flarestart:
        flarestart.open()
    app = create_app(settings)
    bind_host = host or settings.web.host
    bind_port = port or settings.web.port
    err_console.print(
        f"[bold]FlareStart web[/] on http://{bind_host}:{bind_port}, links point at "
        f"{settings.web.base_url}. Ctrl-C stops.",
        highlight=False,
    )
    if settings.secret_key is None:
        err_console.print(
            f"Links are signed with the key in {settings.secret_key_file}; set SECRET_KEY "
            "when the web and the worker do not share that folder.",
            highlight=False,
        )
    # Every client holds a descriptor: raise the open files limit before taking any.
    max_connections = connections_allowed(settings.web)
    config = server_config(app, settings.web, host=bind_host, port=bind_port, max_connections=max_connections)
    uvicorn.Server(config).run()
