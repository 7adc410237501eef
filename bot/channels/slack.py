"""Post a digest's Slack messages to one channel, each part exactly once, at Slack's pace.

    poster = SlackPoster(token=settings_token, api_url="https://slack.com/api/", log=part_log)
    receipt = await poster.post(SlackDestination(channel="C0123ABCD"), messages, key=delivery_key)
    await poster.aclose()

Bot-token channels go through slack-sdk's AsyncWebClient (`base_url` points it at a stand-in such
as bot/testing/fake_slack.py); incoming webhooks through AsyncWebhookClient. slack-sdk's own retry
handlers are switched off: its default retries a request whose connection dropped, which re-posts a
message Slack may already have accepted. Retrying is decided here, where the part log is.

Pace: about one message per second per channel (`ChannelPacer`, shared by every send of the
process, so concurrent digests to one channel queue up rather than meet a 429). A 429 is honoured:
a short Retry-After (up to `wait_in_place`, 5 s) is slept here and the part tried again, since the
message was not accepted and the digest's next parts would wait anyway; a longer one ends the
attempt with `DeliveryTransientError(retry_after=…)` so the job queue retries no sooner. Connection
errors, timeouts and 5xx are transient too; `channel_not_found`, `not_in_channel`, `invalid_auth`,
`not_authed`, `account_inactive`, `token_revoked`, `is_archived` are permanent
(`SlackPermanentError`, with `reason` the Slack error name so the caller can pause the subscriber
and say why), and so is a payload Slack refuses (`invalid_blocks`, `msg_too_long`, …): trying
again would send the same bytes.

Exactly once (bot token): every post carries message metadata (event_type `flarestart_digest`,
payload: the delivery key, the part and the number of parts). Each part's `ts` goes into the
`PartLog` as soon as Slack answers, and parts already there are never posted again. The window
between Slack accepting a part and the log recording it (a crash, a dropped connection) is closed
by looking before posting: when the log already holds a part of this delivery, or the caller says
an earlier attempt may have posted (`resume=True`, a retried job), the channel's recent history
(the newest `history_window` messages, with `include_all_metadata`; thread mode: part 1's replies)
is searched for this key's parts, and those found are recorded instead of posted.

Webhooks have no history and return no ts: parts recorded in the log are still never re-posted,
but a crash after Slack accepted a part and before it was recorded re-posts that one part on retry
(at most one duplicate per crash, the same window email has). Thread mode needs a ts, so webhook
digests are posted flat.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.channels.base import Receipt
from bot.channels.parts import PartLog, parts_receipt
from bot.digest.slack import SlackMessage
from bot.errors import DeliveryPermanentError, DeliveryTransientError

log = logging.getLogger(__name__)

__all__ = [
    "EVENT_TYPE",
    "ChannelPacer",
    "SlackDestination",
    "SlackPermanentError",
    "SlackPoster",
]

EVENT_TYPE = "flarestart_digest"
SLACK_API_URL = "https://slack.com/api/"
# Errors that trying again cannot fix, with what to tell the operator.
PERMANENT = {
    "channel_not_found": "Slack channel {where} does not exist or the app cannot see it",
    "not_in_channel": "the FlareStart app is not in Slack channel {where}: invite it with /invite",
    "is_archived": "Slack channel {where} is archived",
    "invalid_auth": "the Slack bot token is not valid",
    "not_authed": "no Slack bot token was sent",
    "account_inactive": "the Slack bot token belongs to a deactivated app or workspace",
    "token_revoked": "the Slack bot token was revoked",
    "missing_scope": "the Slack app lacks the chat:write scope",
    "no_service": "the Slack webhook {where} no longer exists",
    "action_prohibited": "the Slack workspace does not allow the webhook {where} to post",
}
REFUSED = frozenset(
    {
        "invalid_blocks",
        "msg_too_long",
        "msg_blocks_too_long",
        "no_text",
        "invalid_metadata_format",
        "invalid_payload",
    }
)
WEBHOOK_ERRORS = {
    404: "channel_not_found",
    410: "is_archived",
    403: "action_prohibited",
    400: "invalid_payload",
}


# Errors that mean the destination cannot take digests until someone acts: the subscriber is
# paused with the message as the reason (DeliveryPermanentError.pauses).
PAUSING = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "no_service",
        "webhook_env_unset",
    }
)


class SlackPermanentError(DeliveryPermanentError):
    """A Slack delivery that cannot work as configured; `reason` is Slack's error name."""

    def __init__(self, *args: object, reason: str = "") -> None:
        super().__init__(*args)
        self.reason = reason  # an attribute: exceptions pickle their args and their __dict__
        self.pauses = reason in PAUSING


