"""A fake Discord REST API on loopback that behaves like Discord where FlareStart depends on it.

Tests, benchmarks and the demo point the Discord poster (`api_url=fake.api_url`) and discord.py
(`discord.http.Route.BASE = fake.api_url`) at it. It binds to 127.0.0.1 only.

    with FakeDiscord(token="bot-token") as discord:
        discord.add_channel("1001")
        url = discord.add_webhook("1001")       # https-like webhook URL of the fake
        ...                                     # post through the poster or discord.py
        discord.history("1001")                 # what the channel holds, oldest first

What it does like Discord (API v10, paths under `/api/v10`):
- `POST /webhooks/{id}/{token}` (`?wait=true` answers the message, else 204), `GET` of the same
  URL (the webhook object); `POST /channels/{id}/messages` and `GET /channels/{id}/messages`
  (`limit` ≤ 100, `before`, newest first; the history has no nonces, as Discord's does not);
  `POST /users/@me/channels` (a DM channel for `recipient_id`); `GET /users/@me`.
- Interactions (for discord.py's CommandTree): `POST /interactions/{id}/{token}/callback`,
  `GET|PATCH|DELETE /webhooks/{application}/{token}/messages/@original`, follow-ups through
  `POST /webhooks/{application}/{token}`; command sync through `PUT|GET
  /applications/{application}/commands` and `…/guilds/{guild}/commands`. What arrived is in
  `callbacks` and `commands`.
- Auth: bot routes need `Authorization: Bot <token>` (401 `{"message": "401: Unauthorized",
  "code": 0}`). Errors carry Discord's JSON codes: 10003 Unknown Channel, 10013 Unknown User,
  10015 Unknown Webhook (404), 50001 Missing Access (403), 50007 Cannot send messages to this
  user (403), 50006 Cannot send an empty message and 50035 Invalid Form Body (400) with the
  nested `errors` object Discord sends (`{"embeds": {"0": {"title": {"_errors": [{"code":
  "BASE_TYPE_MAX_LENGTH", "message": "Must be 256 or fewer in length."}]}}}}`).
- Limits: content 2,000; at most 10 embeds; an embed's title 256, description 4,096, footer text
  2,048, author name 256, field name 256 / value 1,024, 25 fields; all embeds of a message 6,000
  characters together (`MAX_EMBED_SIZE_EXCEEDED`); embed, author and thumbnail URLs http(s) only
  (`URL_TYPE_INVALID_SCHEME`). These are the limits Discord documents for embeds and messages.
- Rate limits: a fixed window per route bucket (a webhook, a channel's messages): `limit`
  requests every `per` seconds. Every answer carries `X-RateLimit-Limit`, `-Remaining`,
  `-Reset`, `-Reset-After` and `-Bucket`; over the limit: 429, `Retry-After`, `X-RateLimit-Scope:
  user`, body `{"message": "You are being rate limited.", "retry_after": 1.25, "global": false}`.
  With `global_limit` set, bot requests above it a second get the global 429
  (`X-RateLimit-Global: true`, `"global": true`). `rate_limited` counts 429s.
- Nonces: a bot message with `nonce` and `enforce_nonce: true` whose nonce the same author used in
  the last `nonce_window` seconds is not posted again: the first message is answered instead.
- Faults on demand: `fail_next(n, status=502)`, `drop_after_accept(n)` (store the next n posts and
  close the connection without an answer), `delete_webhook`, `revoke_access`, `remove_channel`.

`seen(message)` says what a Discord client would show for a stored message: its text, the links
a reader can click, the mentions it renders and the pings it sends (content mentions allowed by
`allowed_mentions`; embeds never ping). Tests assert on that, not on JSON shapes.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.testing.served import DropConnection, LoopbackHTTPServer, ServedInThread, dispatching_handler

API_PREFIX = "/api/v10"
# Discord's limits, kept apart from the renderer's on purpose: the fake checks what we send.
CONTENT_MAX = 2_000
EMBEDS_MAX = 10
EMBED_TOTAL_MAX = 6_000
TITLE_MAX = 256
DESCRIPTION_MAX = 4_096
FOOTER_MAX = 2_048
AUTHOR_MAX = 256
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1_024
FIELDS_MAX = 25
BOT_USER_ID = "900000000000000001"
APPLICATION_ID = "900000000000000002"


@dataclass
class Channel:
    id: str
    kind: int = 0  # 0 guild text, 1 DM
    access: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)
    guild_id: str | None = "800000000000000001"
    recipient: str | None = None  # a DM's user


@dataclass
class Window:
    """A fixed rate-limit window: `count` requests since `started`."""

    started: float = -math.inf
    count: int = 0
    rate_limited: int = 0


@dataclass(frozen=True, slots=True)
class Seen:
    """A stored message as a Discord client shows it."""

    text: str
    links: tuple[str, ...]  # URLs a reader can click
    mentions: tuple[str, ...]  # "@everyone", "<@&123>", … rendered as mentions
    pings: tuple[str, ...]  # the mentions that notify someone


class _Drop(DropConnection):
    """Close the connection without an answer."""


Answer = tuple[int, dict[str, str], bytes]


class FakeDiscord(ServedInThread):
    _server: LoopbackHTTPServer

    def __init__(
        self,
        *,
        token: str = "flarestart-discord-test",
        limit: int = 5,
        per: float = 2.0,
        rate_limit: bool = True,
        global_limit: int | None = None,
        nonce_window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.limit = limit
        self.per = per
        self.rate_limit = rate_limit
        self.global_limit = global_limit
        self.nonce_window = nonce_window
        self.clock = clock
        self.application_id = APPLICATION_ID
        self.channels: dict[str, Channel] = {}
        self.webhooks: dict[str, tuple[str, str]] = {}  # webhook id → (token, channel id)
        self.users: set[str] = set()
        self.blocked_dms: set[str] = set()
        self.dm_channels: dict[str, str] = {}  # user id → DM channel id
        self.requests: list[tuple[str, str]] = []  # (method, path without the token)
        self.callbacks: list[dict[str, Any]] = []  # interaction callbacks, in arrival order
        self.followups: list[dict[str, Any]] = []  # follow-up and @original edits
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id → synced commands
        self.interaction_tokens: set[str] = set()
        self._windows: dict[str, Window] = {}
        self._global = Window()
        self._nonces: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._drops = 0
        self._next_id = 1_100_000_000_000_000_000
        self._epoch = time.time() - clock()
        self._server = LoopbackHTTPServer((host, port), dispatching_handler(self._handle))

    # setup -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """What `discord.http.Route.BASE` and the poster's `api_url` take (no trailing slash)."""
        return self.base_url + API_PREFIX

    def add_channel(self, channel_id: str, *, access: bool = True) -> Channel:
        with self._lock:
            channel = self.channels[channel_id] = Channel(channel_id, access=access)
            return channel

    def add_user(self, user_id: str, *, accepts_dms: bool = True) -> None:
        with self._lock:
            self.users.add(user_id)
            if not accepts_dms:
                self.blocked_dms.add(user_id)

    def add_webhook(self, channel_id: str) -> str:
        """A webhook URL that posts into `channel_id` (added if new)."""
        if channel_id not in self.channels:
            self.add_channel(channel_id)
        with self._lock:
            webhook_id = self._snowflake()
            self.webhooks[webhook_id] = (secrets.token_urlsafe(24), channel_id)
            return f"{self.api_url}/webhooks/{webhook_id}/{self.webhooks[webhook_id][0]}"

    def add_interaction_token(self) -> str:
        """A token for one interaction's callback and follow-ups (as Discord sends in the payload)."""
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(16)
        with self._lock:
            self.interaction_tokens.add(token)
        return token

    def delete_webhook(self, url: str) -> None:
        with self._lock:
            self.webhooks.pop(urlsplit(url).path.split("/")[-2], None)

    def revoke_access(self, channel_id: str) -> None:
        with self._lock:
            self.channels[channel_id].access = False

    def remove_channel(self, channel_id: str) -> None:
        with self._lock:
            self.channels.pop(channel_id, None)

    def fail_next(self, count: int, *, status: int = 502) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def drop_after_accept(self, count: int = 1) -> None:
        with self._lock:
            self._drops += count

    def history(self, channel_id: str) -> list[dict[str, Any]]:
        """Every message of the channel as stored (with its nonce and allowed_mentions), oldest first."""
        with self._lock:
            return [dict(message) for message in self.channels[channel_id].messages]

    def dm_history(self, user_id: str) -> list[dict[str, Any]]:
        return self.history(self.dm_channels[user_id]) if user_id in self.dm_channels else []

    def rate_limited(self) -> int:
        with self._lock:
            return sum(window.rate_limited for window in self._windows.values()) + self._global.rate_limited

    def _snowflake(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    # the API -----------------------------------------------------------------------------

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        split = urlsplit(path)
        query = dict(parse_qsl(split.query))
        payload: Any = None
        if body:
            if "multipart/form-data" in headers.get("content-type", ""):
                payload = _multipart_json(body, headers["content-type"])
            else:
                try:
                    payload = json.loads(body)
                except ValueError:
                    return _error(400, 50109, "The request body contains invalid JSON.")
        if split.path == "/_fake/stats":  # for benchmarks that run the fake in another process
            with self._lock:
                posted = sum(len(channel.messages) for channel in self.channels.values())
            return _json(200, {"rate_limited": self.rate_limited(), "messages": posted})
        if not split.path.startswith(API_PREFIX + "/"):
            return _error(404, 0, "404: Not Found")
        route = split.path[len(API_PREFIX) :].rstrip("/")
        parts = route.split("/")[1:]
        with self._lock:
            shown = "/".join(parts[:2]) if parts and parts[0] in ("webhooks", "interactions") else route
            self.requests.append((method, shown))
            if self._failures:
                status = self._failures.pop(0)
                return status, {"Content-Type": "text/plain"}, b"upstream connect error"
        # Webhooks and interaction callbacks authenticate by the token in their path.
        if parts[:1] == ["webhooks"] and len(parts) >= 3:
            return self._webhook(method, parts, query, payload)
        if parts[:1] == ["interactions"] and len(parts) == 4 and parts[3] == "callback" and method == "POST":
            return self._callback(parts[1], parts[2], payload, query)
        if headers.get("authorization", "") != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        limited = self._take_global()
        if limited is not None:
            return limited
        if route == "/users/@me" and method == "GET":
            return _json(200, _bot_user())
        if route in ("/oauth2/applications/@me", "/applications/@me") and method == "GET":
            return _json(200, self._application())
        if route == "/users/@me/channels" and method == "POST":
            return self._open_dm(payload)
        if parts[:1] == ["channels"] and len(parts) == 3 and parts[2] == "messages":
            if method == "POST":
                return self._post_message(parts[1], payload)
            if method == "GET":
                return self._list_messages(parts[1], query)
        if parts[:1] == ["applications"] and parts[-1] == "commands":
            return self._sync_commands(method, parts, payload)
        return _error(404, 0, "404: Not Found")

    def _post_message(self, channel_id: str, payload: Any) -> Answer:
        bucket = f"channel:{channel_id}:messages"
        with self._lock:
            channel = self.channels.get(channel_id)
            if channel is None:
                return _error(404, 10003, "Unknown Channel")
            if not channel.access:
                return _error(403, 50001, "Missing Access")
            if channel.recipient in self.blocked_dms:
                return _error(403, 50007, "Cannot send messages to this user")
        problem = _check_message(payload)
        if problem is not None:
            return problem
        with self._lock:
            limited = self._take(bucket)
            if isinstance(limited, tuple):
                return limited
            nonce = payload.get("nonce")
            if nonce is not None and payload.get("enforce_nonce"):
                earlier = self._nonces.get((BOT_USER_ID, str(nonce)))
                if earlier is not None and self.clock() - earlier[0] <= self.nonce_window:
                    return _json(200, _public(earlier[1], nonce=nonce), limited)
            message = self._store(channel, payload, author=_bot_user())
            if nonce is not None:
                self._nonces[(BOT_USER_ID, str(nonce))] = (self.clock(), message)
            drop = self._drops > 0
            if drop:
                self._drops -= 1
        if drop:
            raise _Drop
        return _json(200, _public(message, nonce=nonce), limited)

    def _list_messages(self, channel_id: str, query: dict[str, str]) -> Answer:
        with self._lock:
            channel = self.channels.get(channel_id)
            if channel is None:
                return _error(404, 10003, "Unknown Channel")
            if not channel.access:
                return _error(403, 50001, "Missing Access")
            messages = list(reversed(channel.messages))
        try:
            limit = min(100, max(1, int(query.get("limit") or 50)))
        except ValueError:
            return _form_error({"limit": "NUMBER_TYPE_COERCE", "_message": "Value is not int."})
        before = query.get("before")
        if before:
            messages = [m for m in messages if int(m["id"]) < int(before)]
        return _json(200, [_public(m) for m in messages[:limit]])

    def _open_dm(self, payload: Any) -> Answer:
        recipient = str((payload or {}).get("recipient_id", ""))
        with self._lock:
            if recipient not in self.users:
                return _error(400, 50035, "Invalid Form Body")
            channel_id = self.dm_channels.get(recipient)
            if channel_id is None:
                channel_id = self._snowflake()
                self.dm_channels[recipient] = channel_id
                # Discord opens it even for a user who takes no DMs; posting to it answers 50007.
                self.channels[channel_id] = Channel(channel_id, kind=1, guild_id=None, recipient=recipient)
        answer = {
            "id": channel_id,
            "type": 1,
            "recipients": [{"id": recipient, "username": f"user{recipient}"}],
        }
        return _json(200, answer)

    def _webhook(self, method: str, parts: list[str], query: dict[str, str], payload: Any) -> Answer:
        webhook_id, token = parts[1], parts[2]
        if webhook_id == self.application_id:
            return self._interaction_webhook(method, token, parts[3:], payload)
        with self._lock:
            known = self.webhooks.get(webhook_id)
        if known is None or known[0] != token:
            return _error(404, 10015, "Unknown Webhook")
        with self._lock:
            channel = self.channels.get(known[1])
        if channel is None:
            return _error(404, 10015, "Unknown Webhook")
        if method == "GET" and len(parts) == 3:
            return _json(200, {"id": webhook_id, "type": 1, "channel_id": channel.id, "token": token})
        if method != "POST" or len(parts) != 3:
            return _error(405, 0, "405: Method Not Allowed")
        problem = _check_message(payload)
        if problem is not None:
            return problem
        with self._lock:
            limited = self._take(f"webhook:{webhook_id}")
            if isinstance(limited, tuple):
                return limited
            author = {"id": webhook_id, "username": str(payload.get("username") or "FlareStart"), "bot": True}
            message = self._store(channel, payload, author=author, webhook_id=webhook_id)
            drop = self._drops > 0
            if drop:
                self._drops -= 1
        if drop:
            raise _Drop
        if query.get("wait", "").lower() in ("1", "true"):
            return _json(200, _public(message), limited)
        return 204, limited, b""

    # interactions ------------------------------------------------------------------------

    def _callback(self, interaction_id: str, token: str, payload: Any, query: dict[str, str]) -> Answer:
        with self._lock:
            if token not in self.interaction_tokens:
                return _error(404, 10062, "Unknown interaction")
            if any(c["token"] == token for c in self.callbacks):
                return _error(400, 40060, "Interaction has already been acknowledged.")
            problem = None
            data = (payload or {}).get("data") or {}
            if isinstance(data, dict) and ("content" in data or "embeds" in data):
                problem = _check_message(data, empty_ok=True)
            if problem is not None:
                return problem
            self.callbacks.append({"id": interaction_id, "token": token, **(payload or {})})
            message_id = self._snowflake()
        if query.get("with_response", "").lower() not in ("1", "true"):
            return 204, {}, b""
        # discord.py ≥ 2.5 asks for the callback's result (the interaction and the message it made)
        kind = int((payload or {}).get("type") or 0)
        flags = int((data if isinstance(data, dict) else {}).get("flags") or 0)
        resource: dict[str, Any] = {"type": kind}
        if kind == 4:
            resource["message"] = {**_message_shell(message_id, "0", _bot_user()), **data, "flags": flags}
        interaction = {
            "id": interaction_id,
            "type": 2,
            "response_message_id": message_id if kind in (4, 5) else None,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(flags & 64),
        }
        return _json(200, {"interaction": interaction, "resource": resource})

    def _interaction_webhook(self, method: str, token: str, rest: list[str], payload: Any) -> Answer:
        with self._lock:
            if token not in self.interaction_tokens:
                return _error(404, 10015, "Unknown Webhook")
        if rest == ["messages", "@original"] and method == "GET":
            return _json(200, self._original(token))
        if rest == ["messages", "@original"] and method in ("PATCH", "DELETE"):
            with self._lock:
                self.followups.append({"token": token, "kind": method.lower(), **(payload or {})})
            return (204, {}, b"") if method == "DELETE" else _json(200, self._original(token, payload))
        if not rest and method == "POST":
            problem = _check_message(payload)
            if problem is not None:
                return problem
            with self._lock:
                self.followups.append({"token": token, "kind": "followup", **(payload or {})})
                message_id = self._snowflake()
            return _json(200, {**_message_shell(message_id, "0", _bot_user()), **(payload or {})})
        return _error(404, 0, "404: Not Found")

    def _application(self) -> dict[str, Any]:
        return {
            "id": self.application_id,
            "name": "FlareStart",
            "description": "Where developers start their day",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": {"id": "900000000000000009", "username": "owner", "discriminator": "0", "avatar": None},
            "verify_key": "0" * 64,
            "flags": 0,
            "bot": _bot_user(),
        }

    def _original(self, token: str, payload: Any = None) -> dict[str, Any]:
        return {**_message_shell(f"1{abs(hash(token)) % 10**17}", "0", _bot_user()), **(payload or {})}

    def _sync_commands(self, method: str, parts: list[str], payload: Any) -> Answer:
        if parts[1] != self.application_id:
            return _error(403, 50001, "Missing Access")
        scope = parts[3] if len(parts) == 5 and parts[2] == "guilds" else "global"
        with self._lock:
            if method == "PUT":
                if not isinstance(payload, list):
                    return _form_error({"_message": "Must be an array."})
                synced = [
                    {
                        "id": self._snowflake(),
                        "application_id": self.application_id,
                        "version": "1",
                        "type": 1,
                        "default_member_permissions": None,
                        "dm_permission": True,
                        "nsfw": False,
                        **({"guild_id": scope} if scope != "global" else {}),
                        **command,
                        # Discord answers the permission bits as a string
                        **(
                            {"default_member_permissions": str(command["default_member_permissions"])}
                            if command.get("default_member_permissions") is not None
                            else {}
                        ),
                    }
                    for command in payload
                ]
                self.commands[scope] = synced
                return _json(200, synced)
            if method == "GET":
                return _json(200, self.commands.get(scope, []))
        return _error(405, 0, "405: Method Not Allowed")

    # storage and limits ------------------------------------------------------------------

    def _store(
        self,
        channel: Channel,
        payload: dict[str, Any],
        *,
        author: dict[str, Any],
        webhook_id: str | None = None,
    ) -> dict[str, Any]:
        now = self.clock()
        message: dict[str, Any] = {
            **_message_shell(self._snowflake(), channel.id, author),
            "content": str(payload.get("content") or ""),
            "embeds": [dict(embed) for embed in payload.get("embeds") or []],
            "timestamp": datetime.fromtimestamp(self._epoch + now, UTC).isoformat(),
            # kept for assertions; the API never shows them again (Discord's history has no nonce)
            "nonce": payload.get("nonce"),
            "allowed_mentions": payload.get("allowed_mentions"),
            "flags": int(payload.get("flags") or 0),
        }
        if webhook_id is not None:
            message["webhook_id"] = webhook_id
        if channel.kind == 0 and channel.guild_id:
            message["guild_id"] = channel.guild_id
        channel.messages.append(message)
        return message

    def _take(self, bucket: str) -> dict[str, str] | Answer:
        """A request in `bucket`'s window: its rate-limit headers, or the 429 answer."""
        window = self._windows.setdefault(bucket, Window())
        now = self.clock()
        if now - window.started >= self.per:
            window.started, window.count = now, 0
        # whole milliseconds, rounded up: a client that waits what it is told is never early
        reset_after = math.ceil(max(0.0, window.started + self.per - now) * 1000) / 1000
        name = _bucket_hash(bucket)
        if not self.rate_limit:
            return {}
        if window.count >= self.limit:
            window.rate_limited += 1
            retry = reset_after
            headers = {
                "Retry-After": str(max(1, math.ceil(retry))),
                "X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{self._epoch + now + retry:.3f}",
                "X-RateLimit-Reset-After": f"{retry:.3f}",
                "X-RateLimit-Bucket": name,
                "X-RateLimit-Scope": "user",
            }
            body = {"message": "You are being rate limited.", "retry_after": retry, "global": False}
            status, extra, data = _json(429, body)
            return status, {**extra, **headers}, data
        window.count += 1
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.limit - window.count),
            "X-RateLimit-Reset": f"{self._epoch + now + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": name,
        }

    def _take_global(self) -> Answer | None:
        if self.global_limit is None or not self.rate_limit:
            return None
        with self._lock:
            now = self.clock()
            window = self._global
            if now - window.started >= 1.0:
                window.started, window.count = now, 0
            if window.count < self.global_limit:
                window.count += 1
                return None
            window.rate_limited += 1
            retry = math.ceil(max(0.0, window.started + 1.0 - now) * 1000) / 1000
        body = {"message": "You are being rate limited.", "retry_after": retry, "global": True}
        status, extra, data = _json(429, body)
        headers = {"Retry-After": str(max(1, math.ceil(retry))), "X-RateLimit-Global": "true"}
        return status, {**extra, **headers, "X-RateLimit-Scope": "global"}, data


