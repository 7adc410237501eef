"""The application layer: what users can do with FlareStart, as one object every door calls.

The CLI, the web app, the daemon and the demo (and the chat fronts next) build one `FlareStart`
from the Settings and call its verbs: add a source, fetch, preview, subscribe a destination, send
a period, retry deliveries. A door keeps what is its own (argument parsing and rendering for the
CLI, HTTP for the web); the wiring of store, ledger, service and channels happens here, once.

Importing this package is cheap (the standard library and the settings' types only): each verb
imports the part of the core it uses, so `flarestart --version` pays for none of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.app.core import FlareStart, open_app
    from bot.types import Destination

__all__ = ["Destination", "FlareStart", "open_app"]


def __getattr__(name: str) -> Any:
    # Loaded on first use: the CLI imports bot.app.words for every command (even --help), and
    # the core's verbs and types are ~5 ms it does not need there.
    if name in ("FlareStart", "open_app"):
        from bot.app import core

        return getattr(core, name)
    if name == "Destination":
        from bot.types import Destination

        return Destination
    raise AttributeError(f"module 'bot.app' has no attribute {name!r}")
