"""A socketserver served from a background thread: the lifecycle the loopback stand-ins share
(the feed host, the fake Slack), so a test writes `with FixtureServer() as server:`."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

# A fake's whole HTTP surface: (method, path with query, lower-cased headers, body) → answer.
Answer = tuple[int, dict[str, str], bytes]
Handle = Callable[[str, str, dict[str, str], bytes], Answer]


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


class DropConnection(Exception):
    """Raised by a fake's handler: close the connection without an answer."""


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of new connections (a benchmark's 200
    # channels at once) overflows it and the kernel drops SYNs, which clients resend a second later.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up are part of the script


def dispatching_handler(handle: Handle) -> type[BaseHTTPRequestHandler]:
    """A request handler that hands every request, whatever its method, to `handle`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            try:
                status, extra, payload = handle(self.command, self.path, headers, body)
            except DropConnection:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    return Handler
