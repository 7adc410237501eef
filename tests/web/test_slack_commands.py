"""POST /slack/commands on the `flarestart serve` app, over HTTP on loopback: Slack's real HMAC
signatures (valid, stale, forged, replayed, missing) and every verb's effect in the store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bot.app import FlareStart
from bot.config import Settings, load_settings
from bot.store.models import Subscriber
from bot.testing.fake_slack import FakeSlack, seen
from bot.web.app import create_app
from tests.chat.conftest import NOW, SIGNING_SECRET, command_form, sign, stock_python_story
from tests.web.conftest import running

CHANNEL = "C0TEAM01"
MOMENT = datetime.fromtimestamp(NOW, UTC)


@dataclass
class SlackWeb:
    client: httpx.Client
    app: FlareStart  # on the same database, to arrange and to read the store
    slack: FakeSlack

    def post(
        self, text: str, *, headers: dict[str, str] | None = None, response_url: str = ""
    ) -> httpx.Response:
        body = command_form(text, channel=CHANNEL, response_url=response_url)
        return self.client.post(
            "/slack/commands",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or sign(body))},
        )

    def row(self) -> Subscriber:
        return self.app.subscriber(f"slack:{CHANNEL}").subscriber


def slack_settings(tmp_path: Path, database_url: str, api_url: str, **extra: str) -> Settings:
    return load_settings(
        {
            "FLARESTART_DATA_DIR": str(tmp_path / "data"),
            "FLARESTART_ALLOW_PRIVATE_URLS": "1",
            "FLARESTART_DATABASE_URL": database_url,
            "FLARESTART_SLACK_API_URL": api_url,
            **extra,
        }
    )


@pytest.fixture
def slack_web(tmp_path: Path, database_url: str) -> Iterator[SlackWeb]:
    with FakeSlack() as slack:
        settings = slack_settings(tmp_path, database_url, slack.api_url, SLACK_SIGNING_SECRET=SIGNING_SECRET)
        web = create_app(settings, clock=lambda: MOMENT)
        with (
            running(web) as url,
            httpx.Client(base_url=url, timeout=10) as client,
            FlareStart(settings, seed=False, clock=lambda: MOMENT) as app,
        ):
            yield SlackWeb(client, app, slack)


def test_every_verb_over_http_changes_the_channels_subscriber(slack_web: SlackWeb) -> None:
    subscribed = slack_web.post("subscribe python")
    assert subscribed.status_code == 200, subscribed.text
    assert subscribed.json()["response_type"] == "in_channel"
    row = slack_web.row()
    assert (row.topics, row.status, row.origin) == ({"python": 1.0}, "active", "slack")

    for text in (
        "follow rust",
        "unfollow python",
        "mute sponsored",
        "time 08:30 Europe/Berlin",
        "frequency weekdays",
    ):
        answer = slack_web.post(text)
        assert answer.status_code == 200 and answer.json()["response_type"] == "in_channel", text
    row = slack_web.row()
    assert (row.topics, row.muted_keywords) == ({"rust": 1.0}, ["sponsored"])
    assert (row.delivery_time, row.timezone, row.frequency) == ("08:30", "Europe/Berlin", "weekdays")

    status = slack_web.post("status").json()
    assert status["response_type"] == "ephemeral"
    assert "Next digest: Mon 2026-03-02 08:30 CET" in seen(status).text

    assert slack_web.post("pause").json()["response_type"] == "in_channel"
    assert slack_web.row().status == "paused"
    slack_web.post("resume")
    slack_web.post("unsubscribe")
    assert slack_web.row().status == "unsubscribed"


def test_a_channel_subscribed_without_topics_gets_the_default_set_and_status_says_so(
    slack_web: SlackWeb,
) -> None:
    from bot.app.types import DEFAULT_CHAT_TOPICS

    slack_web.post("subscribe")
    assert set(slack_web.row().topics) == set(DEFAULT_CHAT_TOPICS)
    status = seen(slack_web.post("status").json()).text
    assert f"Topics: the default set ({', '.join(DEFAULT_CHAT_TOPICS)}), as none were chosen" in status
    slack_web.post("follow rust")
    assert "default set" not in seen(slack_web.post("status").json()).text


def test_help_and_did_you_mean_answer_only_the_user(slack_web: SlackWeb) -> None:
    help_answer = slack_web.post("help").json()
    assert help_answer["response_type"] == "ephemeral" and "`time HH:MM [Zone]`" in seen(help_answer).text
    typo = seen(slack_web.post("stauts").json()).text
    assert "did you mean `/flarestart status`?" in typo


def test_unsigned_forged_stale_and_replayed_commands_are_401_and_change_nothing(slack_web: SlackWeb) -> None:
    body = command_form("subscribe python", channel=CHANNEL)
    cases = {
        "missing": {},
        "forged": sign(body, secret="someone-else"),
        "stale": sign(body, timestamp=NOW - 6 * 60),
    }
    for name, headers in cases.items():
        answer = slack_web.client.post(
            "/slack/commands",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        )
        assert answer.status_code == 401, name
    assert slack_web.app.list_subscribers() == []

    headers = sign(body)
    first = slack_web.client.post("/slack/commands", content=body, headers=headers)
    replay = slack_web.client.post("/slack/commands", content=body, headers=headers)
    assert (first.status_code, replay.status_code) == (200, 401)
    assert len(slack_web.app.list_subscribers()) == 1


def test_hostile_and_huge_commands_are_answered_inert(slack_web: SlackWeb) -> None:
    slack_web.post("subscribe python")
    mention = slack_web.post("mute <!channel> <@U0BOSS>").json()
    assert seen(mention).mentions == () and seen(mention).links == ()
    assert slack_web.row().muted_keywords == ["<!channel> <@U0BOSS>"]
    huge = slack_web.post("mute " + "a" * 3000)
    assert huge.status_code == 200 and "too long" in seen(huge.json()).text
    too_big = slack_web.post("mute " + "b" * 20_000)
    assert too_big.status_code == 413
    assert slack_web.row().muted_keywords == ["<!channel> <@U0BOSS>"]


def test_preview_goes_to_the_response_url_of_the_stand_in(slack_web: SlackWeb) -> None:
    stock_python_story(slack_web.app, title="Python <!everyone> 3.15")
    slack_web.post("subscribe python")
    url = slack_web.slack.add_response_url(CHANNEL)
    first = slack_web.post("preview", response_url=url).json()
    assert first["response_type"] == "ephemeral" and "Composing" in seen(first).text
    deadline = time.monotonic() + 10  # the follow-up runs after the first answer went
    while not slack_web.slack.responses(url) and time.monotonic() < deadline:
        time.sleep(0.02)
    [posted] = slack_web.slack.responses(url)
    assert seen(posted).links == (("https://py.example/a1", "Python <!everyone> 3.15"),)
    assert seen(posted).mentions == ()


def test_without_a_signing_secret_there_is_no_slack_route(tmp_path: Path, database_url: str) -> None:
    settings = slack_settings(tmp_path, database_url, "https://slack.com/api/")
    with running(create_app(settings)) as url:
        body = command_form("status", channel=CHANNEL)
        answer = httpx.post(f"{url}/slack/commands", content=body, headers=sign(body))
    assert answer.status_code == 404


def test_slacks_certificate_check_is_answered_and_runs_nothing(slack_web: SlackWeb) -> None:
    body = b"ssl_check=1&token=deprecated-verification-token"
    answer = slack_web.client.post("/slack/commands", content=body, headers=sign(body))
    assert (answer.status_code, answer.text) == (200, "ok")
    assert slack_web.app.list_subscribers() == []
