"""A fake Slack Web API on loopback that behaves like Slack where FlareStart depends on it.

Tests, benchmarks and the demo point slack-sdk at it (`AsyncWebClient(base_url=fake.api_url)`,
`AsyncWebhookClient(fake.add_webhook("C1"))`). It binds to 127.0.0.1 only.

    with FakeSlack(token="xoxb-test") as slack:
        slack.add_channel("C0123ABCD")
        ...  # post through slack-sdk
        slack.history("C0123ABCD")       # what the channel holds, oldest first

What it does like Slack:
- `POST /api/chat.postMessage` (JSON or form), `GET|POST /api/conversations.history` (limit,
  oldest, latest, include_all_metadata: metadata is only returned when asked), `conversations.replies`,
  `auth.test`; incoming webhooks at `/services/T…/B…/…`.
- Auth: no token → `not_authed`, a wrong one → `invalid_auth`, a token marked inactive →
  `account_inactive`. Channels: unknown → `channel_not_found`, the bot not a member →
  `not_in_channel`, archived → `is_archived` (webhooks: 404 `channel_not_found`, 410
  `channel_is_archived`, 404 `no_service` for an unknown hook, 400 `invalid_payload`).
- Limits, with Slack's error names: more than 50 blocks, a header over 150 characters, a section
  over 3,000, a malformed block → `invalid_blocks` (with `response_metadata.messages`, as Slack
  does); the blocks' text over ~13,000 characters in all → `msg_blocks_too_long`; `text` over
  40,000 → `msg_too_long`; neither text nor blocks → `no_text`; malformed metadata →
  `invalid_metadata_format`. Sources: the method reference's error lists (chat.postMessage /
  chat.meMessage: channel_not_found, is_archived, msg_too_long, no_text, not_in_channel,
  rate_limited, account_inactive, as mirrored in slack-ruby/slack-api-ref
  methods/chat/chat.meMessage.json), invalid_blocks for block schema failures
  (slackapi/python-slack-sdk#1257), msg_blocks_too_long near 13,200 characters of block text
  (slackapi/bolt-js#2509), and the incoming-webhook status codes and strings of
  api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks. The 50-block,
  150-character header and 3,000-character section limits are Block Kit's documented ones.
- Rate limit: a token bucket per channel (`rate` messages a second, `burst` at once; Slack's is
  about 1/s with short bursts). Over it: HTTP 429, `Retry-After` in whole seconds, body
  `{"ok": false, "error": "ratelimited"}`. `rate_limited` counts those answers per channel.
- Slash commands: `add_response_url(channel)` makes a `response_url` like Slack's
  (https://hooks.slack.com/commands/T…/…/…, here under /commands/); what is posted to it is kept in
  `responses(url)`, and an `in_channel` answer also lands in the channel. Each takes at most five
  posts, as Slack allows within 30 minutes.
- Socket Mode: `apps.connections.open` (an app-level token, `xapp-…`, in `app_tokens`) answers
  with `socket_url`, the loopback WebSocket of bot/testing/fake_slack_socket.py.
- Faults on demand: `fail_next(n, status=503)` answers the next n requests with a 5xx;
  `drop_after_accept(n)` stores the next n posts and then closes the connection without answering
  (a crash between Slack accepting a message and the sender recording it).

`seen(message)` says what a Slack client would show for a stored message: its visible text, the
links, the mentions and the formatted spans, under Slack's rules (plain_text and rich_text text
are literal; mrkdwn parses `<…>` links and mentions, `&amp;`/`&lt;`/`&gt;`, and `*`, `_`, `~`,
backtick spans). Tests assert on that, not on JSON shapes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.testing.served import DropConnection, LoopbackHTTPServer, ServedInThread, dispatching_handler

# Slack's limits, kept apart from the renderer's on purpose: the fake checks what we send.
BLOCKS_MAX = 50
HEADER_MAX = 150
SECTION_MAX = 3_000
BLOCKS_TEXT_MAX = 13_000
TEXT_MAX = 40_000
BLOCK_TYPES = frozenset({"header", "section", "context", "divider", "rich_text", "image", "actions"})
RICH_ELEMENTS = frozenset({"text", "link", "user", "usergroup", "channel", "broadcast", "emoji"})


@dataclass
class Channel:
    id: str
    member: bool = True
    archived: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)
    tokens: float = 0.0  # the rate-limit bucket
    refilled: float = 0.0
    rate_limited: int = 0  # 429s answered for this channel


@dataclass(frozen=True, slots=True)
class Seen:
    """A stored message as a Slack client shows it."""

    text: str
    links: tuple[tuple[str, str], ...]  # (url, label)
    mentions: tuple[str, ...]  # "<!channel>", "<@U123>", …
    formatted: tuple[tuple[str, str], ...]  # (style, text): bold, italic, strike, code


class _Drop(DropConnection):
    """Close the connection without an answer."""


class FakeSlack(ServedInThread):
    _server: LoopbackHTTPServer

    def __init__(
        self,
        *,
        token: str = "xoxb-flarestart-test",
        rate: float = 1.0,
        burst: int = 1,
        rate_limit: bool = True,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.tokens: dict[str, str] = {token: "ok"}  # token → "ok" | "account_inactive"
        self.token = token
        self.rate = rate
        self.burst = burst
        self.rate_limit = rate_limit
        self.clock = clock
        self.channels: dict[str, Channel] = {}
        self.webhooks: dict[str, str] = {}  # path → channel id
        self.response_urls: dict[str, str] = {}  # path → channel id
        self._responses: dict[str, list[dict[str, Any]]] = {}  # path → what was posted to it
        self.app_tokens: set[str] = set()  # app-level tokens apps.connections.open accepts
        self.socket_url: str | None = None  # what apps.connections.open hands out
        self.requests: list[tuple[str, str]] = []  # (method name or webhook path, channel)
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._drops = 0
        # Like Slack's, a message's ts is when the server took it, in epoch seconds: read from the
        # same clock as the rate limit (so a fake clock moves both), unique and increasing.
        self._ts_base = time.time() - clock()
        self._last_ts = 0.0
        self._server = LoopbackHTTPServer((host, port), dispatching_handler(self._handle))

    # setup -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """What slack-sdk's `base_url` takes (it ends in a slash, like https://slack.com/api/)."""
        return self.base_url + "/api/"

    def add_channel(self, channel_id: str, *, member: bool = True, archived: bool = False) -> Channel:
        with self._lock:
            channel = self.channels[channel_id] = Channel(channel_id, member, archived)
            channel.tokens = float(self.burst)
            channel.refilled = self.clock()
            return channel

    def add_webhook(self, channel_id: str) -> str:
        """An incoming-webhook URL that posts into `channel_id` (added if new)."""
        if channel_id not in self.channels:
            self.add_channel(channel_id)
        path = f"/services/T0FAKE/B{secrets.token_hex(4).upper()}/{secrets.token_urlsafe(12)}"
        self.webhooks[path] = channel_id
        return self.base_url + path

    def add_response_url(self, channel_id: str) -> str:
        """A slash command's `response_url` for `channel_id` (added if new)."""
        if channel_id not in self.channels:
            self.add_channel(channel_id)
        path = f"/commands/T0FAKE/{secrets.randbelow(10**12)}/{secrets.token_urlsafe(16)}"
        with self._lock:
            self.response_urls[path] = channel_id
            self._responses[path] = []
        return self.base_url + path

    def responses(self, url: str) -> list[dict[str, Any]]:
        """What was posted to a `response_url`, oldest first."""
        with self._lock:
            return [dict(body) for body in self._responses.get(urlsplit(url).path, [])]

    def fail_next(self, count: int, *, status: int = 503) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def drop_after_accept(self, count: int = 1) -> None:
        with self._lock:
            self._drops += count

    def history(self, channel_id: str) -> list[dict[str, Any]]:
        """Every message of the channel (thread replies too), oldest first."""
        with self._lock:
            return [dict(message) for message in self.channels[channel_id].messages]

    def rate_limited(self, channel_id: str | None = None) -> int:
        with self._lock:
            if channel_id is not None:
                return self.channels[channel_id].rate_limited
            return sum(channel.rate_limited for channel in self.channels.values())

    # the API -----------------------------------------------------------------------------

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(path)
        args: dict[str, Any] = dict(parse_qsl(split.query))
        content_type = headers.get("content-type", "")
        if body:
            if "json" in content_type:
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                if not isinstance(parsed, dict):
                    return _answer({"ok": False, "error": "invalid_json"})
                args.update(parsed)
            else:
                args.update(parse_qsl(body.decode("utf-8", "replace")))
        with self._lock:
            if self._failures:
                status = self._failures.pop(0)
                self.requests.append((split.path, str(args.get("channel", ""))))
                return status, {"Content-Type": "text/plain"}, b"internal_error"
        if split.path.startswith("/services/"):
            return self._webhook(split.path, args)
        if split.path.startswith("/commands/"):
            return self._respond(split.path, args)
        if split.path == "/_fake/stats":  # for benchmarks that run the fake in another process
            with self._lock:
                limited = {channel.id: channel.rate_limited for channel in self.channels.values()}
                posted = sum(len(channel.messages) for channel in self.channels.values())
            return _answer({"ok": True, "rate_limited": sum(limited.values()), "messages": posted})
        if not split.path.startswith("/api/"):
            return 404, {"Content-Type": "text/plain"}, b"not found"
        name = split.path[len("/api/") :]
        auth = headers.get("authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else str(args.get("token", ""))
        with self._lock:
            self.requests.append((name, str(args.get("channel", ""))))
        if not token:
            return _answer({"ok": False, "error": "not_authed"})
        if name == "apps.connections.open":
            if token not in self.app_tokens:
                return _answer({"ok": False, "error": "invalid_auth"})
            if self.socket_url is None:
                return _answer({"ok": False, "error": "internal_error"})
            return _answer({"ok": True, "url": self.socket_url})
        state = self.tokens.get(token)
        if state is None:
            return _answer({"ok": False, "error": "invalid_auth"})
        if state != "ok":
            return _answer({"ok": False, "error": state})
        if name == "auth.test":
            return _answer(
                {"ok": True, "team": "Fake", "team_id": "T0FAKE", "user_id": "U0BOT", "bot_id": "B0BOT"}
            )
        if name == "chat.postMessage":
            return self._post(args)
        if name in ("conversations.history", "conversations.replies"):
            return self._history(name, args)
        return _answer({"ok": False, "error": "unknown_method"})

    def _post(self, args: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        channel_id = str(args.get("channel", ""))
        with self._lock:
            channel = self.channels.get(channel_id)
            if channel is None:
                return _answer({"ok": False, "error": "channel_not_found"})
            if channel.archived:
                return _answer({"ok": False, "error": "is_archived"})
            if not channel.member:
                return _answer({"ok": False, "error": "not_in_channel"})
        problem = _check_payload(args)
        if problem is not None:
            return _answer({"ok": False, **problem})
        with self._lock:
            wait = self._take(channel)
            if wait is not None:
                return _rate_limited(wait)
            message = self._store(channel, args, bot=True)
            drop = self._drops > 0
            if drop:
                self._drops -= 1
        if drop:
            raise _Drop
        return _answer({"ok": True, "channel": channel_id, "ts": message["ts"], "message": message})

    def _webhook(self, path: str, args: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        channel_id = self.webhooks.get(path)
        with self._lock:
            self.requests.append((path, channel_id or ""))
        if channel_id is None:
            return _text(404, "no_service")
        with self._lock:
            channel = self.channels.get(channel_id)
            if channel is None:
                return _text(404, "channel_not_found")
            if channel.archived:
                return _text(410, "channel_is_archived")
        problem = _check_payload(args)
        if problem is not None:
            return _text(400, "invalid_blocks" if problem["error"] == "invalid_blocks" else "invalid_payload")
        with self._lock:
            wait = self._take(channel)
            if wait is not None:
                return _rate_limited(wait)
            self._store(channel, args, bot=False)
            drop = self._drops > 0
            if drop:
                self._drops -= 1
        if drop:
            raise _Drop
        return _text(200, "ok")

    def _respond(self, path: str, args: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            channel_id = self.response_urls.get(path)
            if channel_id is None:
                return _text(404, "no_service")
            if len(self._responses[path]) >= 5:
                return _text(404, "used_url")
        if not args.get("text") and not args.get("blocks"):
            return _text(400, "no_text")
        if _check_payload(args) is not None:
            return _text(400, "invalid_blocks")
        with self._lock:
            self._responses[path].append(dict(args))
            if args.get("response_type") == "in_channel":
                self._store(self.channels[channel_id], args, bot=True)
        return _text(200, "ok")

    def _history(self, name: str, args: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        channel_id = str(args.get("channel", ""))
        with self._lock:
            channel = self.channels.get(channel_id)
            if channel is None:
                return _answer({"ok": False, "error": "channel_not_found"})
            if not channel.member:
                return _answer({"ok": False, "error": "not_in_channel"})
            messages = list(channel.messages)
        if name == "conversations.replies":
            parent = str(args.get("ts", ""))
            messages = [m for m in messages if m["ts"] == parent or m.get("thread_ts") == parent]
            if not messages:
                return _answer({"ok": False, "error": "thread_not_found"})
        else:  # history holds top-level messages only; replies live in their thread
            messages = [m for m in messages if m.get("thread_ts") in (None, m["ts"])]
            messages.reverse()  # newest first
        oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or math.inf)
        messages = [m for m in messages if oldest <= float(m["ts"]) <= latest]
        limit = int(args.get("limit") or 100)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = []
        for message in messages[:limit]:
            copy = {key: value for key, value in message.items() if key != "metadata"}
            if with_metadata and "metadata" in message:
                copy["metadata"] = message["metadata"]
            shown.append(copy)
        return _answer({"ok": True, "messages": shown, "has_more": len(messages) > limit})

    def _take(self, channel: Channel) -> float | None:
        """A token from the channel's bucket, or the seconds until there is one."""
        if not self.rate_limit:
            return None
        now = self.clock()
        channel.tokens = min(float(self.burst), channel.tokens + (now - channel.refilled) * self.rate)
        channel.refilled = now
        if channel.tokens >= 1.0:
            channel.tokens -= 1.0
            return None
        channel.rate_limited += 1
        return (1.0 - channel.tokens) / self.rate

    def _store(self, channel: Channel, args: dict[str, Any], *, bot: bool) -> dict[str, Any]:
        self._last_ts = max(round(self._ts_base + self.clock(), 6), round(self._last_ts + 1e-6, 6))
        message: dict[str, Any] = {
            "type": "message",
            "ts": f"{self._last_ts:.6f}",
            "text": args.get("text", ""),
        }
        if args.get("blocks") is not None:
            message["blocks"] = _blocks(args["blocks"])
        if bot:
            message["bot_id"] = "B0BOT"
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
        metadata = _metadata(args.get("metadata"))
        if metadata is not None:
            message["metadata"] = metadata
        for flag in ("unfurl_links", "unfurl_media", "mrkdwn"):
            if flag in args:
                message[flag] = str(args[flag]).lower() in ("1", "true")
        channel.messages.append(message)
        return dict(message)


def _answer(body: dict[str, Any], status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(body).encode()


def _text(status: int, body: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "text/plain"}, body.encode()


def _rate_limited(wait: float) -> tuple[int, dict[str, str], bytes]:
    status, headers, body = _answer({"ok": False, "error": "ratelimited"}, 429)
    return status, {**headers, "Retry-After": str(max(1, math.ceil(wait)))}, body


def _blocks(value: Any) -> Any:
    if isinstance(value, str):  # form-encoded posts carry blocks as a JSON string
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _metadata(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def _check_payload(args: dict[str, Any]) -> dict[str, Any] | None:
    """Slack's refusal for this message, or None when it would be accepted."""
    text = args.get("text")
    blocks = _blocks(args.get("blocks"))
    if not text and not blocks:
        return {"error": "no_text"}
    if isinstance(text, str) and len(text) > TEXT_MAX:
        return {"error": "msg_too_long"}
    if "metadata" in args and args["metadata"] is not None:
        metadata = _metadata(args["metadata"])
        if (
            metadata is None
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            return {"error": "invalid_metadata_format"}
    if blocks is None:
        return None
    problems = list(_block_problems(blocks))
    if problems:
        return {"error": "invalid_blocks", "response_metadata": {"messages": problems}}
    if sum(len(part) for part in _texts(blocks)) > BLOCKS_TEXT_MAX:
        return {"error": "msg_blocks_too_long"}
    return None


def _block_problems(blocks: Any) -> Iterator[str]:
    if not isinstance(blocks, list):
        yield "[ERROR] must be an array [json-pointer:/blocks]"
        return
    if len(blocks) > BLOCKS_MAX:
        yield f"[ERROR] must provide an array of no more than {BLOCKS_MAX} items [json-pointer:/blocks]"
    for index, block in enumerate(blocks):
        where = f"[json-pointer:/blocks/{index}"
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            yield f"[ERROR] unknown block type {where}]"
            continue
        kind = block["type"]
        if kind == "header":
            text: Any = block.get("text")
            if not _text_object(text, plain_only=True):
                yield f"[ERROR] must be a plain_text object {where}/text]"
            elif len(text["text"]) > HEADER_MAX:
                yield f"[ERROR] must be less than {HEADER_MAX + 1} characters {where}/text/text]"
        elif kind == "section":
            text = block.get("text")
            if not _text_object(text):
                yield f"[ERROR] must be a text object {where}/text]"
            elif len(text["text"]) > SECTION_MAX:
                yield f"[ERROR] must be less than {SECTION_MAX + 1} characters {where}/text/text]"
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                yield f"[ERROR] must provide 1 to 10 elements {where}/elements]"
            elif not all(_text_object(element) for element in elements):
                yield f"[ERROR] must be text objects {where}/elements]"
        elif kind == "rich_text":
            for section in block.get("elements") or [None]:
                if not isinstance(section, dict) or section.get("type") != "rich_text_section":
                    yield f"[ERROR] must be a rich_text_section {where}/elements]"
                    continue
                for element in section.get("elements") or [None]:
                    if not isinstance(element, dict) or element.get("type") not in RICH_ELEMENTS:
                        yield f"[ERROR] unknown rich text element {where}/elements]"
                    elif element["type"] in ("text", "link") and not isinstance(element.get("text", ""), str):
                        yield f"[ERROR] text must be a string {where}/elements]"
                    elif element["type"] == "link" and not re.match(r"https?://", str(element.get("url"))):
                        yield f"[ERROR] must be a valid URL {where}/elements]"


def _text_object(value: Any, *, plain_only: bool = False) -> bool:
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    return isinstance(value, dict) and value.get("type") in kinds and isinstance(value.get("text"), str)


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "text" and isinstance(inner, str):
                yield inner
            else:
                yield from _texts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _texts(inner)


# -- what a client shows ---------------------------------------------------------------------

_ANGLE = re.compile(r"<([^<>]*)>")
_FORMATS = (
    ("bold", re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")),
    ("italic", re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")),
    ("strike", re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")),
    ("code", re.compile(r"`([^`\n]+)`")),
)


def seen(message: dict[str, Any]) -> Seen:
    """What a client shows for a stored message: its blocks when it has them, else its text."""
    parts: list[str] = []
    links: list[tuple[str, str]] = []
    mentions: list[str] = []
    formatted: list[tuple[str, str]] = []
    blocks = message.get("blocks")
    if not blocks:
        _mrkdwn(str(message.get("text", "")), parts, links, mentions, formatted, message.get("mrkdwn", True))
    for block in blocks or []:
        objects: list[Any] = []
        if block.get("type") in ("header", "section"):
            objects = [block.get("text")]
        elif block.get("type") == "context":
            objects = list(block.get("elements", []))
        elif block.get("type") == "rich_text":
            for section in block.get("elements", []):
                for element in section.get("elements", []):
                    _rich(element, parts, links, mentions, formatted)
            parts.append("\n")
            continue
        for item in objects:
            if isinstance(item, dict) and item.get("type") == "mrkdwn":
                _mrkdwn(str(item.get("text", "")), parts, links, mentions, formatted)
            elif isinstance(item, dict):
                parts.append(str(item.get("text", "")))  # plain_text: literal
            parts.append("\n")
    return Seen("".join(parts), tuple(links), tuple(mentions), tuple(formatted))


def seen_text(message: dict[str, Any]) -> Seen:
    """What a notification shows: the top-level `text`, parsed as mrkdwn (markup off when the
    message was posted with `mrkdwn: false`; links and mentions are parsed either way)."""
    return seen({"text": message.get("text", ""), "mrkdwn": message.get("mrkdwn", True)})


def _rich(
    element: dict[str, Any],
    parts: list[str],
    links: list[tuple[str, str]],
    mentions: list[str],
    formatted: list[tuple[str, str]],
) -> None:
    kind = element.get("type")
    text = str(element.get("text", ""))
    if kind == "link":
        links.append((str(element.get("url")), text))
    elif kind == "user":
        mentions.append(f"<@{element.get('user_id')}>")
    elif kind == "broadcast":
        mentions.append(f"<!{element.get('range')}>")
    for style, on in (element.get("style") or {}).items():
        if on:
            formatted.append((str(style), text))
    parts.append(text)


def _mrkdwn(
    text: str,
    parts: list[str],
    links: list[tuple[str, str]],
    mentions: list[str],
    formatted: list[tuple[str, str]],
    markup: bool = True,
) -> None:
    shown: list[str] = []
    position = 0
    for match in _ANGLE.finditer(text):
        shown.append(text[position : match.start()])
        inner = match.group(1)
        if inner.startswith(("!", "@", "#")):
            mentions.append(match.group(0))
            shown.append(match.group(0))
        else:
            url, _, label = inner.partition("|")
            links.append((_unescape(url), _unescape(label or url)))
            shown.append(label or url)
        position = match.end()
    shown.append(text[position:])
    visible = "".join(shown)
    for style, pattern in _FORMATS if markup else ():
        formatted.extend((style, _unescape(found)) for found in pattern.findall(visible))
    parts.append(_unescape(visible))


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def main() -> None:
    """`python -m bot.testing.fake_slack`: a fake Slack on loopback until killed (for demos)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="xoxb-flarestart-demo")
    parser.add_argument("--channel", action="append", default=[], help="a channel id to create")
    parser.add_argument("--channels", type=int, default=0, help="also create C0000001 … C<N>")
    parser.add_argument("--rate", type=float, default=1.0, help="messages a second per channel")
    parser.add_argument("--burst", type=int, default=1, help="messages a channel may take at once")
    args = parser.parse_args()
    fake = FakeSlack(token=args.token, rate=args.rate, burst=args.burst)
    numbered = [f"C{number:07d}" for number in range(1, args.channels + 1)]
    for channel in args.channel + numbered or ["C0DEMO"]:
        fake.add_channel(channel)
    print(fake.api_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake._server.serve_forever()


if __name__ == "__main__":
    main()
