"""`/flarestart` in Slack: verify the request, run the command core, answer in Slack's terms.

The same `SlackCommandHandler` serves both ways Slack delivers a slash command: an HTTP POST to
`/slack/commands` (bot/web/app.py, verified here with the signing secret) and a Socket Mode
envelope (bot/cli/slack.py; the WebSocket is the authentication there).

- Verification: slack-sdk's `SignatureVerifier` (HMAC-SHA256 over `v0:{timestamp}:{body}`, with a
  clock this module is given), plus a replay guard: a signature seen within the five minutes a
  timestamp is good for is refused the second time. Anything else is a 401 and changes nothing.
- Answering: Slack waits 3 seconds. The command runs in a thread (the core and the store are
  synchronous); when it takes longer than `deadline` (2.5 s) the answer says it is on its way and
  the result follows through `response_url`. Slow work (a preview, discovering a feed) always goes
  that way. A `response_url` is only posted to when it is Slack's (https://hooks.slack.com/…) or
  the configured stand-in's (slack.api_url's origin: the fake Slack of tests and demos).
- Markup: every line and title is escaped for mrkdwn (`&`, `<`, `>`), so nothing a user or a
  feed wrote can become a link or a mention (`<!channel>`); links are built only from checked
  http(s) URLs. Ephemeral unless the command changed the channel's digest.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from slack_sdk.signature import Clock, SignatureVerifier

from bot.app.chat import ChatCommands, ChatReply
from bot.config import Settings
from bot.digest.slack import escape_mrkdwn, slack_url

log = logging.getLogger(__name__)

MAX_AGE = 5 * 60  # seconds a signed request is good for (Slack's own rule)
DEADLINE = 2.5  # seconds before the first answer must go (Slack gives up at 3)
MAX_BODY_BYTES = 16 * 1024  # a slash command's form: a few fields and up to ~4,000 characters
SLACK_RESPONSE_HOSTS = ("hooks.slack.com",)
SECTION_MAX = 2_900  # Slack's section text limit is 3,000


@dataclass(frozen=True, slots=True)
class SlackOptions:
    """What the Slack doors read of the settings."""

    signing_secret: str | None  # SLACK_SIGNING_SECRET: /slack/commands is mounted only with it
    app_token: str | None  # SLACK_APP_TOKEN: `flarestart slack` (Socket Mode)
    api_url: str | None  # slack.api_url when it is not Slack's (a stand-in); None for Slack's
    stand_in: str | None  # the same: whose origin may receive follow-ups besides Slack's


def slack_options(settings: Settings) -> SlackOptions:
    slack = settings.slack
    default = type(slack).model_fields["api_url"].default
    stand_in = None if slack.api_url == default else slack.api_url
    return SlackOptions(slack.signing_secret or None, slack.app_token or None, stand_in, stand_in)


class SlackAuthError(Exception):
    """The request is not Slack's: unsigned, forged, stale or replayed (the reason says which)."""


class _InjectedClock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackVerifier:
    """Checks `X-Slack-Signature` and `X-Slack-Request-Timestamp` over the raw body."""

    def __init__(self, signing_secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._verifier = SignatureVerifier(signing_secret, clock=_InjectedClock(clock))
        self._seen: dict[str, float] = {}  # signature → its timestamp
        self._lock = threading.Lock()

    def check(self, body: bytes, headers: Mapping[str, str]) -> None:
        lowered = {key.lower(): value for key, value in headers.items()}
        stamp = lowered.get("x-slack-request-timestamp")
        signature = lowered.get("x-slack-signature")
        if not stamp or not signature:
            raise SlackAuthError("unsigned")
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            raise SlackAuthError("malformed timestamp")
        now = self._clock()
        if abs(now - int(stamp)) > MAX_AGE:
            raise SlackAuthError("stale")
        if not self._verifier.is_valid(body=body, timestamp=stamp, signature=signature):
            raise SlackAuthError("forged")
        with self._lock:
            for old in [sig for sig, at in self._seen.items() if abs(now - at) > MAX_AGE]:
                del self._seen[old]
            if signature in self._seen:
                raise SlackAuthError("replayed")
            self._seen[signature] = int(stamp)


@dataclass(frozen=True, slots=True)
class SlackCommand:
    """The fields of a slash command FlareStart reads (form fields or a Socket Mode payload)."""

    text: str
    channel: str
    channel_name: str
    user: str
    response_url: str
    command: str = "/flarestart"

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> SlackCommand:
        def get(name: str) -> str:
            value = fields.get(name, "")
            if isinstance(value, list):
                value = value[0] if value else ""
            return str(value)

        return cls(
            get("text"),
            get("channel_id"),
            get("channel_name"),
            get("user_id"),
            get("response_url"),
            get("command"),
        )


def read_form(body: bytes) -> dict[str, str]:
    """A slash command's form body; ValueError when it is not one."""
    fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=50)
    return {key: values[0] for key, values in fields.items() if values}


