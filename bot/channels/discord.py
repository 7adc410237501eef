"""Post a digest's Discord messages to a channel, a DM or a webhook, each part exactly once, at
Discord's pace.

    poster = DiscordPoster(token=bot_token, log=part_log, api_url="https://discord.com/api/v10")
    receipt = await poster.post(DiscordDestination(channel="1234567890"), messages, key=delivery_key)
    await poster.aclose()

Plain HTTP through aiohttp (which discord.py brings): the poster needs four REST calls, and its
retry decisions must sit next to the part log, not inside a client library that retries on its own.

Pace: Discord says its limits in headers. Each answer's `X-RateLimit-Remaining` and
`X-RateLimit-Reset-After` are kept per route bucket (a channel's messages, a webhook: the route
and its major parameter); a bucket with nothing remaining is not asked again before it resets, so
a paced route does not meet a 429 (`RouteLimits`, shared by every send of the process; requests to
one bucket go one at a time). A 429 is honoured all the same: its body's `retry_after` (else the
`Retry-After` header) holds that bucket, or every bucket when `global` is true; a short one (up to
`wait_in_place`, 5 s) is slept here and the part tried again, a longer one ends the attempt with
`DeliveryTransientError(retry_after=…)` so the job queue retries no sooner. Connection errors,
timeouts and 5xx are transient too. Unknown channel/webhook/user (404), missing access or
permissions and closed DMs (403) and a bad token (401) are permanent (`DiscordPermanentError`,
`reason` a short name such as `unknown_webhook`, so the caller can pause the subscriber and say
why), and so is a body Discord refuses (50035 Invalid Form Body): trying again sends the same bytes.

Exactly once: each part's message id goes into the `PartLog` as soon as Discord answers, and
parts already there are never posted again. Bot messages (channels and DMs) carry a nonce made from
the delivery key and the part, with `enforce_nonce`: a post retried inside Discord's nonce window
(after a dropped answer) returns the first message instead of a second one. Past that window, the
content's last line is a small marker (`-# fs·<key hash> 2/3`): when the log already holds a part
of this delivery, or the caller says an earlier attempt may have posted (`resume=True`, a retried
job), the newest `history_window` messages of the channel are searched for this key's markers and
the parts found are recorded instead of posted. Webhooks have neither history nor nonces: parts in
the log are never re-posted, but a crash between Discord accepting a part and the log recording it
re-posts that one part (at most one duplicate per crash, the window email has too).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.channels.base import Receipt
from bot.channels.parts import PartLog, parts_receipt
from bot.digest.discord import DiscordMessage
from bot.errors import DeliveryPermanentError, DeliveryTransientError

log = logging.getLogger(__name__)

__all__ = [
    "DISCORD_API_URL",
    "DiscordDestination",
    "DiscordPermanentError",
    "DiscordPoster",
    "RouteLimits",
    "part_marker",
    "part_nonce",
]

DISCORD_API_URL = "https://discord.com/api/v10"
# Discord's JSON error codes that trying again cannot fix: (reason, what to tell the operator).
PERMANENT: dict[int, tuple[str, str]] = {
    10003: ("unknown_channel", "Discord channel {where} does not exist or the bot cannot see it"),
    10013: ("unknown_user", "Discord user {where} does not exist"),
    10015: ("unknown_webhook", "the Discord webhook {where} was deleted"),
    50001: ("missing_access", "the FlareStart bot has no access to Discord channel {where}: add it there"),
    50013: (
        "missing_permissions",
        "the FlareStart bot may not post in Discord channel {where} (Send Messages, Embed Links)",
    ),
    50007: ("cannot_dm", "Discord user {where} does not accept direct messages from the bot"),
}
BY_STATUS: dict[int, tuple[str, str]] = {
    401: ("invalid_token", "the Discord bot token is not valid (DISCORD_BOT_TOKEN)"),
    403: ("missing_access", "the FlareStart bot has no access to Discord channel {where}"),
    404: ("unknown_channel", "Discord channel {where} does not exist or the bot cannot see it"),
}
# Reasons that mean the destination cannot take digests until someone acts: the subscriber is
# paused with the message as the reason (DeliveryPermanentError.pauses). A refused body is not
# one of them: the next digest may well pass.
PAUSING = frozenset(
    {
        "unknown_channel",
        "unknown_webhook",
        "unknown_user",
        "missing_access",
        "missing_permissions",
        "cannot_dm",
        "invalid_token",
        "no_token",
        "webhook_env_unset",
        "no_address",
    }
)
_MARKER = re.compile(r"(?:^|\n)-# fs·([0-9a-f]{12}) (\d+)/(\d+)$")


class DiscordPermanentError(DeliveryPermanentError):
    """A Discord delivery that cannot work as configured; `reason` is a short name of why."""

    def __init__(self, *args: object, reason: str = "") -> None:
        super().__init__(*args)
        self.reason = reason  # an attribute: exceptions pickle their args and their __dict__
        self.pauses = reason in PAUSING


@dataclass(frozen=True, slots=True)
class DiscordDestination:
    """Where a digest goes: a channel id or a user id (a DM), posted with the bot token, or a
    webhook URL. Exactly one."""

    channel: str | None = None
    webhook_url: str | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        if sum(value is not None for value in (self.channel, self.webhook_url, self.user)) != 1:
            raise ValueError("a Discord destination is a channel, a webhook URL or a user, exactly one")

    @property
    def label(self) -> str:
        """For logs and messages: the channel or user id, or the webhook without its secret."""
        if self.channel is not None:
            return self.channel
        if self.user is not None:
            return "user:" + self.user
        assert self.webhook_url is not None
        return "webhook:" + hashlib.sha256(self.webhook_url.encode()).hexdigest()[:10]


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def part_nonce(key: str, part: int) -> str:
    """The nonce of one part of one delivery: the same on every attempt, at most 25 characters."""
    return f"fs{_key_hash(key)[:16]}p{part}"[:25]


def part_marker(key: str, part: int, parts: int) -> str:
    """The marker line that ends a part's content, by which a restart finds it in the history."""
    return f"fs·{_key_hash(key)[:12]} {part}/{parts}"


