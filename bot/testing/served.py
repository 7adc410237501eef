"""A socketserver served from a background thread: the lifecycle the loopback stand-ins share
(the feed host, the fake Slack), so a test writes `with FixtureServer() as server:`."""

from __future__ import annotations

import socketserver
import threading
from typing import Self


class ServedInThread:
    """Start, stop and a context manager around `self._server`, set by the subclass."""

    _server: socketserver.BaseServer
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        # A short poll keeps stop() quick: shutdown() waits for the loop's next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
