"""Where a subscriber's digests go, as subscriber files and the CLI spell it, validated.

A `[[subscriber]]` entry names exactly one destination:

    email = "ada@example.com"
    slack = { channel = "C0123ABCD" }              # posted with the bot token (SLACK_BOT_TOKEN)
    slack = { webhook_env = "TEAM_SLACK_WEBHOOK" } # an incoming webhook; its URL is in that variable
    discord = { channel = "112233445566778899" }   # posted by the bot
    discord = { webhook_env = "TEAM_DISCORD_WEBHOOK" }
    discord = { user = "112233445566778899" }      # a direct message

Secrets never live in a file or the database: a webhook is named by the environment variable
that holds its URL, read when a digest is posted. The stored address is "C0123ABCD",
"webhook_env:TEAM_SLACK_WEBHOOK" or "user:1122…"; a reference to the subscriber elsewhere
(`flarestart subscribers show slack:C0123ABCD`) is the kind and that address.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

# The default chat topics and the address prefixes live in bot.types, so that bot.app.types
# names them without importing this package (and its files, schedule and sync modules).
from bot.types import CHAT_KINDS, Destination
from bot.types import DEFAULT_CHAT_TOPICS as DEFAULT_CHAT_TOPICS
from bot.types import USER_PREFIX as USER_PREFIX
from bot.types import WEBHOOK_PREFIX as WEBHOOK_PREFIX

DESTINATION_KEYS = ("email", "slack", "discord")
MAX_ADDRESS = 400
# Slack ids: C (public), G (private, older), D (direct message); upper-case letters and digits.
MAX_EMAIL, MAX_LOCAL_PART = 254, 64
# A sane address check, not RFC 5322: dot-atom local part, dotted host names, letters in the TLD.
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+[A-Za-z]{{2,63}}$")
_SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{4,20}$")
_DISCORD_ID = re.compile(r"^[0-9]{15,21}$")  # a snowflake
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_FORMS = {
    "slack": ("channel", "webhook_env"),
    "discord": ("channel", "webhook_env", "user"),
}
_EXAMPLES = {
    "slack": 'slack = { channel = "C0123ABCD" } or slack = { webhook_env = "TEAM_SLACK_WEBHOOK" }',
    "discord": 'discord = { channel = "112233445566778899" }, { webhook_env = "NAME" } or { user = "…" }',
}

Problems = list[tuple[str | None, str]]  # (key as the file names it, or None for the table; message)


def normalize_email(text: str) -> str:
    """A trimmed, lower-cased address; ValueError when it does not look like one."""
    email = text.strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or len(email) > MAX_EMAIL or len(local) > MAX_LOCAL_PART:
        raise ValueError(f"{text!r} is not an email address")
    if not _LOCAL.match(local) or not _DOMAIN.match(domain):
        raise ValueError(f"{text!r} is not an email address")
    return email


def slack_channel(text: str) -> str:
    """A Slack channel id; ValueError saying what one looks like."""
    value = text.strip().upper()
    if not _SLACK_CHANNEL.match(value):
        raise ValueError(
            f"{text!r} is not a Slack channel id (like 'C0123ABCD': channel details → the id at the "
            "bottom; names like '#general' are not ids)"
        )
    return value


def discord_id(text: str, what: str = "channel") -> str:
    value = text.strip()
    if not _DISCORD_ID.match(value):
        raise ValueError(f"{text!r} is not a Discord {what} id (a number of 15 to 21 digits)")
    return value


def env_name(text: str) -> str:
    """The name of an environment variable (the webhook URL is read from it, never stored)."""
    value = text.strip()
    if not _ENV_NAME.match(value) or value.startswith(("http:", "https:")):
        raise ValueError(
            f"{text[:60]!r} is not an environment variable name (like 'TEAM_SLACK_WEBHOOK'); "
            "put the webhook URL in that variable, never in the file"
        )
    return value


def chat_address(kind: str, form: str, value: str) -> str:
    """The stored address of a chat destination given as `kind = { form = value }`."""
    if form == "webhook_env":
        return WEBHOOK_PREFIX + env_name(value)
    if kind == "slack":
        return slack_channel(value)
    if form == "user":
        return USER_PREFIX + discord_id(value, "user")
    return discord_id(value)


def destination_entry(destination: Destination) -> dict[str, Any]:
    """`destination` as a subscriber file spells it ({"slack": {"channel": "C0123ABCD"}}), so a
    destination given elsewhere (the CLI, chat) is validated by `parse_destination` too."""
    address = destination.address
    if destination.kind == "email":
        return {"email": address}
    if address.startswith(WEBHOOK_PREFIX):
        return {destination.kind: {"webhook_env": address.removeprefix(WEBHOOK_PREFIX)}}
    if destination.kind == "discord" and address.startswith(USER_PREFIX):
        return {"discord": {"user": address.removeprefix(USER_PREFIX)}}
    return {destination.kind: {"channel": address}}


def check_destination(destination: Destination) -> Destination:
    """A destination given as a reference ("slack:C0123ABCD"), validated; ValueError otherwise."""
    found, problems = parse_destination(destination_entry(destination))
    if found is None:
        raise ValueError("; ".join(message for _, message in problems))
    return found


def parse_destination(data: Mapping[str, Any]) -> tuple[Destination | None, Problems]:
    """The one destination of a subscriber entry (`email`, `slack` or `discord`), or None and
    every problem with the key it concerns."""
    given = [key for key in DESTINATION_KEYS if key in data]
    if not given:
        return None, [(None, "subscriber has no destination: give email, slack or discord")]
    if len(given) > 1:
        return None, [(given[1], f"a subscriber has exactly one destination, got {' and '.join(given)}")]
    [key] = given
    value = data[key]
    if key == "email":
        if not isinstance(value, str):
            return None, [("email", f"email must be a string, got {value!r}")]
        try:
            return Destination.email(normalize_email(value)), []
        except ValueError as exc:
            return None, [("email", str(exc))]
    return _chat(key, value)


def _chat(kind: str, value: Any) -> tuple[Destination | None, Problems]:
    forms = _FORMS[kind]
    if isinstance(value, str):
        return None, [(kind, f"{kind} must be a table: {_EXAMPLES[kind]}")]
    if not isinstance(value, Mapping) or len(value) != 1:
        return None, [(kind, f"{kind} takes exactly one of {', '.join(forms)}: {_EXAMPLES[kind]}")]
    [(form, raw)] = value.items()
    if form not in forms:
        close = difflib.get_close_matches(form, forms, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(forms)}"
        return None, [(f"{kind}.{form}", f"unknown key {form!r} in {kind} ({hint})")]
    if not isinstance(raw, str):
        return None, [(f"{kind}.{form}", f"{kind}.{form} must be a string, got {raw!r}")]
    try:
        address = chat_address(kind, form, raw)
    except ValueError as exc:
        return None, [(f"{kind}.{form}", str(exc))]
    if len(address) > MAX_ADDRESS:
        return None, [(f"{kind}.{form}", f"{kind}.{form} is longer than {MAX_ADDRESS} characters")]
    return Destination("slack" if kind == "slack" else "discord", address), []


def is_chat(kind: str) -> bool:
    return kind in CHAT_KINDS