def _bot_user() -> dict[str, Any]:
    return {"id": BOT_USER_ID, "username": "FlareStart", "discriminator": "0", "bot": True, "avatar": None}


def _message_shell(message_id: str, channel_id: str, author: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": 0,
        "channel_id": channel_id,
        "author": author,
        "content": "",
        "embeds": [],
        "attachments": [],
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "pinned": False,
        "tts": False,
        "timestamp": "2026-01-01T00:00:00+00:00",
        "edited_timestamp": None,
        "components": [],
    }


def _public(message: dict[str, Any], *, nonce: Any = None) -> dict[str, Any]:
    """A stored message as the API returns it: the nonce only in the answer to its own post."""
    shown = {key: value for key, value in message.items() if key not in ("nonce", "allowed_mentions")}
    if nonce is not None:
        shown["nonce"] = nonce
    return shown


def _bucket_hash(bucket: str) -> str:
    return format(abs(hash(("flarestart-fake", bucket.split(":")[0]))) % 16**16, "016x")


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def _error(status: int, code: int, message: str) -> Answer:
    return _json(status, {"message": message, "code": code})


def _form_error(errors: dict[str, Any]) -> Answer:
    return _json(400, {"message": "Invalid Form Body", "code": 50035, "errors": errors})


def _problem(code: str, message: str) -> dict[str, Any]:
    return {"_errors": [{"code": code, "message": message}]}


