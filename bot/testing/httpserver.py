"""A small loopback HTTP server that behaves like the feed hosts of the internet.

Used by the tests (ETag/304, redirects, 410, 429, hangs, endless bodies), by the benchmarks (a
corpus folder served with validators, in its own process) and by `flarestart demo`. It binds to
127.0.0.1 only.

    with FixtureServer() as server:
        server.add("/feed.xml", static(b"<rss>…</rss>", "application/rss+xml"))
        server.url("/feed.xml")
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bot.testing.served import ServedInThread


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    client: tuple[str, int] = ("", 0)  # the peer's (address, port): one port per connection

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before sending anything (a slow or hanging host)
    chunk_delay: float = 0.0  # seconds between body chunks (a trickling host)


Route = Response | Callable[[Request], Response]


def static(
    body: bytes,
    content_type: str = "application/xml",
    *,
    etag: bool = True,
    last_modified: float | None = 1_700_000_000.0,
    headers: dict[str, str] | None = None,
    compress: bool = False,
) -> Callable[[Request], Response]:
    """A document with validators that answers conditional GETs with 304 like a real server."""
    tag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"' if etag else None
    modified = formatdate(last_modified, usegmt=True) if last_modified is not None else None
    gzipped = gzip.compress(body, 5) if compress else None

    def handle(request: Request) -> Response:
        base = {"Content-Type": content_type, **(headers or {})}
        if tag:
            base["ETag"] = tag
        if modified:
            base["Last-Modified"] = modified
        if tag and request.header("if-none-match") == tag:
            return Response(304, b"", base)
        since = request.header("if-modified-since")
        if not tag and modified and since and last_modified is not None:
            try:
                if parsedate_to_datetime(since).timestamp() >= int(last_modified):
                    return Response(304, b"", base)
            except (TypeError, ValueError):
                pass
        if gzipped is not None and "gzip" in (request.header("accept-encoding") or ""):
            return Response(200, gzipped, {**base, "Content-Encoding": "gzip"})
        return Response(200, body, base)

    return handle


def redirect(location: str, status: int = 301) -> Response:
    return Response(status, b"", {"Location": location})


def endless(chunk: bytes = b"<item>" + b"x" * 65_536 + b"</item>") -> Iterator[bytes]:
    """A body that never ends, for size-cap tests."""
    yield b'<?xml version="1.0"?><rss version="2.0"><channel>'
    while True:
        yield chunk


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up early (size caps, timeouts) are part of the script, not errors.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FixtureServer(ServedInThread):
    _server: _QuietHTTPServer

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = _QuietHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: str, route: Route) -> str:
        """Serve `route` at `path` and return its absolute URL."""
        self.routes[path] = route
        return self.url(path)

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _respond(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(request)
        route = self.routes.get(request.path) or self.routes.get(request.path.split("?", 1)[0])
        if route is None:
            return Response(404, b"not found", {"Content-Type": "text/plain"})
        return route(request) if callable(route) else route

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                request = Request(
                    "GET",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    (str(self.client_address[0]), int(self.client_address[1])),
                )
                response = server._respond(request)
                try:
                    self._send(response)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_HEAD = do_GET

            def _send(self, response: Response) -> None:
                if response.delay:
                    time.sleep(response.delay)
                self.send_response(response.status)
                for name, value in response.headers.items():
                    self.send_header(name, value)
                body = response.body
                if isinstance(body, bytes | bytearray):
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in body:
                    if response.chunk_delay:
                        time.sleep(response.chunk_delay)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")

        return Handler


CONTENT_TYPES = {".json": "application/feed+json", ".html": "text/html; charset=utf-8"}


def serve_directory(server: FixtureServer, folder: Path, *, compress: bool = False) -> list[str]:
    """Serve every file of `folder` at /<name> with ETag and Last-Modified; return the URLs."""
    urls = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        body = path.read_bytes()
        kind = CONTENT_TYPES.get(path.suffix, "application/xml")
        if body.lstrip()[:1] in (b"{", b"["):
            kind = "application/feed+json"
        urls.append(
            server.add(
                "/" + path.name,
                static(body, kind, last_modified=path.stat().st_mtime, compress=compress),
            )
        )
    return urls


def main() -> None:
    """`python -m bot.testing.httpserver DIR`: serve a feed folder on loopback until killed."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--gzip", action="store_true", help="compress bodies when asked")
    args = parser.parse_args()
    server = FixtureServer(port=args.port)
    urls = serve_directory(server, args.folder, compress=args.gzip)
    # The first line tells a parent process where we listen; then one URL a line.
    print(server.base_url, flush=True)
    print("\n".join(urls), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server._server.serve_forever()


if __name__ == "__main__":
    main()
