"""The web app as mail providers and readers meet it: uvicorn on loopback, a real migrated store."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from bot.cli import web as web_cli
from bot.cli.common import state
from bot.config import Settings
from bot.links.tokens import _PAYLOAD, _encode, _sign, make_token
from bot.store.engine import make_engine
from bot.store.models import Subscriber
from bot.web.app import MAX_BODY_BYTES, create_app, mask_email
from bot.web.server import GuardedH11Protocol
from tests.web.conftest import SECRET, Web, assert_page, running

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


# -- unsubscribe --------------------------------------------------------------------------------


def test_get_shows_a_button_and_never_unsubscribes(web: Web) -> None:
    subscriber = web.add(email="ada.lovelace@example.com")

    for _ in range(3):  # a link scanner, a preview, the reader
        response = web.client.get(f"/u/{web.token('unsubscribe', subscriber)}")

    assert_page(response, 200, "Unsubscribe from FlareStart?", "a***@example.com", '<form method="post">')
    assert "<button" in response.text and "ada.lovelace" not in response.text
    assert web.get(subscriber).status == "active"


def test_one_click_post_unsubscribes_with_200_and_no_redirect(web: Web) -> None:
    subscriber = web.add()
    url = f"/u/{web.token('unsubscribe', subscriber)}"

    response = web.client.post(url, data=ONE_CLICK)

    assert_page(response, 200, "You're unsubscribed", "a***@example.com")
    assert "location" not in response.headers
    after = web.get(subscriber)
    assert after.status == "unsubscribed" and after.unsubscribed_at is not None


def test_a_second_post_is_200_and_changes_nothing(web: Web) -> None:
    subscriber = web.add()
    url = f"/u/{web.token('unsubscribe', subscriber)}"
    web.client.post(url, data=ONE_CLICK)
    first = web.get(subscriber)

    response = web.client.post(url, data=ONE_CLICK)

    assert_page(response, 200, "You're unsubscribed")
    assert web.get(subscriber).model_dump() == first.model_dump()


def test_the_pages_own_button_unsubscribes(web: Web) -> None:
    subscriber = web.add(status="paused")
    url = f"/u/{web.token('unsubscribe', subscriber)}"
    page = web.client.get(url).text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))

    response = web.client.post(url, data=fields)

    assert fields["List-Unsubscribe"] == "One-Click"
    assert_page(response, 200, "You're unsubscribed")
    assert web.get(subscriber).status == "unsubscribed"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", None),
        (
            b'--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            b"One-Click\r\n--XyZ--\r\n",
            "multipart/form-data; boundary=XyZ",
        ),
    ],
    ids=["empty", "multipart as in RFC 8058"],
)
def test_empty_and_multipart_posts_unsubscribe_too(
    web: Web, content: bytes, content_type: str | None
) -> None:
    subscriber = web.add(status="pending")
    headers = {"content-type": content_type} if content_type else {}

    response = web.client.post(f"/u/{web.token('unsubscribe', subscriber)}", content=content, headers=headers)

    assert_page(response, 200, "You're unsubscribed")
    assert web.get(subscriber).status == "unsubscribed"


def test_get_after_unsubscribing_says_so_without_a_button(web: Web) -> None:
    subscriber = web.add(status="unsubscribed")

    response = web.client.get(f"/u/{web.token('unsubscribe', subscriber)}")

    assert_page(response, 200, "You're unsubscribed")
    assert "<button" not in response.text


def test_the_unsubscribe_is_logged_with_the_subscriber(web: Web, caplog: pytest.LogCaptureFixture) -> None:
    subscriber = web.add()
    caplog.set_level(logging.INFO, logger="bot.web")

    web.client.post(f"/u/{web.token('unsubscribe', subscriber)}", data=ONE_CLICK)

    records = [r for r in caplog.records if r.getMessage() == "unsubscribed"]
    assert [(r.subscriber, r.via, r.previous) for r in records] == [(subscriber, "one-click", "active")]  # type: ignore[attr-defined]


# -- refused links ------------------------------------------------------------------------------


def test_forged_tokens_get_400_and_change_nothing(web: Web) -> None:
    subscriber = web.add(status="pending")
    real = web.token("unsubscribe", subscriber)
    forged = make_token(b"not-our-secret-at-all-0123456789", purpose="unsubscribe", subscriber_id=subscriber)
    before = web.get(subscriber).model_dump()

    responses = [
        web.client.get(f"/u/{forged}"),
        web.client.post(f"/u/{forged}", data=ONE_CLICK),
        web.client.post(f"/u/{real[:-2]}", data=ONE_CLICK),
        web.client.post("/u/not-a-token", data=ONE_CLICK),
        web.client.get(f"/confirm/{make_token(b'x' * 32, purpose='confirm', subscriber_id=subscriber)}"),
    ]

    for response in responses:
        assert_page(response, 400, "This link does not work", "Nothing was changed")
    assert web.get(subscriber).model_dump() == before


def test_a_token_older_than_its_subscriber_is_stale(web: Web) -> None:
    """SQLite may give a deleted subscriber's id to the next one: old links must not reach them."""
    subscriber = web.add()
    older = web.token("unsubscribe", subscriber, issued_at=datetime.now(UTC) - timedelta(days=1))

    response = web.client.post(f"/u/{older}", data=ONE_CLICK)

    assert_page(response, 400, "This link does not work")
    assert web.get(subscriber).status == "active"


