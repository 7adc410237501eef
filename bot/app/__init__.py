"""The application layer: what users can do with FlareStart, as one object every door calls.

The CLI, the web app, the daemon and the demo (and the chat fronts next) build one `FlareStart`
from the Settings and call its verbs: add a source, fetch, preview, subscribe a destination, send
a period, retry deliveries. A door keeps what is its own (argument parsing and rendering for the
CLI, HTTP for the web); the wiring of store, ledger, service and channels happens here, once.

Importing this package is cheap (the standard library and the settings' types only): each verb
imports the part of the core it uses, so `flarestart --version` pays for none of it.
"""

from bot.app.core import FlareStart, open_app
from bot.types import Destination

__all__ = ["Destination", "FlareStart", "open_app"]
