"""docs/slack-app-manifest.yml says what the code does: the command, its path, the scopes used."""

from __future__ import annotations

import re
from pathlib import Path

from bot.app.chat import VERBS

MANIFEST = Path(__file__).resolve().parents[2] / "docs" / "slack-app-manifest.yml"


def test_the_manifest_declares_the_command_the_route_and_the_scopes_the_code_needs() -> None:
    text = MANIFEST.read_text(encoding="utf-8")
    assert re.search(r"^\s+- command: /flarestart$", text, re.MULTILINE)
    assert re.search(r"^\s+url: https://\S+/slack/commands$", text, re.MULTILINE)
    scopes = re.findall(r"^\s+- ([a-z]+(?::[a-z.]+)?)$", text, re.MULTILINE)
    # chat.postMessage, the slash command, conversations.history/replies for the part recovery
    assert {"chat:write", "commands", "channels:history", "groups:history"} <= set(scopes)
    assert re.search(r"^\s+socket_mode_enabled: (true|false)$", text, re.MULTILINE)
    hint = re.search(r'usage_hint: "(.*)"', text)
    assert hint is not None
    assert {word.split()[0] for word in hint.group(1).split(" | ")} <= set(VERBS)
