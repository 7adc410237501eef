"""`flarestart slack`, the real process: it connects to the fake Slack's Socket Mode endpoint with
the app token from the environment, answers a slash command in the acknowledgement, and stops
cleanly on SIGTERM. Without a token it is one line and exit code 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bot.app import FlareStart
from bot.config import load_settings
from bot.testing.fake_slack import FakeSlack, seen
from bot.testing.fake_slack_socket import FakeSlackSocket
from tests.cli.conftest import Runner


def test_without_an_app_token_it_says_what_to_set(cli: Runner, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    result = cli("slack")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "SLACK_APP_TOKEN" in result.err


def test_flarestart_slack_answers_over_socket_mode_and_stops_on_sigterm(tmp_path: Path) -> None:
    with FakeSlack() as slack, FakeSlackSocket(slack) as socket:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FLARESTART_", "SLACK_"))},
            "FLARESTART_DATA_DIR": str(tmp_path / "data"),
            "SLACK_APP_TOKEN": socket.app_token,
            "FLARESTART_SLACK_API_URL": slack.api_url,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "slack"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            socket.wait_connected(timeout=30)
            ack = socket.send_command(
                {
                    "command": "/flarestart",
                    "text": "subscribe python",
                    "channel_id": "C0TEAM01",
                    "user_id": "U1",
                }
            )
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "connected over Socket Mode" in err
    assert ack["payload"]["response_type"] == "in_channel"
    assert "now gets a FlareStart digest" in seen(ack["payload"]).text
    with FlareStart(load_settings(env), seed=False) as app:
        assert app.subscriber("slack:C0TEAM01").subscriber.topics == {"python": 1.0}
