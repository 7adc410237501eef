"""Subscribing again after an unsubscribe: only through the web, only with double opt-in. The
unsubscribed page's button mails a re-opt-in link (aiosmtpd on loopback), its GET shows a button
and changes nothing, its POST lifts the suppression. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from bot.config import Settings
from bot.store.suppressions import SuppressionStore
from bot.store.types import utcnow
from bot.web.app import create_app
from tests.channels.smtp_server import SmtpServer
from tests.web.conftest import Web, assert_page, running


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def mailing_web(web_settings: Settings, smtp: SmtpServer) -> Iterator[Web]:
    email = web_settings.email.model_copy(update={"smtp_url": smtp.url(), "allow_plain": True})
    app = create_app(web_settings.model_copy(update={"email": email}))
    with running(app) as url, httpx.Client(base_url=url, follow_redirects=False, timeout=10) as client:
        from bot.store.subscribers import SubscriberStore

        yield Web(app, client, SubscriberStore(app.state.store.engine))


def again_link(smtp: SmtpServer) -> str:
    text = smtp.messages[-1].message().get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"https?://\S+(/again/[A-Za-z0-9_.-]+)", text)
    assert found is not None, text
    return found.group(1)


def test_subscribe_again_mails_a_link_and_only_its_post_lifts_the_suppression(
    mailing_web: Web, smtp: SmtpServer
) -> None:
    web = mailing_web
    ada = web.add()
    link = f"/u/{web.token('unsubscribe', ada)}"
    suppressions = SuppressionStore(web.subscribers.engine)

    unsubscribed = web.client.post(link, content=b"List-Unsubscribe=One-Click")
    assert_page(unsubscribed, 200, "You're unsubscribed", "Subscribe again", f'action="{link}/again"')
    assert suppressions.get("ada@example.com") is not None

    asked = web.client.post(f"{link}/again", data={})
    assert_page(asked, 200, "Check your inbox", "a***@example.com")
    assert [m.rcpt_tos for m in smtp.messages] == [["ada@example.com"]]
    again = again_link(smtp)

    pressed_twice = web.client.post(f"{link}/again", data={})  # the button again: no second mail
    assert_page(pressed_twice, 200, "a few minutes ago")
    assert len(smtp.messages) == 1

    for method in ("GET", "HEAD"):  # a mail scanner's prefetch changes nothing
        assert web.client.request(method, again).status_code == 200
    assert_page(web.client.get(again), 200, "Subscribe again?", '<form method="post">')
    assert suppressions.get("ada@example.com") is not None
    assert web.get(ada).status == "unsubscribed"

    confirmed = web.client.post(again, data={"via": "page"})
    assert_page(confirmed, 200, "You're subscribed again")
    assert suppressions.get("ada@example.com") is None
    assert web.get(ada).status == "active"

    assert_page(web.client.post(again, data={}), 200, "Nothing to do")  # idempotent
    assert web.get(ada).status == "active"


def test_a_re_opt_in_link_does_not_lift_a_later_unsubscribe(mailing_web: Web, smtp: SmtpServer) -> None:
    web = mailing_web
    ada = web.add()
    link = f"/u/{web.token('unsubscribe', ada)}"
    suppressions = SuppressionStore(web.subscribers.engine)
    web.client.post(link, content=b"List-Unsubscribe=One-Click")
    web.client.post(f"{link}/again", data={})
    again = again_link(smtp)
    web.client.post(again, data={})
    assert web.get(ada).status == "active"

    # Unsubscribed again a day later (on SQLite the new suppression may reuse the lifted one's id):
    # the old re-opt-in link is spent.
    later = utcnow() + timedelta(days=1)
    suppressions.add("ada@example.com", "unsubscribed", now=later, subscriber_id=ada)
    web.subscribers.set_status(ada, "unsubscribed", now=later)
    assert_page(web.client.get(again), 200, "Nothing to do")
    assert_page(web.client.post(again, data={}), 200, "Nothing to do")
    assert suppressions.get("ada@example.com") is not None and web.get(ada).status == "unsubscribed"


def test_subscribe_again_for_an_address_not_suppressed_sends_nothing(
    mailing_web: Web, smtp: SmtpServer
) -> None:
    web = mailing_web
    ada = web.add()
    asked = web.client.post(f"/u/{web.token('unsubscribe', ada)}/again", data={})
    assert_page(asked, 200, "Nothing to do")
    assert smtp.messages == [] and web.get(ada).status == "active"


def test_forged_and_wrong_purpose_re_opt_in_links_change_nothing(mailing_web: Web) -> None:
    web = mailing_web
    ada = web.add(status="unsubscribed")
    SuppressionStore(web.subscribers.engine).add("ada@example.com", "unsubscribed", now=utcnow())
    for token in (web.token("unsubscribe", 1), web.token("confirm", 1), "x" * 20 + "." + "y" * 22):
        assert web.client.post(f"/again/{token}", data={}).status_code == 400
    assert web.get(ada).status == "unsubscribed"


def test_a_re_opt_in_mail_that_could_not_be_sent_can_be_asked_for_again(
    mailing_web: Web, smtp: SmtpServer
) -> None:
    web = mailing_web
    ada = web.add()
    link = f"/u/{web.token('unsubscribe', ada)}"
    web.client.post(link, content=b"List-Unsubscribe=One-Click")
    smtp.rcpt_replies["ada@example.com"] = "451 4.3.0 try again later"
    failed = web.client.post(f"{link}/again", data={})
    assert_page(failed, 503, "We could not send the mail", "Nothing was changed")
    assert smtp.messages == []

    del smtp.rcpt_replies["ada@example.com"]
    asked = web.client.post(f"{link}/again", data={})  # not "sent a few minutes ago": none was
    assert_page(asked, 200, "Check your inbox")
    assert [m.rcpt_tos for m in smtp.messages] == [["ada@example.com"]]
