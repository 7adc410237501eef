"""The public pages over HTTP: sign-up (CSRF, honeypot, rate limits, no enumeration), the opt-in
mail arriving at a real SMTP server, "view in browser" and the archive."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.delivery.ledger import DeliveryLedger
from bot.links.tokens import UNSUBSCRIBE_PATH, make_token, make_view_token
from bot.sources.types import ParsedEntry
from bot.store import NewSource, Store
from bot.store.subscribers import SubscriberStore
from bot.store.suppressions import SuppressionStore
from bot.types import TopicMatch
from bot.web.app import create_app
from tests.channels.smtp_server import SmtpServer
from tests.web.conftest import SECRET, Web, assert_page, running

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


@dataclass
class Public:
    client: httpx.Client
    url: str
    store: Store
    subscribers: SubscriberStore
    smtp: SmtpServer

    def form(self, **fields: Any) -> dict[str, Any]:
        """The sign-up page's own fields (with its CSRF token), and `fields` over them."""
        page = self.client.get("/subscribe")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        return {"csrf": token.group(1), "topics": ["python"], "delivery_time": "07:30"} | fields

    def mails(self, count: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.smtp.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return [m.message() for m in self.smtp.messages]


def public_app(settings: Settings, smtp: SmtpServer, **web: Any) -> Any:
    """The app with its mail at the test's SMTP server. No `flarestart run` here: `serve`'s own
    stand-in sends the sign-up mails at once (the test's clock stands still, so a wait would never end)."""
    updated = settings.model_copy(
        update={
            "email": settings.email.model_copy(update={"smtp_url": smtp.url(), "allow_plain": True}),
            "web": settings.web.model_copy(update={"signup_mail_wait": 0.0, **web}),
        }
    )
    return create_app(updated, clock=lambda: NOW)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def public(web_settings: Settings, smtp: SmtpServer) -> Iterator[Public]:
    app = public_app(web_settings, smtp, embed_origins=["https://blog.example.org"], signups_per_ip_hour=8)
    with running(app) as url, httpx.Client(base_url=url, follow_redirects=False, timeout=10) as client:
        store = app.state.store
        yield Public(client, url, store, SubscriberStore(store.engine), smtp)


def confirm_link(message: Any) -> str:
    text = message.get_body(("plain",)).get_content()
    found = re.search(r"https?://\S+/confirm/[A-Za-z0-9_.-]+", text)
    assert found is not None, text
    return "/confirm/" + found.group(0).rsplit("/confirm/", 1)[1]


# -- the page ------------------------------------------------------------------------------------


def test_the_subscribe_page_has_the_brand_the_fields_and_preselected_topics(public: Public) -> None:
    for path in ("/", "/subscribe"):
        page = public.client.get(path)

        assert_page(page, 200, "Where developers start their day", 'name="email"', 'name="timezone"')
        assert re.search(r'value="programming" checked', page.text)
        assert 'name="delivery_time" value="07:00"' in page.text
        if path == "/":  # the first page sets the cookie its forms' tokens are bound to
            cookie = page.headers["set-cookie"]
            assert "flarestart_csrf=" in cookie and "SameSite=Strict" in cookie and "HttpOnly" in cookie
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        # No third-party requests: every src and stylesheet is our own.
        assert not re.search(r'(src|href)="https?://', page.text.replace('href="/', ""))


def test_the_script_is_served_and_no_other_page_allows_scripts(public: Public) -> None:
    script = public.client.get("/assets/flarestart.js")
    archive = public.client.get("/archive")

    assert script.status_code == 200 and "resolvedOptions().timeZone" in script.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert "script-src" not in archive.headers["content-security-policy"]
    assert public.client.get("/healthz").json() == {"status": "ok", "database": "ok"}


# -- signing up ----------------------------------------------------------------------------------


def test_a_new_address_becomes_pending_and_gets_the_confirmation_mail(public: Public) -> None:
    response = public.client.post(
        "/subscribe", data=public.form(email="Ada@Example.com", timezone="Europe/Berlin")
    )

    assert_page(response, 200, "Check your inbox")
    row = public.subscribers.get("ada@example.com")
    assert (row.status, row.origin, row.timezone, row.delivery_time) == (
        "pending",
        "web",
        "Europe/Berlin",
        "07:30",
    )
    assert list(row.topics) == ["python"]
    [mail] = public.mails(1)
    assert mail["To"].addresses[0].addr_spec == "ada@example.com"
    confirm = public.client.post(confirm_link(mail))
    assert confirm.status_code == 303 and "/p/" in confirm.headers["location"]
    assert public.subscribers.get("ada@example.com").status == "active"


def test_a_known_address_gets_the_same_page_and_a_mail_not_a_change(public: Public) -> None:
    public.subscribers.add({"email": "grace@example.com", "topics": {"rust": 1.0}}, status="active")

    known = public.client.post("/subscribe", data=public.form(email="grace@example.com"))
    new = public.client.post("/subscribe", data=public.form(email="linus@example.com"))

    assert_page(known, 200, "Check your inbox")
    assert known.text == new.text  # nothing tells a known address from a new one
    row = public.subscribers.get("grace@example.com")
    assert row.status == "active" and dict(row.topics) == {"rust": 1.0}
    mails = {m["To"].addresses[0].addr_spec: m for m in public.mails(2)}
    assert sorted(mails) == ["grace@example.com", "linus@example.com"]
    # Grace's link leads to her own page; it changes nothing.
    page = public.client.get(confirm_link(mails["grace@example.com"]))
    assert_page(page, 200, "Already confirmed", "Choose your topics and time", 'href="/p/')


def test_signing_up_again_after_unsubscribing_goes_through_the_opt_in(public: Public) -> None:
    row = public.subscribers.add({"email": "ken@example.com"}, status="unsubscribed")
    assert row.id is not None

    response = public.client.post("/subscribe", data=public.form(email="ken@example.com", topics=["go"]))

    assert_page(response, 200, "Check your inbox")
    again = public.subscribers.get(row.id)
    assert again.status == "pending" and list(again.topics) == ["go"]
    [mail] = public.mails(1)
    public.client.post(confirm_link(mail))
    assert public.subscribers.get(row.id).status == "active"


def test_an_unsubscribed_reader_who_signs_up_and_confirms_is_suppressed_no_more(public: Public) -> None:
    # The unsubscribe is kept by address (issue 14); the sign-up form's double opt-in is the way
    # back, so confirming lifts it, or the reader would be active and never mailed.
    row = public.subscribers.add({"email": "mary@example.com"}, status="active")
    assert row.id is not None
    token = make_token(SECRET.encode(), purpose="unsubscribe", subscriber_id=row.id)
    assert public.client.post(UNSUBSCRIBE_PATH.format(token=token)).status_code == 200
    suppressions = SuppressionStore(public.store.engine)
    assert suppressions.get("mary@example.com") is not None

    public.client.post("/subscribe", data=public.form(email="mary@example.com"))
    [mail] = public.mails(1)
    assert suppressions.get("mary@example.com") is not None  # signing up alone lifts nothing
    public.client.post(confirm_link(mail))

    assert public.subscribers.get(row.id).status == "active"
    assert suppressions.get("mary@example.com") is None


def test_a_form_without_its_csrf_token_or_from_another_site_is_refused(public: Public) -> None:
    fields = public.form(email="eve@example.com")
    no_token = public.client.post("/subscribe", data={**fields, "csrf": ""})
    forged = public.client.post("/subscribe", data={**fields, "csrf": "1700000000.AAAA"})
    foreign = public.client.post("/subscribe", data=fields, headers={"Origin": "https://evil.example"})

    for response in (no_token, forged, foreign):
        assert_page(response, 403, "This form had expired")
    assert public.subscribers.list() == []


def test_a_withheld_origin_needs_the_token_like_no_origin(public: Public) -> None:
    # Chromium sends "Origin: null" for a form on a page with Referrer-Policy: no-referrer.
    null = {"Origin": "null"}
    with_token = public.client.post("/subscribe", data=public.form(email="ada@example.com"), headers=null)
    without = public.client.post(
        "/subscribe", data={**public.form(email="eve@example.com"), "csrf": ""}, headers=null
    )

    assert_page(with_token, 200, "Check your inbox")
    assert_page(without, 403, "This form had expired")
    assert [s.email for s in public.subscribers.list()] == ["ada@example.com"]


def test_an_embedded_form_posts_from_a_listed_site_with_cors(public: Public) -> None:
    origin = {"Origin": "https://blog.example.org"}
    bare = httpx.Client(base_url=public.url, timeout=10)  # no cookie: a page of the blog

    preflight = bare.options("/subscribe", headers={**origin, "Access-Control-Request-Method": "POST"})
    response = bare.post("/subscribe", data={"email": "reader@example.com"}, headers=origin)
    stranger = bare.options("/subscribe", headers={"Origin": "https://other.example"})

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://blog.example.org"
    assert_page(response, 200, "Check your inbox")
    assert response.headers["access-control-allow-origin"] == "https://blog.example.org"
    assert public.subscribers.get("reader@example.com").status == "pending"
    assert stranger.status_code == 403


def test_the_honeypot_answers_like_a_success_and_does_nothing(public: Public) -> None:
    response = public.client.post(
        "/subscribe", data=public.form(email="bot@example.com", website="http://spam")
    )

    assert_page(response, 200, "Check your inbox")
    assert public.subscribers.list() == []
    time.sleep(0.3)
    assert public.smtp.messages == []


def test_bad_input_says_what_and_where_and_stores_nothing(public: Public) -> None:
    response = public.client.post(
        "/subscribe", data=public.form(email="not-an-address", timezone="Mars/Olympus", topics=["nope"])
    )

    assert_page(response, 400, "Nothing was sent", "Enter an email address", "Mars/Olympus", "nope")
    assert 'aria-invalid="true"' in response.text
    assert public.subscribers.list() == []


def test_the_per_client_rate_limit_answers_429_with_retry_after(public: Public) -> None:
    statuses = [
        public.client.post("/subscribe", data=public.form(email=f"r{n}@example.com")).status_code
        for n in range(9)
    ]

    assert statuses[:8] == [200] * 8
    assert statuses[8] == 429


def test_the_per_address_limit_stops_the_mails_not_the_page(web_settings: Settings, smtp: SmtpServer) -> None:
    app = public_app(web_settings, smtp, signups_per_address_day=2)
    with running(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        public = Public(client, url, app.state.store, SubscriberStore(app.state.store.engine), smtp)
        pages = [
            public.client.post("/subscribe", data=public.form(email="ada@example.com")) for _ in range(4)
        ]
        public.mails(2)
        time.sleep(0.3)

    assert [p.status_code for p in pages] == [200] * 4
    assert len(smtp.messages) == 2


# -- digests on the web --------------------------------------------------------------------------


def entry(key: str, title: str, topics: tuple[str, ...], published: datetime) -> ParsedEntry:
    return ParsedEntry(
        key=key,
        guid=key,
        url=f"https://news.example/{key}",
        title=title,
        excerpt=f"About {title}.",
        author=None,
        published=published,
        tags=(),
        content_hash=key,
        topics=tuple(TopicMatch(t, 0.9, (t,)) for t in topics),
    )


def seed_articles(store: Store) -> list[int]:
    source = store.add_source(NewSource("Dev Daily", "https://news.example/feed")).id
    other = store.add_source(NewSource("Tutorials Hub", "https://tutorials.example/feed")).id
    assert source and other
    store.save_entries(
        source,
        [
            entry("n1", "Kotlin 3 ships today", ("programming", "kotlin", "news"), NOW - timedelta(hours=3)),
            entry("n2", "New AI model tops charts", ("ai", "news"), NOW - timedelta(hours=5)),
            entry("y1", "Yesterday's web story", ("web-development", "news"), NOW - timedelta(hours=20)),
        ],
        now=NOW,
    )
    store.save_entries(
        other,
        [
            entry(
                "h1",
                "How to profile Python code",
                ("programming", "python", "how-to"),
                NOW - timedelta(hours=2),
            )
        ],
        now=NOW,
    )
    return [article.id for article, _ in store.list_articles()]


def test_view_in_browser_shows_the_digest_as_sent_in_its_order(public: Public) -> None:
    ids = seed_articles(public.store)
    row = public.subscribers.add({"email": "ada@example.com"}, status="active")
    assert row.id is not None
    ledger = DeliveryLedger(public.store.engine)
    sent_order = [ids[2], ids[0], ids[1]]
    delivery = ledger.begin(row.id, "2026-11-27", "email", now=NOW)
    ledger.mark_sent(delivery.id, message_id="<m@example.com>", article_ids=sent_order, now=NOW)
    titles = {article.id: article.title for article, _ in public.store.list_articles()}

    page = public.client.get(
        f"/d/{make_view_token(SECRET.encode(), subscriber_id=row.id, period='2026-11-27')}"
    )
    unsent = public.client.get(
        f"/d/{make_view_token(SECRET.encode(), subscriber_id=row.id, period='2026-11-26')}"
    )
    forged = public.client.get(
        f"/d/{make_view_token(b'another-key-entirely', subscriber_id=row.id, period='2026-11-27')}"
    )

    assert_page(page, 200, "a***@example.com")
    positions = [page.text.index(titles[i].replace("'", "&#39;")) for i in sent_order]
    assert positions == sorted(positions)
    assert_page(unsent, 404, "Digest not found")
    assert_page(forged, 400, "This link does not work")


def test_the_archive_shows_the_newest_day_with_filters_and_a_feed(public: Public) -> None:
    seed_articles(public.store)

    home = public.client.get("/archive")
    howto = public.client.get("/archive?filter=how-to")
    news = public.client.get("/archive?filter=news")
    yesterday = public.client.get("/archive/2026-11-26")
    too_old = public.client.get("/archive/2025-01-01")
    feed = public.client.get("/archive.atom")

    assert_page(home, 200, "FlareStart daily", "Kotlin 3 ships today", "How to profile Python code")
    assert "Yesterday&#39;s web story" not in home.text  # one page per day
    assert "How to profile" in howto.text and "Kotlin 3 ships today" not in howto.text
    assert "Kotlin 3 ships today" in news.text and "How to profile" not in news.text
    assert_page(yesterday, 200, "Yesterday&#39;s web story")
    assert_page(too_old, 404, "Not in the archive")
    assert feed.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(feed.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    ids = [e.findtext("a:id", namespaces=ns) for e in root.findall("a:entry", ns)]
    assert ids == ["http://localhost:8000/archive/2026-11-27", "http://localhost:8000/archive/2026-11-26"]


def test_the_signed_forms_refuse_a_page_of_another_site(public: Public) -> None:
    row = public.subscribers.add({"email": "ada@example.com"}, status="pending")
    assert row.id is not None
    evil = {"Origin": "https://evil.example"}

    confirm = public.client.post(f"/confirm/{Web.token('confirm', row.id)}", headers=evil)
    save = public.client.post(
        f"/p/{Web.token('preferences', row.id)}", data={"action": "save", "topics": "go"}, headers=evil
    )
    own = public.client.post(f"/confirm/{Web.token('confirm', row.id)}", headers={"Origin": public.url})

    assert_page(confirm, 403, "only be sent from FlareStart")
    assert_page(save, 403, "only be sent from FlareStart")
    assert own.status_code == 303  # the page's own form
    assert public.subscribers.get(row.id).status == "active"


def test_hostile_feed_text_reaches_the_archive_escaped_and_without_unsafe_links(public: Public) -> None:
    source = public.store.add_source(NewSource("Evil <b>Feed</b>", "https://evil.example/feed")).id
    assert source
    title = '<script>alert(1)</script> "Zig 1.0"'
    hostile = replace(
        entry("x1", title, ("programming", "news"), NOW - timedelta(hours=1)), url="javascript:alert(2)"
    )
    public.store.save_entries(source, [hostile], now=NOW)

    page = public.client.get("/archive")
    feed = public.client.get("/archive.atom")

    assert_page(page, 200, "&lt;script&gt;alert(1)&lt;/script&gt;", "Evil &lt;b&gt;Feed&lt;/b&gt;")
    assert "<script>" not in page.text and "javascript:" not in page.text
    assert "<script>" not in feed.text and "javascript:" not in feed.text