def test_an_unknown_subscriber_gets_a_404_page(web: Web) -> None:
    token = web.token("unsubscribe", 987_654)

    assert_page(web.client.get(f"/u/{token}"), 404, "Subscription not found")
    assert_page(web.client.post(f"/u/{token}", data=ONE_CLICK), 404, "Subscription not found")


def test_a_signed_link_for_an_impossible_subscriber_id_is_a_400_not_a_500(web: Web) -> None:
    for impossible in (2**31, 2**64 - 1):
        payload = _PAYLOAD.pack(1, 1, impossible, int(datetime.now(UTC).timestamp()))
        token = f"{_encode(payload)}.{_encode(_sign(SECRET.encode(), payload))}"
        assert_page(web.client.get(f"/u/{token}"), 400, "This link does not work")
        assert_page(web.client.post(f"/u/{token}", data=ONE_CLICK), 400, "This link does not work")
    largest = web.token("unsubscribe", 2**31 - 1)
    assert_page(web.client.get(f"/u/{largest}"), 404, "Subscription not found")


def test_a_trailing_slash_redirects_to_the_configured_base_url_never_to_the_host_header(
    web: Web, web_settings: Settings
) -> None:
    subscriber = web.add()
    token = web.token("unsubscribe", subscriber)
    foreign = {"Host": "evil.example"}

    page = web.client.get(f"/u/{token}/", headers=foreign)
    post = web.client.post(f"/p/{web.token('preferences', subscriber)}/?x=1", headers=foreign)
    nothing = web.client.get("/nothing/here/", headers=foreign)

    base = web_settings.web.base_url.rstrip("/")
    assert page.status_code == 307 and page.headers["location"] == f"{base}/u/{token}"
    assert post.status_code == 307 and post.headers["location"].startswith(f"{base}/p/")
    assert post.headers["location"].endswith("?x=1") and "evil.example" not in post.headers["location"]
    assert_page(nothing, 404, "Page not found")
    assert web.get(subscriber).status == "active"


def test_an_oversized_body_is_refused_with_413(web: Web) -> None:
    subscriber = web.add()
    url = f"/u/{web.token('unsubscribe', subscriber)}"

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"List-Unsubscribe=One-Click&" + b"x" * 1000

    declared = web.client.post(url, content=b"x" * (MAX_BODY_BYTES + 1))
    streamed = web.client.post(url, content=chunks())  # chunked: no Content-Length to go by

    assert_page(declared, 413, "Request too large")
    assert_page(streamed, 413, "Request too large")
    assert web.get(subscriber).status == "active"


# -- confirm ------------------------------------------------------------------------------------


def test_get_and_head_on_a_confirm_link_show_a_button_and_confirm_nothing(web: Web) -> None:
    """Mail scanners prefetch links: only the reader's press of the button may confirm."""
    subscriber = web.add(status="pending", email="ada.lovelace@example.com")
    url = f"/confirm/{web.token('confirm', subscriber)}"

    heads = [web.client.head(url) for _ in range(2)]
    pages = [web.client.get(url) for _ in range(2)]

    assert [head.status_code for head in heads] == [200, 200]
    assert_page(pages[-1], 200, "Confirm your subscription", "a***@example.com", '<form method="post">')
    assert "<button" in pages[-1].text and "ada.lovelace" not in pages[-1].text
    pending = web.get(subscriber)
    assert pending.status == "pending" and pending.confirmed_at is None


def test_posting_the_confirm_page_makes_a_pending_subscriber_active_once(web: Web) -> None:
    subscriber = web.add(status="pending")
    url = f"/confirm/{web.token('confirm', subscriber)}"
    page = web.client.get(url).text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page))

    first = web.client.post(url, data=fields)
    confirmed = web.get(subscriber)
    again = web.client.post(url, data=fields)
    later_get = web.client.get(url)

    assert first.status_code == 303  # straight on to the preferences page
    assert first.headers["location"].startswith("/p/") and first.headers["location"].endswith(
        "?done=confirmed"
    )
    assert_page(web.client.get(first.headers["location"]), 200, "Confirmed: you&#39;re subscribed")
    assert confirmed.status == "active" and confirmed.confirmed_at is not None
    assert_page(again, 200, "Already confirmed")
    assert_page(later_get, 200, "Already confirmed")
    assert "<button" not in later_get.text
    assert web.get(subscriber).model_dump() == confirmed.model_dump()


def test_confirm_leaves_an_unsubscribed_subscriber_unsubscribed(web: Web) -> None:
    subscriber = web.add(status="unsubscribed")

    url = f"/confirm/{web.token('confirm', subscriber)}"

    for response in (web.client.get(url), web.client.post(url)):
        assert_page(response, 200, "This address is unsubscribed", "does not restart it")
        assert "<button" not in response.text
    assert web.get(subscriber).status == "unsubscribed"


