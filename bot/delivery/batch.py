"""The daemon's send path: digests claimed, looked up and ranked in batches, sent one by one.

`flarestart run` sends `send_digest` jobs through a `BatchSender` rather than one job at a time:

- a producer claims up to `BATCH` due send jobs with one claim, reads their subscribers and what
  each was sent before with one query each, and has them drafted: ranked together with
  `Composer.plan_many` (rank_many) and rendered (bot/delivery/drafts.py; in the daemon that runs
  in a child process, so the CPU it takes never holds up the SMTP conversations);
- `delivery.workers` lanes take the drafted jobs one by one: begin the ledger row, hand the
  message to the channel, and right after the server's 250 commit `mark_sent` with the job's
  finish, in one transaction that also begins the lane's next row (when one is waiting; else it
  commits alone at once). Nothing slow stands between the 250 and that commit.

What a job may end as, and the ledger under it, are those of `DigestService.send` run by a
`Worker`: exactly-once per (subscriber, period, channel) through the delivery ledger; a crash
between a server's 250 and the commit resends with the same Message-ID; a row is 'sending' only
while its lane sends it, so at most `delivery.workers` rows are caught 'sending' by a crash, the
same bound as before. Transient failures retry with backoff, permanent ones fail the job (and count
a bounce), anything else is logged with its traceback and retried.

Leases: every claimed job is renewed every lease/3 until its outcome is written; a job taken over
by another worker meanwhile is dropped if it has not started, and its late outcome is fenced off
if it has (the other run's stands). Stopping: no new claims; the lanes finish the sends they are
in (for up to `drain_seconds`), jobs that never started go back to the queue as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection

from bot.channels.base import OutgoingDigest
from bot.delivery.drafts import Draft, DraftProcess, DraftRequest, Drafts, InlineDrafts
from bot.delivery.ledger import Opened
from bot.delivery.service import SEND_TASK, DigestService
from bot.errors import DeliveryPermanentError, DeliveryTransientError, NotFoundError
from bot.futures import settle
from bot.jobs.queue import ClaimedJob, honour_retry_after
from bot.jobs.worker import CANCEL_GRACE, DRAIN_SECONDS, POLL_SECONDS, Backoff, default_backoff
from bot.store.subscribers import SubscriberRecord
from bot.types import subscriber_ref

log = logging.getLogger(__name__)
_T = TypeVar("_T")

BATCH = 50  # send jobs per claim; the producer keeps at most two batches drafted ahead of the lanes


@dataclass
class SendStats:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0  # not active, a quiet period, or already sent
    retried: int = 0
    failed: int = 0
    lost: int = 0  # our lease was taken over before we wrote the outcome
    released: int = 0  # claimed, never started, given back on stop


@dataclass
class _Ready:
    """A claimed send job, drafted: what a lane needs to send it."""

    job: ClaimedJob
    subscriber: SubscriberRecord
    period: str
    draft: Draft

    @property
    def outgoing(self) -> OutgoingDigest | None:
        return self.draft.outgoing


@dataclass
class _Sent:
    """A send the server accepted, whose ledger row and job are still to be committed."""

    ready: _Ready
    delivery_id: int
    message_id: str
    article_ids: list[int]


@dataclass
class _Commit:
    """What one commit transaction did."""

    sent_ours: bool = False  # the sent job's finish passed its fence (False: the lease was lost)
    began: Opened | None = None  # the next job's ledger row, begun: send it
    closed: str | None = None  # or why the next job needs no send (it was finished here)
    closed_ours: bool = False
    postponed: bool = False  # or its delivery is being sent by another door: queued for later


class BatchSender:
    """Runs `send_digest` jobs the way `Worker` runs one job per slot, with batched lookups."""

    def __init__(
        self,
        service: DigestService,
        *,
        worker_id: str | None = None,
        batch: int = BATCH,
        clock: Callable[[], datetime] | None = None,
        poll_interval: float = POLL_SECONDS,
        drain_seconds: float = DRAIN_SECONDS,
        backoff: Backoff = default_backoff,
        drafting: str = "inline",
        on_done: Callable[[ClaimedJob], None] | None = None,
    ) -> None:
        """`drafting`: "process" drafts in a child process (the daemon), "inline" on the loop."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        if drafting not in ("inline", "process"):
            raise ValueError(f"drafting is inline or process, not {drafting!r}")
        delivery = service.settings.delivery
        self.service = service
        self.queue = service.queue
        self.worker_id = worker_id or f"sender-{uuid.uuid4().hex[:12]}"
        self.batch = batch
        self.lanes = delivery.workers  # sends in flight at once, like the Worker's slots
        self.lease = timedelta(seconds=delivery.lease_seconds)
        self.clock = clock or service.clock
        self.poll_interval = poll_interval
        self.drain_seconds = drain_seconds
        self.backoff = backoff
        self.on_done = on_done
        self.drafting = drafting
        self.stats = SendStats()
        self._ready: deque[_Ready] = deque()
        self._held: dict[int, ClaimedJob] = {}  # claimed and not yet settled, by id
        self._lost: set[int] = set()
        self._wake = asyncio.Event()  # new jobs may be due (wake()), or the stop came
        self._more = asyncio.Event()  # ranked jobs arrived for the lanes
        self._room = asyncio.Event()  # the lanes drained the ready list below a batch
        self._stopping = False
        self._drafts: Drafts | None = None  # made by run(): a drafting process lives as long as it
        # Commits waiting for the next group commit, and whether the database thread is on them.
        self._commits: list[_CommitRequest] = []
        self._committing = False
        self._commits_lock = threading.Lock()
        # Every database call of the sender goes through one thread: its writes never meet each
        # other at SQLite's lock (whose busy handler sleeps in milliseconds), and stay in order.
        self._database = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.worker_id}-db")

    async def _db(self, function: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._database, functools.partial(function, *args, **kwargs))

    def wake(self) -> None:
        """Look for due jobs now instead of at the next poll (call from the sender's loop)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> SendStats:
        """Send until `stop` is set, then drain; returns what this sender did."""
        log.info("sender started", extra={"worker": self.worker_id, "lanes": self.lanes, "batch": self.batch})
        service = self.service
        drafts = self._drafts = (
            DraftProcess(service.settings, service.channels.names())
            if self.drafting == "process"
            else InlineDrafts(service)
        )
        heartbeat = asyncio.create_task(self._heartbeat(), name=f"{self.worker_id}-heartbeat")
        producer = asyncio.create_task(self._produce(), name=f"{self.worker_id}-producer")
        lanes = [
            asyncio.create_task(self._lane(), name=f"{self.worker_id}-lane-{n}") for n in range(self.lanes)
        ]
        watcher = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([watcher, producer], return_when=asyncio.FIRST_COMPLETED)
            self._stopping = True
            for event in (self._wake, self._more, self._room):
                event.set()
            # A batch being claimed or drafted lands in the ready list (given back below).
            await asyncio.wait([producer], timeout=self.drain_seconds)
            _, late = await asyncio.wait(lanes, timeout=self.drain_seconds)
            if late:
                log.warning(
                    "cancelling sends still running after the drain; they run again once their leases expire",
                    extra={"worker": self.worker_id, "lanes": len(late)},
                )
                for task in late:
                    task.cancel()
                await asyncio.wait(late, timeout=CANCEL_GRACE)
            await self._release_unstarted()  # on the database thread after the lanes' last commits
        finally:
            tasks: list[asyncio.Task[Any]] = [watcher, heartbeat, producer, *lanes]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:  # joined, not left behind: see DraftProcess.close
                await asyncio.wait_for(asyncio.to_thread(drafts.close), CANCEL_GRACE)
            except TimeoutError:
                log.error("the drafting process did not stop in time", extra={"worker": self.worker_id})
            self._database.shutdown(wait=False)
        log.info("sender stopped", extra={"worker": self.worker_id, **vars(self.stats)})
        return self.stats

    # -- producing: claim, look up, rank ---------------------------------------------------------

    async def _produce(self) -> None:
        while not self._stopping:
            if len(self._ready) >= self.batch:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                claimed = await self._claim()
            except Exception:  # a bug: keep the sender alive, the jobs' leases bring them back
                log.exception("send producer failed; going on", extra={"worker": self.worker_id})
                claimed = False
            if not claimed:
                await self._idle()

    async def _claim(self) -> bool:
        """Claim, look up and rank one batch; False when no send job is due."""
        try:
            jobs = await self._db(
                self.queue.claim,
                self.worker_id,
                now=self.clock(),
                lease=self.lease,
                tasks=[SEND_TASK],
                limit=self.batch,
            )
        except Exception:
            log.exception("could not claim send jobs; trying again later", extra={"worker": self.worker_id})
            return False
        if not jobs:
            return False
        self.stats.claimed += len(jobs)
        for job in jobs:
            self._held[job.id] = job
        wanted = {_subscriber_id(job) for job in jobs}
        try:
            records, delivered = await self._db(self._look_up, wanted)
        except Exception:  # the database failed us: the whole batch retries
            log.exception("could not look up the send jobs' subscribers", extra={"worker": self.worker_id})
            error = traceback.format_exc()
            await asyncio.gather(*(self._retry(job, error) for job in jobs))
            return True
        requests: list[tuple[ClaimedJob, DraftRequest]] = []
        skipped: list[tuple[ClaimedJob, str]] = []
        for job in jobs:
            try:
                subscriber = records.get(_subscriber_id(job))
                if subscriber is None:
                    raise NotFoundError(f"no subscriber with id {job.payload.get('subscriber_id')}")
                if subscriber.status != "active" or not subscriber.address:
                    skipped.append((job, f"subscriber is {subscriber.status}"))
                    continue
                payload = job.payload
                window = datetime.fromisoformat(payload["window_end"]) - datetime.fromisoformat(
                    payload["window_start"]
                )
                seen = frozenset(delivered.get(subscriber.id, ()))
                requests.append((job, DraftRequest(job.id, subscriber, str(payload["period"]), window, seen)))
            except Exception:
                log.exception("job crashed", extra=_about(job))
                await self._retry(job, traceback.format_exc())
        if skipped:
            await self._finish_skipped(skipped)
        if not requests:
            return True
        assert self._drafts is not None, "run() makes the drafts"
        try:
            drafts = await self._drafts.draft([request for _, request in requests], self.clock())
        except Exception:
            log.exception("could not draft the send jobs' digests", extra={"worker": self.worker_id})
            error = traceback.format_exc()
            await asyncio.gather(*(self._retry(job, error) for job, _ in requests))
            return True
        for (job, request), draft in zip(requests, drafts, strict=True):
            if draft.error is not None:
                await self._draft_failed(job, request, draft.error, permanent=draft.permanent)
                continue
            self._ready.append(_Ready(job, request.subscriber, request.period, draft))
        self._more.set()
        return True

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)

    def _look_up(self, subscriber_ids: set[int]) -> tuple[dict[int, SubscriberRecord], dict[int, set[int]]]:
        service = self.service
        with service.store.engine.connect() as conn:
            records = service.subscribers.records(subscriber_ids, connection=conn)
            active = [r.id for r in records.values() if r.status == "active"]
            delivered = service.ledger.sent_article_ids_many(active, connection=conn)
        return records, delivered

    async def _finish_skipped(self, jobs: Sequence[tuple[ClaimedJob, str]]) -> None:
        """Jobs of subscribers who are no longer active: done, nothing sent, the ledger untouched."""
        try:
            results = await self._db(self._finish_all, [job for job, _ in jobs])
        except Exception:
            log.exception("could not finish send jobs", extra={"worker": self.worker_id})
            error = traceback.format_exc()
            await asyncio.gather(*(self._retry(job, error) for job, _ in jobs))
            return
        for (job, reason), ours in zip(jobs, results, strict=True):
            log.info("not sending: %s", reason, extra=_about(job))
            self._settled(job, "skipped" if ours else "lost")

    def _finish_all(self, jobs: Sequence[ClaimedJob]) -> list[bool]:
        now = self.clock()
        with self.service.store.engine.begin() as conn:
            return [
                self.queue.finish(job.id, self.worker_id, now=now, attempt=job.attempts, connection=conn)
                for job in jobs
            ]

    # -- sending: one lane ---------------------------------------------------------------------------

    def _next_ready(self) -> _Ready | None:
        while self._ready and not self._stopping:
            ready = self._ready.popleft()
            if len(self._ready) < self.batch:
                self._room.set()
            if ready.job.id in self._lost:  # taken over while it waited: the other run sends it
                self._settled(ready.job, "lost")
                continue
            return ready
        return None

    async def _lane(self) -> None:
        carry: _Sent | None = None
        while True:
            ready = self._next_ready()
            if ready is None:
                if carry is not None:  # nothing to pair the commit with: commit it now
                    await self._commit(carry, None)
                    carry = None
                    # Look again: a batch readied while we committed set `_more` already, and
                    # clearing it below would leave it (and every lane) waiting for ever.
                    continue
                if self._stopping:
                    return
                self._more.clear()
                await self._more.wait()
                continue
            commit = await self._commit(carry, ready)
            carry = None
            if commit.began is None:
                continue
            carry = await self._send(ready, commit.began.id)

    async def _send(self, ready: _Ready, delivery_id: int) -> _Sent | None:
        """Hand over one digest; the accepted send, to commit, or None (the failure recorded)."""
        service, job, outgoing = self.service, ready.job, ready.outgoing
        assert outgoing is not None
        try:
            await service.channels.for_subscriber(ready.subscriber).send(outgoing)
        except asyncio.CancelledError:
            raise
        except DeliveryPermanentError as exc:
            await self._failed(ready, delivery_id, exc, permanent=True)
            return None
        except DeliveryTransientError as exc:
            await self._failed(ready, delivery_id, exc, permanent=False)
            return None
        except Exception as exc:
            log.exception(
                "send crashed", extra=_about(job) | {"subscriber": subscriber_ref(ready.subscriber)}
            )
            await self._settle_row(delivery_id, f"{type(exc).__name__}: {exc}", permanent=job.last_attempt)
            await self._retry(job, traceback.format_exc())
            return None
        return _Sent(ready, delivery_id, outgoing.message_id, list(ready.draft.article_ids))

    async def _commit(self, sent: _Sent | None, ready: _Ready | None) -> _Commit:
        """The accepted send's ledger row and job (if any), then the next job's ledger row begun
        (if any), committed together. Lanes asking while a commit runs are committed together in
        the next one (a group commit): nobody waits longer than the commit before theirs.
        Errors are logged and the jobs retried."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Commit] = loop.create_future()
        with self._commits_lock:
            self._commits.append((sent, ready, future))
            start = not self._committing
            self._committing = True
        if start:
            self._run_commits(loop)
        try:
            # A cancelled lane stops waiting; its commit still happens (and is counted) below.
            result = await future
        except Exception:
            log.exception("could not record a send; its job runs again", extra={"worker": self.worker_id})
            error = traceback.format_exc()
            for job in [x.job for x in (sent.ready if sent else None, ready) if x is not None]:
                await self._retry(job, error)
            return _Commit()
        if sent is not None:
            self._settled(sent.ready.job, "sent" if result.sent_ours else "lost")
            log.info(
                "digest sent",
                extra={
                    "subscriber": subscriber_ref(sent.ready.subscriber),
                    "period": sent.ready.period,
                    "channel": self.service.channels.name_for_subscriber(sent.ready.subscriber),
                    "items": len(sent.article_ids),
                    "message_id": sent.message_id,
                },
            )
        if ready is not None and result.began is None:
            log.info("not sending: %s", result.closed, extra=_about(ready.job))
            if result.postponed:
                self._settled(ready.job, "retried" if result.closed_ours else "lost")
            else:
                self._settled(ready.job, "skipped" if result.closed_ours else "lost")
        return result

    def _commit_groups(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the database thread: commit what is waiting as one group, answer the lanes straight
        from here (one wake-up of the loop for the group), and queue itself again behind the other
        database calls if more came meanwhile (claims and lease renewals are not starved)."""
        with self._commits_lock:
            group, self._commits = self._commits, []
            if not group:
                self._committing = False
                return
        try:
            outcomes = self._commit_group([(sent, ready) for sent, ready, _ in group])
        except BaseException as exc:  # not even one by one: every lane hears of it
            outcomes = [exc if isinstance(exc, Exception) else RuntimeError(str(exc))] * len(group)
        loop.call_soon_threadsafe(settle, [future for _, _, future in group], outcomes)
        self._run_commits(loop)

    def _run_commits(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._database.submit(self._commit_groups, loop)
        except RuntimeError:  # shut down: the lanes are gone, nothing is waiting
            with self._commits_lock:
                self._committing = False

    def _commit_group(self, requests: list[tuple[_Sent | None, _Ready | None]]) -> list[_Commit | Exception]:
        """One transaction for the whole group; if it fails, one each, so one bad request (or a
        lost race) does not hold back the others."""
        engine = self.service.store.engine
        if len(requests) > 1:
            try:
                with engine.begin() as conn:
                    return [self._commit_now(conn, sent, ready) for sent, ready in requests]
            except Exception:
                log.warning("a group commit failed; committing its sends one by one", exc_info=True)
        results: list[_Commit | Exception] = []
        for sent, ready in requests:
            try:
                with engine.begin() as conn:
                    results.append(self._commit_now(conn, sent, ready))
            except Exception as exc:
                results.append(exc)
        return results

    def _commit_now(self, conn: Connection, sent: _Sent | None, ready: _Ready | None) -> _Commit:
        service, now = self.service, self.clock()
        result = _Commit()
        if sent is not None:
            job = sent.ready.job
            service.ledger.mark_sent(
                sent.delivery_id,
                message_id=sent.message_id,
                article_ids=sent.article_ids,
                now=now,
                connection=conn,
            )
            if sent.ready.subscriber.consecutive_bounces:
                service.subscribers.reset_bounces(sent.ready.subscriber.id, connection=conn)
            result.sent_ours = self.queue.finish(
                job.id, self.worker_id, now=now, attempt=job.attempts, connection=conn
            )
        if ready is None:
            return result
        opened = service.ledger.begin(
            ready.subscriber.id,
            ready.period,
            service.channels.name_for_subscriber(ready.subscriber),
            now=now,
            lease=service.lease,
            connection=conn,
        )
        if opened.began and ready.outgoing is not None:
            result.began = opened
            return result
        job = ready.job
        if opened.busy:
            # Another door (`send --now`, another run) is sending it now: back in the queue until
            # its lease ends, no attempt counted, so a send that crashed there is made here.
            result.closed, result.postponed = "already being sent elsewhere", True
            result.closed_ours = self.queue.postpone(
                job.id,
                self.worker_id,
                run_at=opened.lease_until or now,
                attempt=job.attempts,
                reason="its delivery was being sent by another process",
                connection=conn,
            )
            return result
        if opened.began:  # a quiet period: nothing new matched
            result.closed = ready.draft.empty_reason or "nothing new matched"
            service.ledger.mark_skipped(opened.id, reason=result.closed, now=now, connection=conn)
        else:
            result.closed = f"delivery is {opened.status}"
        result.closed_ours = self.queue.finish(
            job.id, self.worker_id, now=now, attempt=job.attempts, connection=conn
        )
        return result

    # -- outcomes other than sent --------------------------------------------------------------------

    async def _failed(self, ready: _Ready, delivery_id: int, exc: Exception, *, permanent: bool) -> None:
        job, service = ready.job, self.service
        error = f"{type(exc).__name__}: {exc}"
        extra = _about(job) | {"subscriber": subscriber_ref(ready.subscriber)}
        try:
            if permanent:
                pauses = isinstance(exc, DeliveryPermanentError) and exc.pauses
                await self._db(
                    service.record_permanent_failure, delivery_id, ready.subscriber, str(exc), pauses=pauses
                )
                log.warning("delivery failed for good: %s", exc, extra=extra)
                ours = await self._db(
                    self.queue.fail,
                    job.id,
                    self.worker_id,
                    error=error,
                    attempt=job.attempts,
                    now=self.clock(),
                )
                self._settled(job, "failed" if ours else "lost")
                return
            await self._db(
                service.ledger.mark_failed,
                delivery_id,
                error=str(exc),
                permanent=job.last_attempt,
                now=self.clock(),
            )
            log.info("delivery will be retried: %s", exc, extra=extra)
        except Exception:
            log.exception("could not record a failed send", extra=extra)
        retry_after = exc.retry_after if isinstance(exc, DeliveryTransientError) else None
        await self._retry(job, error, retry_after=retry_after)

    async def _draft_failed(
        self, job: ClaimedJob, request: DraftRequest, error: str, *, permanent: bool
    ) -> None:
        """A digest that could not be drafted: the subscriber named in the log, the delivery row
        settled with the reason (pending with the error while the job retries, failed at its last
        attempt or at once when it cannot work, as with an unknown source in the preferences)."""
        reason = _last_line(error)
        extra = _about(job) | {"subscriber": subscriber_ref(request.subscriber), "period": request.period}
        log.error("digest cannot be composed: %s" if permanent else "job crashed: %s", reason, extra=extra)
        final = permanent or job.last_attempt
        try:
            await self._db(
                self._record_draft_failure, request, f"could not compose the digest: {reason}", final
            )
        except Exception:
            log.exception("could not record a failed send", extra=extra)
        if not permanent:
            await self._retry(job, error)
            return
        try:
            ours = await self._db(
                self.queue.fail, job.id, self.worker_id, error=error, attempt=job.attempts, now=self.clock()
            )
        except Exception:
            log.exception("could not record the job's outcome; it runs again after its lease", extra=extra)
            self._held.pop(job.id, None)
            return
        self._settled(job, "failed" if ours else "lost")

    def _record_draft_failure(self, request: DraftRequest, error: str, permanent: bool) -> None:
        service, now = self.service, self.clock()
        row = service.ledger.open(
            request.subscriber.id,
            request.period,
            service.channels.name_for_subscriber(request.subscriber),
            article_ids=[],
            now=now,
        )
        assert row.id is not None
        # Never begun by us: a row another door is sending right now is left to it.
        service.ledger.mark_failed(row.id, error=error, permanent=permanent, now=now, unheld=True)

    async def _settle_row(self, delivery_id: int, error: str, *, permanent: bool) -> None:
        """A begun row whose send broke in our code: never left 'sending'."""
        try:
            await self._db(
                self.service.ledger.mark_failed,
                delivery_id,
                error=error,
                permanent=permanent,
                now=self.clock(),
            )
        except Exception:
            log.exception("could not record a failed send", extra={"worker": self.worker_id})

    async def _retry(self, job: ClaimedJob, error: str, *, retry_after: float | None = None) -> None:
        """Queue the job again after its backoff, or after `retry_after` seconds (the remote's
        hint, capped) when that is longer."""
        now = self.clock()
        try:
            ours = await self._db(
                self.queue.retry,
                job.id,
                self.worker_id,
                error=error,
                run_at=now + honour_retry_after(self.backoff(job), retry_after),
                attempt=job.attempts,
                now=now,
            )
        except Exception:
            log.exception(
                "could not record the job's outcome; it runs again after its lease", extra=_about(job)
            )
            self._held.pop(job.id, None)
            return
        self._settled(job, ("failed" if job.last_attempt else "retried") if ours else "lost")

    def _settled(self, job: ClaimedJob, outcome: str) -> None:
        self._held.pop(job.id, None)
        self._lost.discard(job.id)
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        if outcome == "lost":
            log.warning("send job's lease was lost; the other run's outcome stands", extra=_about(job))
        if self.on_done is not None:
            self.on_done(job)

    # -- leases and stopping -------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Renew the leases of every job we hold every lease/3; note the ones taken over."""
        interval = max(self.lease.total_seconds() / 3, 0.01)
        while True:
            await asyncio.sleep(interval)
            held = list(self._held.values())
            if not held:
                continue
            try:
                ours = await self._db(
                    self.queue.extend_many, held, self.worker_id, until=self.clock() + self.lease
                )
            except Exception:
                log.exception("could not renew the send jobs' leases", extra={"worker": self.worker_id})
                continue
            self._lost |= {job.id for job in held if job.id not in ours and job.id in self._held}

    async def _release_unstarted(self) -> None:
        unstarted = [ready.job for ready in self._ready if ready.job.id in self._held]
        self._ready.clear()
        if not unstarted:
            return
        try:
            released = await self._db(self.queue.release, unstarted, self.worker_id)
        except Exception:
            log.exception("could not give back unstarted send jobs; their leases will expire")
            return
        for job in unstarted:
            self._held.pop(job.id, None)
        self.stats.released += released


_CommitRequest = tuple[_Sent | None, _Ready | None, "asyncio.Future[_Commit]"]


def _subscriber_id(job: ClaimedJob) -> int:
    try:
        return int(job.payload["subscriber_id"])
    except (KeyError, TypeError, ValueError):
        return 0  # no such subscriber: the job crashes with NotFoundError, as with the Worker


def _last_line(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else error


def _about(job: ClaimedJob) -> dict[str, Any]:
    return {"job": job.id, "task": job.task, "attempt": job.attempts}