def _found_parts(messages: Sequence[Mapping[str, Any]], key: str) -> dict[int, str]:
    wanted = _key_hash(key)[:12]
    found: dict[int, str] = {}
    for message in messages:
        match = _MARKER.search(str(message.get("content") or ""))
        if match and match.group(1) == wanted and "id" in message:
            found.setdefault(int(match.group(2)), str(message["id"]))
    return found


class _Bucket:
    __slots__ = ("remaining", "reset_at")

    def __init__(self) -> None:
        self.remaining: int | None = None
        self.reset_at = 0.0


class RouteLimits:
    """Discord's rate limits as its answers describe them, for every send of the process.

    `async with limits.turn(route):` waits until the route's bucket has room (and any global
    hold is over), then lets one request through; `update` reads the answer's headers, `hold`
    applies a 429. `clock` and `sleep` are injectable so tests run on a fake clock."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self._buckets: dict[str, _Bucket] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._global_until = 0.0

    @contextlib.asynccontextmanager
    async def turn(self, route: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(route, asyncio.Lock())
        async with lock:
            while True:
                bucket = self._buckets.get(route)
                now = self.clock()
                wait = self._global_until - now
                if bucket is not None and bucket.remaining == 0:
                    wait = max(wait, bucket.reset_at - now)
                if wait <= 0:
                    break
                await self.sleep(wait)
                if bucket is not None and self.clock() >= bucket.reset_at:
                    bucket.remaining = None  # a new window: the next answer says how much
            yield

    def update(self, route: str, headers: Mapping[str, str]) -> None:
        """Remember what the answer's X-RateLimit headers say about the route's bucket."""
        remaining = _number(headers.get("X-RateLimit-Remaining"))
        reset_after = _number(headers.get("X-RateLimit-Reset-After"))
        if remaining is None or reset_after is None:
            return
        bucket = self._buckets.setdefault(route, _Bucket())
        bucket.remaining = int(remaining)
        bucket.reset_at = self.clock() + reset_after

    def hold(self, route: str, seconds: float, *, everywhere: bool = False) -> None:
        """Nothing goes to `route` (or anywhere, for a global limit) for `seconds`."""
        until = self.clock() + seconds
        if everywhere:
            self._global_until = max(self._global_until, until)
            return
        bucket = self._buckets.setdefault(route, _Bucket())
        bucket.remaining = 0
        bucket.reset_at = max(bucket.reset_at, until)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    data: Any


class DiscordPoster:
    """Posts a digest's messages to Discord destinations; one per process, shared by all sends."""

    name = "discord"

    def __init__(
        self,
        *,
        token: str | None,
        log: PartLog,
        api_url: str = DISCORD_API_URL,
        limits: RouteLimits | None = None,
        timeout: float = 30.0,
        wait_in_place: float = 5.0,
        history_window: int = 100,
    ) -> None:
        self.token = token
        self.part_log = log
        self.api_url = api_url.rstrip("/")
        self.limits = limits or RouteLimits()
        self.timeout = timeout
        self.wait_in_place = wait_in_place
        self.history_window = min(100, history_window)  # Discord's most per page
        self._session: aiohttp.ClientSession | None = None
        self._dm_channels: dict[str, str] = {}

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self,
        destination: DiscordDestination,
        messages: Sequence[DiscordMessage],
        *,
        key: str,
        resume: bool = False,
    ) -> Receipt:
        """Post every part of one digest not yet posted, in order. Raises DeliveryTransientError or
        DiscordPermanentError; the parts posted before the error stay recorded."""
        if not messages:
            raise ValueError("a digest has at least one message")
        done = await self.part_log.posted(key)
        missing = [message.part for message in messages if message.part not in done]
        found = 0
        channel = destination.channel
        if destination.user is not None and missing:
            channel = await self._dm_channel(destination.user)
        if channel is not None and missing and (done or resume):
            for part, message_id in (await self._find_posted(channel, key, destination.label)).items():
                if part not in done:
                    await self.part_log.record(key, part, message_id)
                    done[part] = message_id
                    found += 1
        posted = 0
        for message in messages:
            if message.part in done:
                continue
            payload = message.payload(marker=part_marker(key, message.part, message.parts))
            if channel is not None:
                payload["nonce"] = part_nonce(key, message.part)
                payload["enforce_nonce"] = True
                answer = await self._call(
                    "POST",
                    f"/channels/{channel}/messages",
                    f"messages:{channel}",
                    destination.label,
                    json_body=payload,
                )
            else:
                assert destination.webhook_url is not None
                answer = await self._call(
                    "POST",
                    destination.webhook_url,
                    f"webhook:{urlsplit(destination.webhook_url).path}",
                    destination.label,
                    json_body=payload,
                    params={"wait": "true"},
                    bot=False,
                )
            message_id = str((answer or {}).get("id") or "")
            await self.part_log.record(key, message.part, message_id)
            done[message.part] = message_id
            posted += 1
            log.info(
                "discord part posted channel=%s delivery=%s part=%d/%d id=%s",
                destination.label,
                key,
                message.part,
                message.parts,
                message_id or "-",
            )
        return parts_receipt(self.name, destination.label, len(messages), done, posted=posted, found=found)

    # the steps ---------------------------------------------------------------------------

    async def _dm_channel(self, user: str) -> str:
        if user not in self._dm_channels:
            answer = await self._call(
                "POST", "/users/@me/channels", "dm", f"user:{user}", json_body={"recipient_id": user}
            )
            self._dm_channels[user] = str(answer["id"])
        return self._dm_channels[user]

    async def _find_posted(self, channel: str, key: str, label: str) -> dict[int, str]:
        """This delivery's parts already in the channel, by their marker: part → message id."""
        page = await self._call(
            "GET",
            f"/channels/{channel}/messages",
            f"history:{channel}",
            label,
            params={"limit": str(self.history_window)},
        )
        found = _found_parts(page if isinstance(page, list) else [], key)
        if found:
            log.warning(
                "discord parts found in history channel=%s delivery=%s parts=%s",
                label,
                key,
                ",".join(str(part) for part in sorted(found)),
            )
        return found

    # HTTP --------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        route: str,
        label: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        bot: bool = True,
    ) -> Any:
        """One REST call, waiting out rate limits; the answer's JSON (None for 204)."""
        headers = {"User-Agent": "DiscordBot (https://github.com/flarestart/bot, 0.1) FlareStart"}
        if bot:
            if not self.token:
                raise DiscordPermanentError(
                    f"Discord {label}: no bot token (set DISCORD_BOT_TOKEN)", reason="no_token"
                )
            headers["Authorization"] = f"Bot {self.token}"
        url = path if path.startswith(("http://", "https://")) else self.api_url + path
        while True:
            async with self.limits.turn(route):
                answer = await self._send(method, url, label, headers, json_body, params)
                self.limits.update(route, answer.headers)
                if answer.status == 429:
                    self._rate_limited(route, label, answer)
                    continue
            if answer.status >= 500 or answer.status == 408:
                raise DeliveryTransientError(f"Discord {label}: HTTP {answer.status}")
            if answer.status >= 400:
                raise _permanent(label, answer)
            return answer.data

    async def _send(
        self,
        method: str,
        url: str,
        label: str,
        headers: dict[str, str],
        json_body: Any,
        params: dict[str, str] | None,
    ) -> _Answer:
        try:
            async with self._http().request(
                method, url, headers=headers, json=json_body, params=params, allow_redirects=False
            ) as response:
                body = await response.read()
                data: Any = None
                if body:
                    try:
                        data = json.loads(body)
                    except ValueError:
                        data = body.decode("utf-8", "replace")[:200]
                return _Answer(response.status, dict(response.headers), data)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeliveryTransientError(f"Discord {label}: {type(exc).__name__}: {exc}") from None

    def _rate_limited(self, route: str, label: str, answer: _Answer) -> None:
        """Hold the route (or everything) as the 429 says; raise when the wait is too long to sit out."""
        data = answer.data if isinstance(answer.data, dict) else {}
        wait = _number(str(data["retry_after"])) if "retry_after" in data else None
        if wait is None:
            wait = _number(answer.headers.get("Retry-After")) or 1.0
        everywhere = (
            bool(data.get("global")) or answer.headers.get("X-RateLimit-Global", "").lower() == "true"
        )
        wait = max(0.0, wait)
        self.limits.hold(route, wait, everywhere=everywhere)
        log.info(
            "discord rate-limited channel=%s retry_after=%s scope=%s",
            label,
            wait,
            "global" if everywhere else answer.headers.get("X-RateLimit-Scope", "route"),
        )
        if wait > self.wait_in_place:
            raise DeliveryTransientError(f"Discord {label}: rate-limited", retry_after=wait)