def test_an_expired_confirm_token_is_refused(web: Web) -> None:
    signed_up = datetime.now(UTC) - timedelta(days=9)
    subscriber = web.add(status="pending", now=signed_up)
    token = web.token("confirm", subscriber, issued_at=signed_up + timedelta(days=1))

    for response in (web.client.get(f"/confirm/{token}"), web.client.post(f"/confirm/{token}")):
        assert_page(response, 400, "This link has expired")
    assert web.get(subscriber).status == "pending"


def test_an_unsubscribe_token_does_not_confirm(web: Web) -> None:
    subscriber = web.add(status="pending")

    response = web.client.post(f"/confirm/{web.token('unsubscribe', subscriber)}")

    assert_page(response, 400, "This link does not work")
    assert web.get(subscriber).status == "pending"


# -- health, headers, escaping ------------------------------------------------------------------


def test_healthz_reports_the_database(web: Web) -> None:
    response = web.client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_healthz_is_503_when_the_database_does_not_answer(web: Web) -> None:
    store = web.app.state.store
    working, store.engine = store.engine, make_engine("postgresql://nobody@127.0.0.1:1/none")
    try:
        response = web.client.get("/healthz")
    finally:
        store.engine.dispose()
        store.engine = working

    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "error"}


def test_every_response_carries_the_security_headers(web: Web) -> None:
    subscriber = web.add()
    responses = [
        web.client.get(f"/u/{web.token('unsubscribe', subscriber)}"),
        web.client.get("/u/forged.token"),
        web.client.get("/healthz"),
        web.client.get("/nowhere"),
        web.client.put(f"/u/{web.token('unsubscribe', subscriber)}"),
    ]

    assert [r.status_code for r in responses] == [200, 400, 200, 404, 405]
    assert set(responses[-1].headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    for response in responses:
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "script" not in policy and "unsafe" not in policy


def test_the_inline_style_is_the_one_the_policy_allows(web: Web) -> None:
    response = web.client.get(f"/u/{web.token('unsubscribe', web.add())}")

    style = re.search(r"<style>(.*?)</style>", response.text, re.DOTALL)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in response.headers["content-security-policy"]
    assert "<script" not in response.text and "http" not in response.text  # no external assets


def test_hostile_names_and_addresses_are_escaped(web: Web) -> None:
    subscriber = web.add(
        name='<script>alert("name")</script>', email="x@<img src=x onerror=alert(1)>.example"
    )

    response = web.client.get(f"/u/{web.token('unsubscribe', subscriber)}")

    assert_page(response, 200, "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;", "&lt;img src=x")
    assert "<script" not in response.text and "<img" not in response.text


def test_a_failure_inside_is_a_plain_500_page_with_the_headers(
    settings: Settings, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def get(self, ref: str | int, /) -> Subscriber:
            raise RuntimeError("the disk is on fire")

        def set_status(
            self, subscriber_id: int, status: str, /, *, now: datetime, expect: Collection[str] | None = None
        ) -> Subscriber:
            raise AssertionError("must not be reached")

        def update(self, subscriber_id: int, *, now: datetime | None = None, **values: Any) -> Subscriber:
            raise AssertionError("must not be reached")

    configured = settings.model_copy(update={"database_url": database_url, "secret_key": SECRET})
    app = create_app(configured, store_factory=lambda engine: Broken())
    caplog.set_level(logging.CRITICAL, logger="uvicorn.error")  # the traceback is expected
    with running(app) as url:
        response = httpx.post(f"{url}/u/{Web.token('unsubscribe', 1)}", data=ONE_CLICK)

    assert_page(response, 500, "Something went wrong", "nothing was changed")
    assert "fire" not in response.text
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    ("email", "shown"),
    [("ada@example.com", "a***@example.com"), ("no-at-sign", "***"), (None, None), ("@x.org", "***")],
)
def test_addresses_are_masked(email: str | None, shown: str | None) -> None:
    assert mask_email(email) == shown


# -- the command --------------------------------------------------------------------------------


def test_serve_runs_uvicorn_with_the_app_and_its_client_limits(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs: list[uvicorn.Config] = []
    limited = settings.model_copy(
        update={"web": settings.web.model_copy(update={"keepalive_timeout": 3, "header_timeout": 2.5})}
    )
    monkeypatch.setattr(state, "settings", limited)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: configs.append(self.config))

    web_cli.serve()
    web_cli.serve(host="0.0.0.0", port=9123)

    assert [(c.host, c.port) for c in configs] == [("127.0.0.1", 8000), ("0.0.0.0", 9123)]
    config = configs[0]
    assert isinstance(config.app, Starlette) and config.access_log is False
    assert isinstance(config.http, type) and issubclass(config.http, GuardedH11Protocol)
    assert config.http.limits.header_timeout == 2.5 and config.timeout_keep_alive == 3