@dataclass(frozen=True, slots=True)
class SlackDestination:
    """Where a digest goes: a channel id (posted with the bot token) or an incoming webhook URL."""

    channel: str | None = None
    webhook_url: str | None = None

    def __post_init__(self) -> None:
        if (self.channel is None) == (self.webhook_url is None):
            raise ValueError("a Slack destination is a channel or a webhook URL, exactly one")

    @property
    def label(self) -> str:
        """For logs and messages: the channel id, or the webhook without its secret."""
        if self.channel is not None:
            return self.channel
        assert self.webhook_url is not None
        return "webhook:" + hashlib.sha256(self.webhook_url.encode()).hexdigest()[:10]


class Turn:
    """One message's turn at a channel; `accepted(ts)` tells the pacer when Slack took it."""

    __slots__ = ("ts",)

    def __init__(self) -> None:
        self.ts: str | None = None

    def accepted(self, ts: str) -> None:
        self.ts = ts


class ChannelPacer:
    """At most one message per `interval` seconds per channel, for every send in the process.

    A send takes the channel's turn (`async with pacer.turn(channel) as turn`): turns to one channel
    are taken one at a time, and each starts `interval` after Slack *took* the previous message,
    so the gap Slack sees is never shorter, however long a request sat in queues on the way; a
    paced channel does not meet a 429. When the message was taken is read from its ts (Slack's
    clock): the pacer keeps a lower bound of the offset between Slack's clock and ours (ts − the
    moment the answer arrived, the largest of the last 64), so `ts − offset` is a moment no
    earlier than the real one, in our clock. Without a ts (webhooks, errors) the turn counts from the answer.
    `clock` and `sleep` are injectable so tests run on a fake clock."""

    def __init__(
        self,
        interval: float = 1.0,  # Slack's "about one a second", counted from when Slack took the last
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Recent lower bounds of (Slack's clock − ours); only recent ones, so a clock that drifts
        # over hours cannot leave a stale bound that is too high.
        self._offsets: collections.deque[float] = collections.deque(maxlen=64)

    @contextlib.asynccontextmanager
    async def turn(self, channel: str) -> AsyncIterator[Turn]:
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            wait = self._next.get(channel, 0.0) - self.clock()
            if wait > 0:
                await self.sleep(wait)
            turn = Turn()
            try:
                yield turn
            finally:
                answered = self.clock()
                taken = answered
                server = _ts_seconds(turn.ts)
                if server is not None:
                    self._offsets.append(server - answered)
                    taken = min(answered, server - max(self._offsets))
                self._next[channel] = max(self._next.get(channel, 0.0), taken + self.interval)

    def hold(self, channel: str, seconds: float) -> None:
        """Nothing goes to `channel` for `seconds` (Slack said so in a Retry-After)."""
        self._next[channel] = max(self._next.get(channel, 0.0), self.clock() + seconds)


def _ts_seconds(ts: str | None) -> float | None:
    try:
        return float(ts) if ts else None
    except ValueError:
        return None


class SlackPoster:
    """Posts a digest's messages to Slack destinations; one per process, shared by all sends."""

    name = "slack"

    def __init__(
        self,
        *,
        token: str | None,
        log: PartLog,
        api_url: str = SLACK_API_URL,
        pacer: ChannelPacer | None = None,
        timeout: int = 30,
        wait_in_place: float = 5.0,
        history_window: int = 200,
    ) -> None:
        self.token = token
        self.part_log = log
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.pacer = pacer or ChannelPacer()
        self.timeout = timeout
        self.wait_in_place = wait_in_place
        self.history_window = history_window
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._client = None

    async def post(
        self,
        destination: SlackDestination,
        messages: Sequence[SlackMessage],
        *,
        key: str,
        resume: bool = False,
    ) -> Receipt:
        """Post every part of one digest not yet posted, in order. Raises DeliveryTransientError or
        SlackPermanentError; the parts posted before the error stay recorded."""
        if not messages:
            raise ValueError("a digest has at least one message")
        done = await self.part_log.posted(key)
        found = 0
        missing = any(message.part not in done for message in messages)
        # Part numbers start at 1; a caller's own marks (SlackChannel's "begun", part 0) are not
        # parts, so a first attempt that finds only its mark asks Slack's history nothing.
        if destination.channel is not None and missing and (any(p >= 1 for p in done) or resume):
            threaded = any(message.in_thread for message in messages)
            lookup = await self._find_posted(destination.channel, key, done.get(1), threaded=threaded)
            for part, ts in lookup.items():
                if part not in done:
                    await self.part_log.record(key, part, ts)
                    done[part] = ts
                    found += 1
        posted = 0
        for message in messages:
            if message.part in done:
                continue
            if destination.channel is not None:
                thread_ts = done.get(1) if message.in_thread else None
                ts = await self._post_bot(destination.channel, message, key, thread_ts)
            else:
                ts = await self._post_webhook(destination, message)
            await self.part_log.record(key, message.part, ts)
            done[message.part] = ts
            posted += 1
            log.info(
                "slack part posted channel=%s delivery=%s part=%d/%d ts=%s",
                destination.label,
                key,
                message.part,
                message.parts,
                ts or "-",
            )
        return parts_receipt(self.name, destination.label, len(messages), done, posted=posted, found=found)

    # bot token ---------------------------------------------------------------------------

    def _web(self) -> AsyncWebClient:
        if self._client is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._client = AsyncWebClient(
                token=self.token,
                base_url=self.api_url,
                timeout=self.timeout,
                session=self._session,
                retry_handlers=[],  # see the module docstring: retries are decided here
            )
        return self._client

    async def _post_bot(self, channel: str, message: SlackMessage, key: str, thread_ts: str | None) -> str:
        arguments: dict[str, Any] = {
            **message.payload(),
            "channel": channel,
            "metadata": {
                "event_type": EVENT_TYPE,
                "event_payload": {"key": key, "part": message.part, "parts": message.parts},
            },
        }
        if thread_ts:
            arguments["thread_ts"] = thread_ts
        while True:
            async with self.pacer.turn(channel) as turn:
                try:
                    response = await self._web().chat_postMessage(**arguments)
                    turn.accepted(str(response["ts"]))
                except SlackApiError as exc:
                    if self._rate_limited(channel, exc.response.status_code, exc.response.headers):
                        continue  # the pacer holds the channel for the Retry-After
                    raise self._api_error(channel, exc) from None
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    raise DeliveryTransientError(
                        f"Slack channel {channel}: {type(exc).__name__}: {exc}"
                    ) from None
            return str(response["ts"])

    async def _find_posted(
        self, channel: str, key: str, parent_ts: str | None, *, threaded: bool
    ) -> dict[int, str]:
        """This delivery's parts already in the channel, by their metadata: part → ts."""
        found: dict[int, str] = {}
        pages: list[Any] = []
        try:
            pages.append(
                await self._web().conversations_history(
                    channel=channel, limit=self.history_window, include_all_metadata=True
                )
            )
            if threaded and parent_ts is None:
                parent_ts = _part_ts(pages[0].get("messages") or [], key).get(1)
            if threaded and parent_ts is not None:  # later parts are replies to part 1
                pages.append(
                    await self._web().conversations_replies(
                        channel=channel, ts=parent_ts, limit=self.history_window, include_all_metadata=True
                    )
                )
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            if exc.response.status_code == 429:
                raise DeliveryTransientError(
                    f"Slack channel {channel}: history rate-limited",
                    retry_after=_retry_after(exc.response.headers),
                ) from None
            if data.get("error") != "thread_not_found":  # part 1 deleted: its replies are gone too
                raise self._api_error(channel, exc) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeliveryTransientError(f"Slack channel {channel}: {type(exc).__name__}: {exc}") from None
        for page in pages:
            found.update(_part_ts(page.get("messages") or [], key))
        if found:
            log.warning(
                "slack parts found in history channel=%s delivery=%s parts=%s",
                channel,
                key,
                ",".join(str(part) for part in sorted(found)),
            )
        return found

    def _api_error(self, channel: str, exc: SlackApiError) -> Exception:
        status = exc.response.status_code
        data = exc.response.data if isinstance(exc.response.data, dict) else {}
        error = str(data.get("error") or f"HTTP {status}")
        if status >= 500 or status in (408, 429):
            return DeliveryTransientError(f"Slack channel {channel}: {error}")
        if error in PERMANENT:
            return SlackPermanentError(PERMANENT[error].format(where=channel), reason=error)
        if error in REFUSED:
            detail = "; ".join(str(m) for m in (data.get("response_metadata") or {}).get("messages", [])[:3])
            return SlackPermanentError(
                f"Slack refused the digest for {channel}: {error}" + (f" ({detail})" if detail else ""),
                reason=error,
            )
        return DeliveryTransientError(f"Slack channel {channel}: {error}")

    def _rate_limited(self, channel: str, status: int, headers: Any) -> bool:
        """True after a 429 whose Retry-After is short enough to wait in place (the pacer then
        holds the channel that long); a longer one raises. False when it is not a 429."""
        if status != 429:
            return False
        wait = _retry_after(headers)
        self.pacer.hold(channel, wait)
        log.info("slack rate-limited channel=%s retry_after=%s", channel, wait)
        if wait > self.wait_in_place:
            raise DeliveryTransientError(f"Slack channel {channel}: rate-limited", retry_after=wait)
        return True

    # webhooks ----------------------------------------------------------------------------

    async def _post_webhook(self, destination: SlackDestination, message: SlackMessage) -> str:
        assert destination.webhook_url is not None
        label = destination.label
        client = AsyncWebhookClient(
            destination.webhook_url, timeout=self.timeout, session=self._shared_session(), retry_handlers=[]
        )
        while True:
            async with self.pacer.turn(label):
                try:
                    response = await client.send(
                        text=message.text, blocks=list(message.blocks), unfurl_links=False, unfurl_media=False
                    )
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    raise DeliveryTransientError(f"Slack {label}: {type(exc).__name__}: {exc}") from None
            if response.status_code == 200:
                return ""
            if self._rate_limited(label, response.status_code, response.headers):
                continue
            body = (response.body or "").strip()
            if response.status_code >= 500:
                raise DeliveryTransientError(f"Slack {label}: HTTP {response.status_code} {body[:80]}")
            error = (
                body
                if body in PERMANENT or body in REFUSED
                else WEBHOOK_ERRORS.get(response.status_code, body)
            )
            error = {"channel_is_archived": "is_archived"}.get(error, error)
            text = PERMANENT.get(error, "Slack refused the digest for {where}: " + error[:80])
            raise SlackPermanentError(
                text.format(where=label), reason=error or f"http_{response.status_code}"
            )

    def _shared_session(self) -> aiohttp.ClientSession:
        self._web()
        assert self._session is not None
        return self._session


def _retry_after(headers: Any) -> float:
    value = None
    if headers is not None:
        value = headers.get("Retry-After") or headers.get("retry-after")
        if isinstance(value, list):
            value = value[0] if value else None
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


def _part_ts(messages: list[dict[str, Any]], key: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for message in messages:
        metadata = message.get("metadata") or {}
        payload = metadata.get("event_payload") or {}
        if metadata.get("event_type") == EVENT_TYPE and payload.get("key") == key:
            part = payload.get("part")
            if isinstance(part, int) and "ts" in message:
                found.setdefault(part, str(message["ts"]))
    return found
