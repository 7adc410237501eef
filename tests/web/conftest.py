"""The web app on loopback (uvicorn, a real migrated store) and what its tests share."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from bot.config import Settings, WebSettings
from bot.links.tokens import Purpose, make_token
from bot.store.models import Subscriber
from bot.store.subscribers import SubscriberStore
from bot.web.app import create_app
from bot.web.server import server_config

SECRET = "a-test-secret-key-for-signed-links"


@contextmanager
def running(app: Starlette, web: WebSettings | None = None) -> Iterator[str]:
    """Serve `app` on a free loopback port in a background thread, configured as `flarestart
    serve` configures uvicorn (with `web`'s limits); yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = server_config(app, web or WebSettings(), host="127.0.0.1", port=port, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the web app did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@dataclass
class Web:
    app: Starlette
    client: httpx.Client
    subscribers: SubscriberStore

    def add(self, status: str = "active", *, now: datetime | None = None, **fields: Any) -> int:
        fields.setdefault("email", "ada@example.com")
        fields.setdefault("name", "Ada")
        subscriber = self.subscribers.add(fields, status=status, now=now)
        assert subscriber.id is not None
        return subscriber.id

    def get(self, subscriber_id: int) -> Subscriber:
        return self.subscribers.get(subscriber_id)

    @staticmethod
    def token(purpose: Purpose, subscriber_id: int, issued_at: datetime | None = None) -> str:
        return make_token(SECRET.encode(), purpose=purpose, subscriber_id=subscriber_id, issued_at=issued_at)


@pytest.fixture
def web_settings(settings: Settings, database_url: str) -> Settings:
    """The test's settings on the test's database, signing links with SECRET."""
    return settings.model_copy(update={"database_url": database_url, "secret_key": SECRET})


@pytest.fixture
def web(web_settings: Settings) -> Iterator[Web]:
    app = create_app(web_settings)
    with running(app) as url, httpx.Client(base_url=url, follow_redirects=False, timeout=10) as client:
        yield Web(app, client, SubscriberStore(app.state.store.engine))


def assert_page(response: httpx.Response, status: int, *texts: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    for text in texts:
        assert text in response.text
