"""What the chat adapter tests share: Slack's request signing, done the way Slack does it."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from bot.app import FlareStart
from bot.ranking.types import TopicMatch
from bot.sources.types import ParsedEntry
from bot.store import NewSource

_TRIGGERS = itertools.count(1)
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_772_431_200.0  # 2026-03-02 06:00 UTC, a Monday: the clock every chat test is given


def sign(body: bytes, *, secret: str = SIGNING_SECRET, timestamp: float = NOW) -> dict[str, str]:
    """The headers Slack sends with `body`: v0 HMAC-SHA256 over "v0:{timestamp}:{body}"."""
    stamp = str(int(timestamp))
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def command_form(text: str, *, channel: str, response_url: str = "", user: str = "U0ADA") -> bytes:
    """A slash command's body as Slack posts it (application/x-www-form-urlencoded)."""
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0FAKE",
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "team-news",
            "user_id": user,
            "user_name": "ada",
            "command": "/flarestart",
            "text": text,
            "api_app_id": "A0FAKE",
            "response_url": response_url,
            "trigger_id": f"{next(_TRIGGERS)}.42.abc",  # Slack's differ per command, so bodies do
        }
    ).encode()


def stock_python_story(app: FlareStart, *, title: str = "Python 3.15 released") -> None:
    """One source with one Python story published two hours before NOW."""
    moment = datetime.fromtimestamp(NOW, UTC)
    source = app.add_sources([NewSource("Py Weekly", "https://py.example/feed")])[0].id
    assert source is not None
    entry = ParsedEntry(
        key="a1",
        guid="a1",
        url="https://py.example/a1",
        title=title,
        excerpt="About it.",
        author=None,
        published=moment - timedelta(hours=2),
        content_hash="a1",
        topics=(TopicMatch("python", 0.9, ("python",)),),
    )
    app.store.save_entries(source, [entry], now=moment)
