"""The reader's whole way in a real browser (Debian's headless chromium): sign up, the mail in the
outbox (aiosmtpd), confirm, change topics, unsubscribe; and accessibility checks (labels, contrast,
keyboard only). Screenshots at 1280 and 375 px go to tmp/artifacts/browser/ (not committed)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.store.subscribers import SubscriberStore
from tests.channels.smtp_server import SmtpServer
from tests.web.browser import Browser, missing_browser
from tests.web.conftest import Web, running
from tests.web.test_public import confirm_link, public_app, seed_articles

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=missing_browser() or "")

ARTIFACTS = Path(__file__).resolve().parents[2] / "tmp" / "artifacts" / "browser"
SIZES = {"1280": (1280, 900, False), "375": (375, 812, True)}

UNLABELLED = """
const found = [];
for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  const named = (el.labels && el.labels.length) || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby');
  if (!named) found.push(el.outerHTML.slice(0, 120));
}
return found;
"""

LOW_CONTRAST = """
function parse(c) {
  const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
  const p = m[1].split(',').map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
}
function lum(c) {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
}
function background(el) {
  while (el) { const c = parse(getComputedStyle(el).backgroundColor); if (c && c.a > 0.5) return c; el = el.parentElement; }
  return parse(getComputedStyle(document.documentElement).backgroundColor) || {r: 255, g: 255, b: 255, a: 1};
}
const low = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode; if (!node.textContent.trim()) continue;
  const el = node.parentElement;
  if (el.closest('.hp, .skip, datalist')) continue;
  const rect = el.getBoundingClientRect(); if (rect.width === 0 || rect.height === 0) continue;
  const fg = parse(getComputedStyle(el).color), bg = background(el);
  const a = lum(fg), b = lum(bg);
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) low.push([node.textContent.trim().slice(0, 40), getComputedStyle(el).color, ratio.toFixed(2)]);
}
return low;
"""


class Site:
    def __init__(self, url: str, smtp: SmtpServer, subscribers: SubscriberStore, store: Any) -> None:
        self.url, self.smtp, self.subscribers, self.store = url, smtp, subscribers, store

    def mail(self, count: int, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while len(self.smtp.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.smtp.messages) >= count, "the confirmation mail did not arrive"
        return self.smtp.messages[count - 1].message()


@pytest.fixture
def site(web_settings: Settings) -> Iterator[Site]:
    with SmtpServer() as smtp:
        app = public_app(web_settings, smtp)
        with running(app) as url:
            store = app.state.store
            yield Site(url, smtp, SubscriberStore(store.engine), store)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as browser:
        yield browser


def shoot(browser: Browser, name: str, size: str) -> Path:
    width, height, mobile = SIZES[size]
    browser.viewport(width, height, mobile=mobile)
    assert browser.run("return window.innerWidth;") == width
    # Works at this width: nothing wider than the screen.
    assert browser.run("return document.documentElement.scrollWidth;") <= width
    return browser.screenshot(ARTIFACTS / f"{name}-{size}.png")


def test_sign_up_confirm_change_topics_and_unsubscribe(site: Site, browser: Browser) -> None:
    browser.viewport(1280, 900, mobile=False)
    browser.open(f"{site.url}/subscribe")
    assert browser.run("return document.getElementById('timezone').value;") == "Europe/Berlin"  # guessed
    for size in SIZES:
        assert shoot(browser, "subscribe", size).stat().st_size > 1000
    browser.viewport(1280, 900, mobile=False)
    browser.type("#email", "ada@example.com")
    browser.type("#topic-search", "rust")  # the search narrows the topics
    assert browser.run("return document.querySelector('input[value=\"python\"]').closest('.chip').hidden;")
    browser.click('input[name="topics"][value="rust"]')
    browser.click('button[type="submit"]')
    browser.wait_for("Check your inbox")
    shoot(browser, "sent", "1280")
    row = site.subscribers.get("ada@example.com")
    assert row.status == "pending" and row.timezone == "Europe/Berlin" and "rust" in row.topics

    browser.open(site.url + confirm_link(site.mail(1)))
    browser.wait_for("Confirm your subscription")
    browser.click('button[type="submit"]')
    browser.wait_for("Confirmed")
    assert "/p/" in browser.url
    for size in SIZES:
        shoot(browser, "preferences", size)
    browser.viewport(1280, 900, mobile=False)
    assert site.subscribers.get("ada@example.com").status == "active"

    browser.click('input[name="topics"][value="go"]')
    browser.click('button[name="action"][value="save"]')
    browser.wait_for("Saved")
    assert "go" in site.subscribers.get("ada@example.com").topics

    unsubscribe = browser.run("return document.querySelector('a[href^=\"/u/\"]').getAttribute('href');")
    browser.open(site.url + unsubscribe)
    browser.click('button[type="submit"]')
    browser.wait_for("unsubscribed")
    assert site.subscribers.get("ada@example.com").status == "unsubscribed"


def test_every_input_is_labelled_and_text_has_enough_contrast(site: Site, browser: Browser) -> None:
    seed_articles(site.store)
    browser.viewport(1280, 900, mobile=False)
    row = site.subscribers.add({"email": "grace@example.com"}, status="active")
    assert row.id is not None
    pages = {
        "subscribe": "/subscribe",
        "archive": "/archive",
        "preferences": f"/p/{Web.token('preferences', row.id)}",
    }
    for name, path in pages.items():
        browser.open(site.url + path)
        assert browser.run(UNLABELLED) == [], name
        for dark in (False, True):
            browser.emulate_dark(dark)
            assert browser.run(LOW_CONTRAST) == [], f"{name} ({'dark' if dark else 'light'})"
        browser.emulate_dark(False)
        for size in SIZES:
            shoot(browser, name, size)
        browser.viewport(1280, 900, mobile=False)


def test_keyboard_alone_signs_up(site: Site, browser: Browser) -> None:
    browser.viewport(1280, 900, mobile=False)
    browser.open(f"{site.url}/subscribe")
    focused: list[str] = []

    def tab_to(test: str, limit: int = 250) -> None:
        for _ in range(limit):
            browser.press("tab")
            el = browser.run("const e = document.activeElement; return [e.id, e.name, e.value, e.type];")
            focused.append(str(el))
            if browser.run(f"const e = document.activeElement; return {test};"):
                return
        raise AssertionError(f"Tab never reached {test}")

    tab_to("e.id === 'email'")
    browser.press("kb@example.com")
    tab_to("e.name === 'topics' && e.value === 'rust'")
    browser.press("space")
    tab_to("e.type === 'submit'")
    browser.press("enter")
    browser.wait_for("Check your inbox")

    assert not any("'website'" in entry for entry in focused)  # the honeypot is never in the way
    row = site.subscribers.get("kb@example.com")
    assert row.status == "pending" and "rust" in row.topics
    assert re.search(r"/confirm/", site.mail(1).get_body(("plain",)).get_content())
