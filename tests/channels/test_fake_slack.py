"""The fake Slack refuses what Slack refuses, with Slack's error names, so tests against it mean something."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.testing.fake_slack import FakeSlack, seen

TOKEN = "xoxb-fake-test"
CHANNEL = "C0FAKE"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN, rate_limit=False) as fake:
        fake.add_channel(CHANNEL)
        yield fake


def header(length: int) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": "h" * length}}


def section(length: int) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": "s" * length}}


def rich(length: int) -> dict[str, Any]:
    element = {"type": "text", "text": "r" * length}
    return {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [element]}]}


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"text": "ok", "blocks": [{"type": "divider"}] * 50}, None),
        ({"text": "ok", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        ({"text": "ok", "blocks": [header(150)]}, None),
        ({"text": "ok", "blocks": [header(151)]}, "invalid_blocks"),
        ({"text": "ok", "blocks": [section(3000)]}, None),
        ({"text": "ok", "blocks": [section(3001)]}, "invalid_blocks"),
        ({"text": "ok", "blocks": [{"type": "marquee"}]}, "invalid_blocks"),
        ({"text": "ok", "blocks": [rich(2900)] * 4}, None),
        ({"text": "ok", "blocks": [rich(2900)] * 5}, "msg_blocks_too_long"),
        ({"text": "t" * 40_000}, None),
        ({"text": "t" * 40_001}, "msg_too_long"),
        ({"text": ""}, "no_text"),
        ({"text": "ok", "metadata": {"event_type": "x"}}, "invalid_metadata_format"),
    ],
)
@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")
def test_payloads_over_slacks_limits_are_refused_by_name(
    slack: FakeSlack, arguments: dict[str, Any], error: str | None
) -> None:
    client = WebClient(token=TOKEN, base_url=slack.api_url)
    if error is None:
        assert client.chat_postMessage(channel=CHANNEL, **arguments)["ok"]
        assert len(slack.history(CHANNEL)) == 1
        return
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, **arguments)
    assert raised.value.response["error"] == error
    assert slack.history(CHANNEL) == []


@pytest.mark.parametrize(("token", "error"), [("", "not_authed"), ("xoxb-wrong", "invalid_auth")])
def test_tokens_are_checked(slack: FakeSlack, token: str, error: str) -> None:
    request = urllib.request.Request(
        slack.api_url + "auth.test",
        data=b"{}",
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.load(answer) == {"ok": False, "error": error}
    assert WebClient(token=TOKEN, base_url=slack.api_url).auth_test()["ok"]


def test_history_shows_metadata_only_when_asked(slack: FakeSlack) -> None:
    client = WebClient(token=TOKEN, base_url=slack.api_url)
    metadata = {"event_type": "flarestart_digest", "event_payload": {"key": "k", "part": 1}}
    client.chat_postMessage(channel=CHANNEL, text="one", metadata=metadata)
    client.chat_postMessage(channel=CHANNEL, text="two")

    plain = client.conversations_history(channel=CHANNEL)["messages"]
    full = client.conversations_history(channel=CHANNEL, include_all_metadata=True)["messages"]
    assert [m["text"] for m in plain] == ["two", "one"]  # newest first
    assert all("metadata" not in m for m in plain)
    assert full[1]["metadata"] == metadata
    assert float(full[0]["ts"]) > float(full[1]["ts"])


def test_a_channel_over_its_rate_gets_429_with_retry_after() -> None:
    now = [100.0]
    with FakeSlack(token=TOKEN, clock=lambda: now[0], rate=1.0, burst=2) as slack:
        slack.add_channel(CHANNEL)
        client = WebClient(token=TOKEN, base_url=slack.api_url)
        client.chat_postMessage(channel=CHANNEL, text="1")
        client.chat_postMessage(channel=CHANNEL, text="2")  # the burst
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel=CHANNEL, text="3")
        assert raised.value.response.status_code == 429
        assert raised.value.response.headers["Retry-After"] == "1"
        now[0] += 1.0
        client.chat_postMessage(channel=CHANNEL, text="3")
        assert [m["text"] for m in slack.history(CHANNEL)] == ["1", "2", "3"]
        assert slack.rate_limited(CHANNEL) == 1


def test_the_client_view_parses_mrkdwn_like_slack() -> None:
    shown = seen({"text": "hi <!channel> <https://a.example|A &amp; B> *bold* &lt;x&gt;"})
    assert shown.mentions == ("<!channel>",)
    assert shown.links == (("https://a.example", "A & B"),)
    assert ("bold", "bold") in shown.formatted
    assert shown.text.endswith("<x>")
