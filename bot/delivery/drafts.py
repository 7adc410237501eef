"""Drafting digests for the batch sender: rank a batch of subscribers, build and render each one.

This is the CPU-heavy half of a send (ranking over the candidate pool, jinja rendering) and needs
nothing but the articles and the subscribers' preferences. In the daemon it runs in a child
process (`DraftProcess`): the event loop that carries the SMTP conversations then never waits for
it, and it uses a core of its own (with the GIL, a thread would only take turns with the loop).
`InlineDrafts` does the same work on the calling thread, for tests and for a clock of one's own.

Either way a draft is the same: `Drafter.draft` is the one implementation, and what it renders is
what `DigestService.outgoing` renders.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, cast

from bot.channels.base import OutgoingDigest, Receipt
from bot.channels.email import MIME_CHANNELS, with_wire
from bot.channels.registry import ChannelRegistry
from bot.config import Settings
from bot.delivery.service import DigestService
from bot.digest.compose import DigestPlan
from bot.errors import ConfigError
from bot.lifeline import watch_owner
from bot.ranking.types import Preferences
from bot.store import Store
from bot.store.subscribers import SubscriberRecord
from bot.store.types import utcnow
from bot.types import DestinationKind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DraftRequest:
    """One send job's digest to draft."""

    job_id: int
    subscriber: SubscriberRecord
    period: str
    window: timedelta
    delivered: frozenset[int]  # articles the subscriber was sent before


@dataclass(frozen=True, slots=True)
class Draft:
    """A drafted digest: the message to send, or why there is none."""

    job_id: int
    outgoing: OutgoingDigest | None  # None: nothing matched (empty_reason), or the draft failed
    article_ids: tuple[int, ...] = ()
    empty_reason: str | None = None
    error: str | None = None  # the traceback when drafting this one failed
    # The failure cannot go away by itself (preferences name an unknown source or topic): the
    # delivery fails for good at once instead of retrying. Otherwise the job retries.
    permanent: bool = False


_NO_PLAN = DigestPlan((), None, 0)  # a place holder, replaced by the request's plan


class Drafts(Protocol):
    async def draft(self, requests: Sequence[DraftRequest], now: datetime) -> list[Draft]: ...

    def close(self) -> None: ...


class Drafter:
    """Drafts digests with a service's composer, renderer and links, at a given moment."""

    def __init__(self, service: DigestService) -> None:
        self.service = service

    def draft(self, requests: Sequence[DraftRequest], now: datetime) -> list[Draft]:
        planned = self.plan(requests, now)
        return [self.render(request, plan, now) for request, plan in zip(requests, planned, strict=True)]

    def plan(self, requests: Sequence[DraftRequest], now: datetime) -> list[DigestPlan | Draft]:
        """Every request's plan, ranked together (rank_many); a Draft with the error for a request
        whose preferences name unknown topics or sources."""
        composer = self.service.current_composer(now)
        planned: list[DigestPlan | Draft] = []
        todo: list[tuple[int, Preferences]] = []
        for request in requests:
            try:
                window = self.service.window(request.subscriber.frequency, request.window)
                todo.append((len(planned), composer.preferences_of(request.subscriber, window=window)))
                planned.append(_NO_PLAN)
            except Exception as exc:  # this job fails
                planned.append(_failed(request, exc))
        plans = composer.plan_many(
            [prefs for _, prefs in todo], delivered=[requests[n].delivered for n, _ in todo]
        )
        for (n, _), plan in zip(todo, plans, strict=True):
            planned[n] = plan
        return planned

    def render(self, request: DraftRequest, plan: DigestPlan | Draft, now: datetime) -> Draft:
        """One request's message from its plan (or the plan's error, or why there is nothing)."""
        if isinstance(plan, Draft):
            return plan
        service = self.service
        if not plan.items and service.settings.email.quiet_day == "skip":
            return Draft(request.job_id, None, empty_reason=plan.empty_reason or "nothing new matched")
        try:
            outgoing = service.outgoing(request.subscriber, request.period, plan, now=now)
            if (
                service.channels.name_for_subscriber(request.subscriber) in MIME_CHANNELS
            ):  # encoded here, off the sender's loop
                outgoing = with_wire(outgoing, service.settings.email, now=now)
        except Exception as exc:
            return _failed(request, exc)
        article_ids = tuple(item.article.id for item in plan.items)
        return Draft(request.job_id, outgoing, article_ids, plan.empty_reason)


def _failed(request: DraftRequest, exc: Exception) -> Draft:
    if isinstance(exc, ConfigError):  # the reason is the message; no traceback needed
        return Draft(request.job_id, None, error=f"{type(exc).__name__}: {exc}", permanent=True)
    return Draft(request.job_id, None, error=traceback.format_exc())


class InlineDrafts:
    """Drafting on the event loop's thread, with the service itself (its clock, its taxonomy).

    Between two digests it lets the loop run, so the SMTP replies of other sends are read while a
    batch is rendered (the ranking, one rank_many call for the batch, runs in one go)."""

    def __init__(self, service: DigestService) -> None:
        self._drafter = Drafter(service)

    async def draft(self, requests: Sequence[DraftRequest], now: datetime) -> list[Draft]:
        await self._drafter.service.composer()  # a stale pool is rebuilt in a thread, not here
        planned = self._drafter.plan(requests, now)
        drafts = []
        for request, plan in zip(requests, planned, strict=True):
            await asyncio.sleep(0)
            drafts.append(self._drafter.render(request, plan, now))
        return drafts

    def close(self) -> None:
        pass


class DraftProcess:
    """Drafting in one child process (spawned, so it starts clean of our threads)."""

    def __init__(self, settings: Settings, channel_names: Mapping[str, str]) -> None:
        self._settings = settings
        self._channel_names = dict(channel_names)  # destination kind → the parent's channel name
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_child,
            initargs=(self._settings, self._channel_names),
        )
        pool.submit(_ready)  # start it now: it imports and builds its pool while we plan
        return pool

    async def draft(self, requests: Sequence[DraftRequest], now: datetime) -> list[Draft]:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, _draft_in_child, list(requests), now)
        except BrokenProcessPool:
            log.error("the drafting process died; starting a new one")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
            raise

    def close(self) -> None:
        """Stop the child and wait for it (a batch in hand is ~0.1 s). Left running, the pool's
        manager thread met an already closed pipe at interpreter exit and printed a traceback."""
        self._pool.shutdown(wait=True, cancel_futures=True)


# -- the child process -----------------------------------------------------------------------------

_CHILD: Drafter | None = None


class _NoChannel:
    """The child drafts messages; sending them is the parent's."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, message: OutgoingDigest) -> Receipt:
        raise RuntimeError("the drafting process does not send")

    async def aclose(self) -> None:
        pass


def _start_child(settings: Settings, channel_names: dict[str, str]) -> None:
    global _CHILD
    # Stopping is the parent's business: a Ctrl-C to the process group must not kill us mid-batch,
    # and when the parent is gone (killed), so are we.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    watch_owner(os.getppid())
    store = Store.open(settings, migrate=False)
    channels = ChannelRegistry()
    for kind, name in channel_names.items():
        channels.register(cast(DestinationKind, kind), _NoChannel(name))
    _CHILD = Drafter(DigestService(store, settings, channels, clock=utcnow))
    _CHILD.service.current_composer(utcnow())


def _ready() -> bool:
    return _CHILD is not None


def _draft_in_child(requests: list[DraftRequest], now: datetime) -> list[Draft]:
    assert _CHILD is not None, "the drafting process did not start"
    return _CHILD.draft(requests, now)
