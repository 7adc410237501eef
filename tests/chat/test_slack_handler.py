"""The Slack adapter below HTTP: Slack's signatures checked (valid, stale, forged, replayed,
missing), answers in mrkdwn that echo hostile text inertly, and slow work posted to a
`response_url` on the fake Slack."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.app import FlareStart
from bot.app.chat import ChatCommands
from bot.chat.slack import SlackAuthError, SlackCommand, SlackCommandHandler, SlackVerifier, render_reply
from bot.config import Settings
from bot.testing.fake_slack import FakeSlack, seen
from tests.chat.conftest import NOW, SIGNING_SECRET, command_form, sign, stock_python_story

CHANNEL = "team@example.com"  # the core is chat-agnostic: an email destination stands in here


@pytest.fixture
def app(settings: Settings) -> Iterator[FlareStart]:
    moment = datetime.fromtimestamp(NOW, UTC)
    with FlareStart(settings, seed=False, clock=lambda: moment) as flarestart:
        yield flarestart


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def handler_for(app: FlareStart, slack: FakeSlack, **options: float) -> SlackCommandHandler:
    return SlackCommandHandler(
        ChatCommands(app, prefix="email", origin="slack"), stand_in=slack.api_url, **options
    )


def command(text: str, response_url: str = "") -> SlackCommand:
    return SlackCommand(text, CHANNEL, "team-news", "U0ADA", response_url)


# -- signatures ---------------------------------------------------------------------------------


def test_a_request_signed_now_passes_once() -> None:
    verifier = SlackVerifier(SIGNING_SECRET, clock=lambda: NOW + 30)
    body = command_form("status", channel="C1")
    headers = sign(body)
    verifier.check(body, headers)
    with pytest.raises(SlackAuthError, match="replayed"):
        verifier.check(body, headers)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "unsigned"),
        ({"X-Slack-Request-Timestamp": str(int(NOW))}, "unsigned"),
        (sign(b"text=other"), "forged"),  # a signature of another body
        (sign(command_form("status", channel="C1"), secret="not-the-secret"), "forged"),
        (sign(command_form("status", channel="C1"), timestamp=NOW - 301), "stale"),
        (sign(command_form("status", channel="C1"), timestamp=NOW + 301), "stale"),
        ({"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}, "malformed"),
    ],
)
def test_unsigned_forged_stale_and_malformed_requests_are_refused(
    headers: dict[str, str], reason: str
) -> None:
    verifier = SlackVerifier(SIGNING_SECRET, clock=lambda: NOW)
    with pytest.raises(SlackAuthError, match=reason):
        verifier.check(command_form("status", channel="C1"), headers)


def test_the_replay_guard_forgets_signatures_once_they_are_stale_anyway() -> None:
    now = [NOW]
    verifier = SlackVerifier(SIGNING_SECRET, clock=lambda: now[0])
    first = command_form("status", channel="C1")
    verifier.check(first, sign(first))
    now[0] = NOW + 400  # the first signature would be refused as stale now, so it is dropped
    later = command_form("help", channel="C1")
    verifier.check(later, sign(later, timestamp=now[0]))
    assert len(verifier._seen) == 1


# -- answers ------------------------------------------------------------------------------------


def test_changes_are_public_and_questions_ephemeral(app: FlareStart, slack: FakeSlack) -> None:
    handler = handler_for(app, slack)
    subscribed = asyncio.run(handler.handle(command("subscribe python")))
    status = asyncio.run(handler.handle(command("status")))
    assert subscribed.payload["response_type"] == "in_channel" and subscribed.follow_up is None
    assert status.payload["response_type"] == "ephemeral"
    assert "Topics: python." in seen(status.payload).text
    assert app.subscriber(CHANNEL).subscriber.origin == "slack"


def test_hostile_text_is_echoed_inert(app: FlareStart, slack: FakeSlack) -> None:
    handler = handler_for(app, slack)
    asyncio.run(handler.handle(command("subscribe python")))
    answer = asyncio.run(handler.handle(command("mute <!channel> <https://evil.example|click> *bold* &amp;")))
    shown = seen(answer.payload)
    assert shown.mentions == () and shown.links == ()
    assert "<!channel> <https://evil.example|click>" in shown.text and "&amp;" in shown.text
    unknown = asyncio.run(handler.handle(command("<@U0BOSS> please")))
    assert seen(unknown.payload).mentions == () and "<@U0BOSS>" in seen(unknown.payload).text


def test_preview_answers_at_once_and_posts_the_digest_to_the_response_url(
    app: FlareStart, slack: FakeSlack
) -> None:
    stock_python_story(app, title="Python <!here> 3.15 *released*")
    handler = handler_for(app, slack)
    asyncio.run(handler.handle(command("subscribe python")))
    url = slack.add_response_url("C0TEAM")

    async def preview() -> tuple[dict[str, object], list[dict[str, object]]]:
        answer = await handler.handle(command("preview", url))
        assert answer.follow_up is not None
        before = slack.responses(url)
        await answer.follow_up()
        return answer.payload, before

    first, before = asyncio.run(preview())
    assert first["response_type"] == "ephemeral" and "Composing" in seen(first).text
    assert before == []
    [posted] = slack.responses(url)
    shown = seen(posted)
    assert posted["response_type"] == "ephemeral"
    assert shown.links == (("https://py.example/a1", "Python <!here> 3.15 *released*"),)
    assert shown.mentions == ()


def test_a_slow_command_answers_before_slack_gives_up_and_follows_up(
    app: FlareStart, slack: FakeSlack
) -> None:
    handler = handler_for(app, slack, deadline=0.0)  # every command is "slow" now
    url = slack.add_response_url("C0TEAM")

    async def run() -> dict[str, object]:
        answer = await handler.handle(command("subscribe python", url))
        assert answer.follow_up is not None
        await answer.follow_up()
        return answer.payload

    first = asyncio.run(run())
    assert "Working on it" in seen(first).text
    [posted] = slack.responses(url)
    assert posted["response_type"] == "in_channel" and "now gets a FlareStart digest" in seen(posted).text
    assert [seen(m).text for m in slack.history("C0TEAM")] == [
        seen(posted).text
    ]  # in_channel: the channel sees it


def test_follow_ups_go_only_to_slack_or_the_configured_stand_in(app: FlareStart, slack: FakeSlack) -> None:
    handler = handler_for(app, slack)
    assert handler.may_post("https://hooks.slack.com/commands/T1/2/abc")
    assert handler.may_post(slack.add_response_url("C0TEAM"))
    for url in (
        "http://hooks.slack.com/commands/T1/2/abc",
        "https://hooks.slack.com.evil.example/commands/T1",
        "https://user:pw@hooks.slack.com/commands/T1",
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:1/x",
        "not a url",
    ):
        assert not handler.may_post(url), url

    async def run() -> None:
        answer = await handler.handle(command("preview", "http://127.0.0.1:1/commands/x"))
        assert answer.follow_up is not None
        await answer.follow_up()  # refused and logged: nothing raised, nothing posted

    asyncio.run(run())


def test_rendered_answers_stay_within_slacks_limits(app: FlareStart) -> None:
    from bot.app.chat import ChatItem, ChatReply

    reply = ChatReply(("x" * 5000,), items=tuple(ChatItem("t" * 4000, None, "s", "why") for _ in range(60)))
    payload = render_reply(reply)
    assert len(payload["blocks"]) <= 50
    assert all(len(block["text"]["text"]) <= 3000 for block in payload["blocks"])