@dataclass(frozen=True, slots=True)
class SlackAnswer:
    """The first answer (a response payload), and the follow-up to run after it went, if any."""

    payload: dict[str, Any]
    follow_up: Callable[[], Coroutine[Any, Any, None]] | None = None


Post = Callable[[str, dict[str, Any]], Awaitable[None]]


class SlackCommandHandler:
    """Runs `/flarestart …` on the command core and answers like Slack expects."""

    def __init__(
        self,
        commands: ChatCommands,
        *,
        stand_in: str | None = None,
        deadline: float = DEADLINE,
        post: Post | None = None,
    ) -> None:
        """`stand_in`: a base URL (slack.api_url when it is not Slack's) whose origin may receive
        follow-ups too. `post`: how a follow-up is sent (default: slack-sdk's webhook client)."""
        self.commands = commands
        self.deadline = deadline
        self._post = post or _post_with_slack_sdk
        self._origins: set[tuple[str, str, int | None]] = {("https", h, None) for h in SLACK_RESPONSE_HOSTS}
        if stand_in:
            parts = urlsplit(stand_in)
            self._origins.add((parts.scheme, parts.hostname or "", parts.port))

    async def handle(self, command: SlackCommand) -> SlackAnswer:
        run = asyncio.ensure_future(
            asyncio.to_thread(
                self.commands.run_text,
                command.text,
                channel=command.channel,
                user=command.user,
                channel_name=command.channel_name,
            )
        )
        try:
            reply = await asyncio.wait_for(asyncio.shield(run), self.deadline)
        except TimeoutError:
            log.warning("slack command slow: answering later", extra={"channel": command.channel})
            return SlackAnswer(
                {"response_type": "ephemeral", "text": "Working on it… the answer follows in a moment."},
                self._later(command, run),
            )
        if reply.later:
            finishing = asyncio.to_thread(
                self.commands.finish,
                reply.verb,
                reply.args,
                channel=command.channel,
                user=command.user,
                channel_name=command.channel_name,
            )
            return SlackAnswer(render_reply(reply), self._later(command, finishing))
        return SlackAnswer(render_reply(reply))

    def _later(
        self, command: SlackCommand, work: Awaitable[ChatReply]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        async def follow_up() -> None:
            reply = await work
            if not self.may_post(command.response_url):
                log.warning(
                    "slack response_url refused: not Slack's",
                    extra={"channel": command.channel, "host": urlsplit(command.response_url).hostname},
                )
                return
            try:
                await self._post(command.response_url, render_reply(reply))
            except Exception as exc:  # a lost follow-up is logged, never raised into the server
                log.warning(
                    "slack follow-up failed", extra={"channel": command.channel, "error": type(exc).__name__}
                )

        return follow_up

    def may_post(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            origin = (parts.scheme, parts.hostname or "", parts.port)
        except ValueError:
            return False
        return origin in self._origins and not parts.username and not parts.password


async def _post_with_slack_sdk(url: str, payload: dict[str, Any]) -> None:
    from slack_sdk.webhook.async_client import AsyncWebhookClient

    response = await AsyncWebhookClient(url, timeout=10).send_dict(payload)
    if response.status_code != 200:
        raise RuntimeError(f"response_url answered {response.status_code}")


def render_reply(reply: ChatReply) -> dict[str, Any]:
    """A response payload: mrkdwn-escaped lines, then one section per preview item."""
    text = escape_mrkdwn(reply.text)
    blocks: list[dict[str, Any]] = [_section(text)]
    for item in reply.items[:20]:
        title = escape_mrkdwn(item.title) or "(untitled)"
        link = slack_url(item.url)
        heading = f"*<{link}|{title}>*" if link else f"*{title}*"
        blocks.append(_section(f"{heading}\n{escape_mrkdwn(item.source)} · {escape_mrkdwn(item.why)}"))
    return {
        "response_type": "in_channel" if reply.public else "ephemeral",
        "text": text[:SECTION_MAX],
        "blocks": blocks,
    }


def _section(text: str) -> dict[str, Any]:
    if len(text) > SECTION_MAX:
        text = text[: SECTION_MAX - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}