def _multipart_json(body: bytes, content_type: str) -> Any:
    """The `payload_json` part of a multipart body (discord.py sends files that way)."""
    boundary = content_type.split("boundary=")[-1].strip('"').encode()
    for part in body.split(b"--" + boundary):
        if b'name="payload_json"' in part:
            return json.loads(part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0])
    return {}


def _check_message(payload: Any, *, empty_ok: bool = False) -> Answer | None:
    """Discord's refusal of this message body, or None when it would be accepted."""
    if not isinstance(payload, dict):
        return _form_error(
            {"_errors": [{"code": "DICT_TYPE_CONVERT", "message": "Only dictionaries may be used."}]}
        )
    content = payload.get("content")
    embeds = payload.get("embeds") or []
    errors: dict[str, Any] = {}
    if content is not None and not isinstance(content, str):
        errors["content"] = _problem("STRING_TYPE_CONVERT", "Could not interpret as string.")
    elif isinstance(content, str) and len(content) > CONTENT_MAX:
        errors["content"] = _problem("BASE_TYPE_MAX_LENGTH", f"Must be {CONTENT_MAX} or fewer in length.")
    if not isinstance(embeds, list):
        errors["embeds"] = _problem("LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        embeds = []
    elif len(embeds) > EMBEDS_MAX:
        errors["embeds"] = _problem("BASE_TYPE_MAX_LENGTH", f"Must be {EMBEDS_MAX} or fewer in length.")
    total = 0
    for index, embed in enumerate(embeds):
        found = _embed_problems(embed)
        total += _embed_size(embed) if isinstance(embed, dict) else 0
        if found:
            errors.setdefault("embeds", {})[str(index)] = found
    if total > EMBED_TOTAL_MAX and "embeds" not in errors:
        errors["embeds"] = _problem(
            "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}"
        )
    mentions = payload.get("allowed_mentions")
    if mentions is not None and (
        not isinstance(mentions, dict) or not isinstance(mentions.get("parse", []), list)
    ):
        errors["allowed_mentions"] = _problem(
            "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
        )
    nonce = payload.get("nonce")
    if nonce is not None and (not isinstance(nonce, str | int) or len(str(nonce)) > 25):
        errors["nonce"] = _problem("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    if errors:
        return _form_error(errors)
    if not empty_ok and not content and not embeds and not payload.get("components"):
        return _error(400, 50006, "Cannot send an empty message")
    return None


def _embed_problems(embed: Any) -> dict[str, Any]:
    if not isinstance(embed, dict):
        return _problem("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    found: dict[str, Any] = {}

    def text(where: dict[str, Any], holder: dict[str, Any], key: str, limit: int) -> None:
        value = holder.get(key)
        if value is None:
            return
        if not isinstance(value, str):
            where[key] = _problem("STRING_TYPE_CONVERT", "Could not interpret as string.")
        elif len(value) > limit:
            where[key] = _problem("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def url(where: dict[str, Any], holder: dict[str, Any], key: str) -> None:
        value = holder.get(key)
        if value is None:
            return
        scheme = urlsplit(str(value)).scheme
        if scheme not in ("http", "https", "attachment"):
            where[key] = _problem(
                "URL_TYPE_INVALID_SCHEME",
                f"Scheme \"{scheme}\" is not supported. Scheme must be one of ('http', 'https').",
            )

    text(found, embed, "title", TITLE_MAX)
    text(found, embed, "description", DESCRIPTION_MAX)
    url(found, embed, "url")
    for key, limit in (("footer", FOOTER_MAX), ("author", AUTHOR_MAX)):
        inner = embed.get(key)
        if inner is None:
            continue
        if not isinstance(inner, dict):
            found[key] = _problem("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
            continue
        nested: dict[str, Any] = {}
        text(nested, inner, "text" if key == "footer" else "name", limit)
        url(nested, inner, "url")
        if nested:
            found[key] = nested
    for key in ("thumbnail", "image"):
        inner = embed.get(key)
        if isinstance(inner, dict):
            nested = {}
            url(nested, inner, "url")
            if nested:
                found[key] = nested
    timestamp = embed.get("timestamp")
    if timestamp is not None:
        try:
            datetime.fromisoformat(str(timestamp))
        except ValueError:
            found["timestamp"] = _problem("DATE_TYPE_PARSE", "Could not parse timestamp.")
    fields = embed.get("fields") or []
    if len(fields) > FIELDS_MAX:
        found["fields"] = _problem("BASE_TYPE_MAX_LENGTH", f"Must be {FIELDS_MAX} or fewer in length.")
    for index, item in enumerate(fields if isinstance(fields, list) else []):
        nested = {}
        if isinstance(item, dict):
            text(nested, item, "name", FIELD_NAME_MAX)
            text(nested, item, "value", FIELD_VALUE_MAX)
        if nested:
            found.setdefault("fields", {})[str(index)] = nested
    return found


def _embed_size(embed: dict[str, Any]) -> int:
    """The characters Discord counts toward the 6,000 of a message."""
    size = len(str(embed.get("title") or "")) + len(str(embed.get("description") or ""))
    size += len(str((embed.get("footer") or {}).get("text") or ""))
    size += len(str((embed.get("author") or {}).get("name") or ""))
    for item in embed.get("fields") or []:
        if isinstance(item, dict):
            size += len(str(item.get("name") or "")) + len(str(item.get("value") or ""))
    return size


# -- what a client shows ---------------------------------------------------------------------

_PRIVATE = 0xF0000  # an escaped character c is matched as chr(_PRIVATE + ord(c)), then put back
_MENTION = re.compile(r"@everyone|@here|<@!?\d+>|<@&\d+>|<#\d+>")
_MASKED = re.compile(r"\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?\s*\)")
_BARE = re.compile(r"<?(https?://[^\s<>]+)>?")
_FORMATTING = re.compile(r"\*\*|__|~~|\|\||[*_`]|^(?:-# |#{1,3} |> )", re.MULTILINE)


def _active(text: str) -> str:
    """`text` with every backslash-escaped character masked (it acts on nothing) and its backslash gone."""
    active: list[str] = []
    position = 0
    while position < len(text):
        char = text[position]
        following = text[position + 1] if position + 1 < len(text) else ""
        if char == "\\" and following and not following.isalnum() and not following.isspace():
            active.append(chr(_PRIVATE + ord(following)))
            position += 2
            continue
        active.append(char)
        position += 1
    return "".join(active)


def _unmask(text: str) -> str:
    return "".join(chr(ord(char) - _PRIVATE) if ord(char) >= _PRIVATE else char for char in text)


def _markdown(text: str, links: list[str], mentions: list[str]) -> str:
    active = _active(text)
    links.extend(_unmask(match.group(2)) for match in _MASKED.finditer(active))
    visible = _MASKED.sub(lambda match: match.group(1), active)
    links.extend(_unmask(match.group(1)) for match in _BARE.finditer(_MASKED.sub("", active)))
    mentions.extend(match.group(0) for match in _MENTION.finditer(active))
    return _unmask(_FORMATTING.sub("", visible))


def seen(message: dict[str, Any]) -> Seen:
    """What a client shows for a stored message (content, then each embed), and who it pings."""
    links: list[str] = []
    mentions: list[str] = []
    lines = [_markdown(str(message.get("content") or ""), links, mentions)]
    content_mentions = list(mentions)
    for embed in message.get("embeds") or []:
        author = embed.get("author") or {}
        if author.get("name"):
            lines.append(str(author["name"]))  # plain text
        if author.get("url"):
            links.append(str(author["url"]))
        if embed.get("title"):
            lines.append(_markdown(str(embed["title"]), links, mentions))
        if embed.get("url"):
            links.append(str(embed["url"]))
        if embed.get("description"):
            lines.append(_markdown(str(embed["description"]), links, mentions))
        for item in embed.get("fields") or []:
            lines.append(str(item.get("name", "")))
            lines.append(_markdown(str(item.get("value", "")), links, mentions))
        if (embed.get("footer") or {}).get("text"):
            lines.append(str(embed["footer"]["text"]))  # plain text, no markdown
    allowed = message.get("allowed_mentions")
    parse = set(allowed.get("parse", [])) if isinstance(allowed, dict) else {"everyone", "users", "roles"}
    pings = []
    for mention in content_mentions:
        if mention in ("@everyone", "@here"):
            kind = "everyone"
        elif mention.startswith("<@&"):
            kind = "roles"
        elif mention.startswith("<@"):
            kind = "users"
        else:
            continue  # channel links never notify
        if kind in parse:
            pings.append(mention)
    return Seen("\n".join(line for line in lines if line), tuple(links), tuple(mentions), tuple(pings))


def main() -> None:
    """`python -m bot.testing.fake_discord`: a fake Discord on loopback until killed (benchmarks, demos).

    Prints the API URL, then one webhook URL a line for `--webhooks N`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="flarestart-discord-demo")
    parser.add_argument("--channel", action="append", default=[], help="a channel id to create")
    parser.add_argument("--webhooks", type=int, default=0, help="create N webhooks (one channel each)")
    parser.add_argument("--limit", type=int, default=5, help="requests per window per route bucket")
    parser.add_argument("--per", type=float, default=2.0, help="the window, in seconds")
    parser.add_argument("--no-rate-limit", action="store_true")
    args = parser.parse_args()
    fake = FakeDiscord(token=args.token, limit=args.limit, per=args.per, rate_limit=not args.no_rate_limit)
    for channel in args.channel:
        fake.add_channel(channel)
    hooks = [fake.add_webhook(str(2_000_000 + number)) for number in range(args.webhooks)]
    print(fake.api_url, flush=True)
    for hook in hooks:
        print(hook, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        fake._server.serve_forever()


if __name__ == "__main__":
    main()
