"""A Slack channel as a subscriber, end to end through the CLI: `subscribers add --slack`, `send`,
`deliveries list`, `preview --slack-json`, a permanent Slack error pausing the channel with its
reason. Slack is the fake Web API on loopback; `slack.api_url` points the real client at it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.testing.fake_slack import FakeSlack, seen
from tests.cli.conftest import Runner
from tests.cli.test_delivery_cli import TITLES, fetched  # noqa: F401  (the loopback source, fetched)

TOKEN = "xoxb-cli-test"
TEAM = "C0TEAMNEWS"


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN, rate_limit=False) as fake:
        fake.add_channel(TEAM)
        monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("FLARESTART_SLACK_API_URL", fake.api_url)
        yield fake


def _an_hour_ago() -> str:
    return f"{datetime.now(UTC) - timedelta(hours=1):%H:%M}"


def _add_team(cli: Runner, *args: str) -> None:
    added = cli("subscribers", "add", "--slack", TEAM, "--name", "Team news", "--time", _an_hour_ago(), *args)
    assert added.code == 0, added.err
    assert added.out.startswith(f"Added Slack channel {TEAM}: daily at ")


@pytest.mark.usefixtures("fetched")
def test_a_slack_channel_gets_its_digest_once_and_the_ledger_names_the_channel(
    cli: Runner, slack: FakeSlack
) -> None:
    _add_team(cli, "--topics", "python")

    sent = cli("send", f"slack:{TEAM}")

    assert sent.code == 0, sent.err
    assert f"slack:{TEAM}" in sent.out
    [message] = slack.history(TEAM)
    shown = seen(message)
    assert all(title in shown.text for title in TITLES)  # "<cargo> & friends" shown as written
    assert shown.mentions == () and message["metadata"]["event_type"] == "flarestart_digest"
    rows = cli("deliveries", "list", "--json").json()
    assert [(r["subscriber"], r["channel"], r["status"]) for r in rows] == [
        (f"slack:{TEAM}", "slack", "sent")
    ]
    table = cli("deliveries", "list")
    assert f"slack:{TEAM}" in table.out and "slack" in table.out

    again = cli("send", f"slack:{TEAM}")
    assert again.code == 0 and again.out.startswith("Already sent"), again.out
    assert len(slack.history(TEAM)) == 1


def test_a_channel_without_topics_gets_the_default_set_and_show_says_where_it_goes(
    cli: Runner, slack: FakeSlack
) -> None:
    _add_team(cli)
    shown = cli("subscribers", "show", f"slack:{TEAM}")
    assert shown.code == 0, shown.err
    assert f"Slack channel {TEAM}" in shown.out and "(the default for a channel)" in shown.out
    listed = cli("subscribers", "list", "--json").json()
    assert [(s["destination"], s["email"], s["default_topics"]) for s in listed] == [
        (f"slack:{TEAM}", None, True)
    ]
    assert f"Slack channel {TEAM}" in cli("subscribers", "list").out


def test_one_destination_is_asked_for_in_one_line(cli: Runner) -> None:
    both = cli("subscribers", "add", "ada@example.com", "--slack", TEAM)
    assert both.code == 2 and both.err.count("\n") == 1 and "exactly one destination" in both.err
    bad = cli("subscribers", "add", "--slack", "#general")
    assert bad.code == 2 and "'#general' is not a Slack channel id" in bad.err


@pytest.mark.usefixtures("fetched")
def test_preview_slack_json_prints_the_block_kit_payloads(cli: Runner, slack: FakeSlack) -> None:
    _add_team(cli, "--topics", "python")

    result = cli("preview", f"slack:{TEAM}", "--slack-json")

    assert result.code == 0, result.err
    [payload] = result.json()
    assert payload["blocks"][0]["type"] == "header" and payload["unfurl_links"] is False
    assert all(title in seen(payload).text for title in TITLES)
    assert slack.history(TEAM) == []  # a preview posts nothing


@pytest.mark.usefixtures("fetched")
def test_an_archived_channel_fails_the_delivery_and_pauses_the_subscriber_with_the_reason(
    cli: Runner, slack: FakeSlack
) -> None:
    _add_team(cli, "--topics", "python")
    slack.channels[TEAM].archived = True

    failed = cli("send", f"slack:{TEAM}")

    assert failed.code == 1, failed.err
    assert failed.err.splitlines()[-1] == (
        f"error: Slack channel {TEAM} is archived; slack:{TEAM} is paused until "
        f"`flarestart subscribers resume slack:{TEAM}`"
    )
    [row] = cli("deliveries", "list", "--json").json()
    assert (row["status"], row["last_error"]) == ("failed", f"Slack channel {TEAM} is archived")
    [team] = cli("subscribers", "list", "--json").json()
    assert (team["status"], team["status_reason"]) == ("paused", f"Slack channel {TEAM} is archived")
    assert (
        f"paused ({f'Slack channel {TEAM} is archived'})" in cli("subscribers", "show", f"slack:{TEAM}").out
    )
    assert slack.history(TEAM) == []

    resumed = cli("subscribers", "resume", f"slack:{TEAM}")
    assert resumed.code == 0 and resumed.out.startswith(f"Resumed Slack channel {TEAM} (was paused)")
    assert cli("subscribers", "list", "--json").json()[0]["status_reason"] is None
    [retried] = cli("deliveries", "retry", "--channel", "slack", "--json").json()
    assert (retried["subscriber"], retried["channel"], retried["outcome"]) == (
        f"slack:{TEAM}",
        "slack",
        "requeued",
    )


@pytest.mark.usefixtures("fetched")
def test_a_webhook_destination_reads_its_url_from_the_variable_it_names(
    cli: Runner, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    added = cli(
        "subscribers",
        "add",
        "--slack-webhook-env",
        "TEAM_HOOK",
        "--topics",
        "python",
        "--time",
        _an_hour_ago(),
    )
    assert added.code == 0 and added.out.startswith("Added Slack webhook $TEAM_HOOK"), added.err

    monkeypatch.setenv("TEAM_HOOK", slack.add_webhook("C0HOOKED"))
    sent = cli("send", "slack:webhook_env:TEAM_HOOK")
    assert sent.code == 0, sent.err
    assert len(slack.history("C0HOOKED")) == 1
    assert "hooks" not in cli("subscribers", "show", "slack:webhook_env:TEAM_HOOK").out  # no URL stored


@pytest.mark.usefixtures("fetched")
def test_a_webhook_variable_that_is_not_set_pauses_the_subscriber_saying_which(
    cli: Runner, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEAM_HOOK", raising=False)
    cli("subscribers", "add", "--slack-webhook-env", "TEAM_HOOK", "--time", _an_hour_ago())

    unset = cli("send", "slack:webhook_env:TEAM_HOOK")

    assert unset.code == 1 and "the environment variable TEAM_HOOK holds no Slack webhook URL" in unset.err
    [hook] = cli("subscribers", "list", "--json").json()
    assert hook["status"] == "paused" and "TEAM_HOOK" in hook["status_reason"]