def _permanent(label: str, answer: _Answer) -> DiscordPermanentError:
    data = answer.data if isinstance(answer.data, dict) else {}
    code = data.get("code")
    where = label.split(":", 1)[1] if label.startswith("user:") else label
    if isinstance(code, int) and code in PERMANENT:
        reason, text = PERMANENT[code]
        return DiscordPermanentError(text.format(where=where), reason=reason)
    if answer.status == 400:
        detail = "; ".join(_form_errors(data.get("errors") or {}))[:300]
        message = str(data.get("message") or "HTTP 400")
        return DiscordPermanentError(
            f"Discord refused the digest for {label}: {message}" + (f" ({detail})" if detail else ""),
            reason="invalid_form_body" if code == 50035 else f"code_{code}",
        )
    reason, text = BY_STATUS.get(answer.status, (f"http_{answer.status}", "Discord refused {where}"))
    return DiscordPermanentError(text.format(where=where) + f" (HTTP {answer.status})", reason=reason)


def _form_errors(errors: Any, path: str = "") -> list[str]:
    """Discord's nested 50035 errors as "embeds.0.title: Must be 256 or fewer in length."."""
    found: list[str] = []
    if not isinstance(errors, dict):
        return found
    for key, value in errors.items():
        if key == "_errors" and isinstance(value, list):
            found.extend(
                f"{path or 'body'}: {item.get('message', '')}" for item in value if isinstance(item, dict)
            )
        else:
            found.extend(_form_errors(value, f"{path}.{key}" if path else str(key)))
    return found
