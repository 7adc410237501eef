"""Work as rows in the `jobs` table: enqueued once, claimed atomically, leased, finished fenced.

The life of a job: queued → running (claimed: attempts + 1, locked_by and locked_until set)
→ done | queued again (retry, later run_at) | failed (permanent error or attempts used up).

Why it is safe with many workers on one database:
- A claim is one atomic statement. On PostgreSQL the candidate rows are picked with
  `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait for or take each other's rows; on
  SQLite the single `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING` runs under the one write
  lock. The candidates are the first n due queued rows and the first n expired leases, each read
  in `ix_jobs_claim` order (status, run_at, id), then the first n of both: a claim costs the same
  with ten queued jobs or a hundred thousand (one OR over both would collect and sort every due
  row).
- A lease: a running job whose `locked_until` has passed is claimable again, so a crashed
  worker's job is taken over by another. A live worker renews its leases (`extend`).
- A fence: every write after the claim requires `locked_by = me` and the claim's attempt number,
  so a worker that lost its lease (paused, partitioned) cannot finish or requeue the job that
  another worker now runs; the call returns False instead.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from bot.errors import ConfigError
from bot.store.models import Job
from bot.store.types import UTCDateTime, utcnow

JOBS: Table = Job.__table__  # type: ignore[attr-defined]

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATUSES = (QUEUED, RUNNING, DONE, FAILED)
MAX_ERROR_CHARS = 4000  # a traceback's tail is enough; keep rows small
MAX_KEY_CHARS = 300  # the unique_key column size

ENQUEUE_CHUNK = 1000  # rows per INSERT statement in enqueue_many (one transaction for all)
ANALYZE_AFTER = 10_000  # new jobs after which enqueue_many refreshes PostgreSQL's statistics
GAVE_UP = "the lease expired on the last attempt (the worker crashed or hung)"

RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
RETRY_JITTER = 0.25  # jitter only shortens a delay, so the cap stays a cap
# The longest a remote's Retry-After may hold a job back: past that the hint is a mistake (or a
# hostile server), and a digest a day late is still worth more than one never retried.
RETRY_AFTER_CAP = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue with `JobQueue.enqueue_many` (the arguments of `enqueue`)."""

    task: str
    payload: Mapping[str, Any] | None = None
    run_at: datetime | None = None
    unique_key: str | None = None
    max_attempts: int = 5


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker holds until `locked_until`; `attempts` counts this claim too."""

    id: int
    task: str
    payload: Mapping[str, Any]
    attempts: int
    max_attempts: int
    locked_until: datetime

    @property
    def last_attempt(self) -> bool:
        return self.attempts >= self.max_attempts


def retry_delay(
    attempts: int,
    *,
    base: timedelta = RETRY_BASE,
    cap: timedelta = RETRY_CAP,
    jitter_key: int | str | None = None,
) -> timedelta:
    """Exponential backoff: base × 2^(attempts-1), capped.

    With `jitter_key` (e.g. the job id) the delay is shortened by up to 25 %, by an amount that is
    the same for the same key and attempt: jobs that failed together spread out, and tests stay
    reproducible.
    """
    exponent = min(max(attempts, 1) - 1, 32)  # 2^32 × anything is past any sane cap
    delay = min(base * (1 << exponent), cap)
    if jitter_key is not None:
        digest = hashlib.sha256(f"{jitter_key}:{attempts}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        delay = delay * (1 - RETRY_JITTER * fraction)
    return delay


def honour_retry_after(
    backoff: timedelta, retry_after: float | None, *, cap: timedelta = RETRY_AFTER_CAP
) -> timedelta:
    """The wait before a retry: the backoff, or longer when the remote asked for longer.

    `retry_after` is in seconds (DeliveryTransientError.retry_after); it is capped at `cap`, a
    negative one counts as 0 and one that is not a number is ignored. The hint gets no jitter: the
    remote said "not before".
    """
    if retry_after is None or math.isnan(retry_after):
        return backoff
    asked = timedelta(seconds=min(max(retry_after, 0.0), cap.total_seconds()))
    return max(backoff, asked)


class JobQueue:
    """The job table behind a narrow interface: enqueue, claim, extend, finish, retry, fail."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        # Stamps new rows (run_at, created_at) and finishes: the caller's clock, so a planner
        # running on an injected time enqueues jobs at that time, not at the machine's.
        self.clock = clock
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"the job queue needs SQLite or PostgreSQL, not {self.dialect}")
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        self._insert_many = (
            insert(JOBS).on_conflict_do_nothing(index_elements=[JOBS.c.unique_key]).returning(JOBS.c.id)
        )
        # Built once with bound parameters: a claim or a finish then costs the database's time,
        # not SQLAlchemy's statement construction.
        self._claims = {filtered: _claim_statements(filtered) for filtered in (False, True)}
        self._finish = {fenced: _fenced_statement(fenced, _FINISH) for fenced in (False, True)}
        self._extend = {fenced: _fenced_statement(fenced, _EXTEND) for fenced in (False, True)}
        self._release = (
            update(JOBS)
            .where(JOBS.c.id == bindparam("job_id"))
            .where(JOBS.c.status == RUNNING)
            .where(JOBS.c.locked_by == bindparam("worker_id"))
            .where(JOBS.c.attempts == bindparam("attempt"))
            .values(status=QUEUED, attempts=JOBS.c.attempts - 1, locked_by=None, locked_until=None)
        )

    # -- producing --------------------------------------------------------------------------

    def enqueue(
        self,
        task: str,
        payload: Mapping[str, Any] | None = None,
        *,
        run_at: datetime | None = None,
        unique_key: str | None = None,
        max_attempts: int = 5,
    ) -> int | None:
        """Add a job; returns its id, or None when a job with `unique_key` already exists.

        The duplicate check is the database's unique index (`INSERT … ON CONFLICT DO NOTHING`),
        so any number of producers racing on the same key create one row.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if unique_key is not None and len(unique_key) > MAX_KEY_CHARS:
            raise ValueError(f"unique_key is longer than {MAX_KEY_CHARS} characters: {unique_key[:60]}…")
        now = self.clock()
        values = {
            "task": task,
            "payload": dict(payload or {}),
            "unique_key": unique_key,
            "status": QUEUED,
            "run_at": run_at or now,
            "attempts": 0,
            "max_attempts": max_attempts,
            "created_at": now,
        }
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        statement = (
            insert(JOBS)
            .values(values)
            .on_conflict_do_nothing(index_elements=[JOBS.c.unique_key])
            .returning(JOBS.c.id)
        )
        with self.engine.begin() as conn:
            job_id = conn.execute(statement).scalar_one_or_none()
        return None if job_id is None else int(job_id)

    def enqueue_many(self, jobs: Iterable[NewJob], *, chunk: int = ENQUEUE_CHUNK) -> int:
        """Add many jobs in one transaction; returns how many were new.

        A job whose `unique_key` is already taken (by an earlier job, or by one earlier in
        `jobs`) is skipped by the same unique index as in `enqueue` (`ON CONFLICT DO NOTHING`),
        so producers racing on the same keys still create one row per key. Keys go in sorted:
        two transactions that wait on each other's uncommitted keys in opposite orders deadlock
        on PostgreSQL, and one order for every producer leaves only waiting.
        """
        now = self.clock()
        created = 0
        batch: list[dict[str, Any]] = []
        ordered = sorted(jobs, key=lambda job: (job.unique_key is None, job.unique_key or ""))
        with self.engine.begin() as conn:
            for job in ordered:
                batch.append(_row(job, now))
                if len(batch) >= chunk:
                    created += self._insert_rows(conn, batch)
                    batch = []
            if batch:
                created += self._insert_rows(conn, batch)
        if created >= ANALYZE_AFTER and self.dialect == "postgresql":
            # Until autovacuum gets to it, the planner knows nothing of the new rows and reads
            # the whole table for every claim (tens of ms at 100k) instead of the claim index.
            with self.engine.begin() as conn:
                conn.execute(text("ANALYZE jobs"))
        return created

    def _insert_rows(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        # executemany with RETURNING: SQLAlchemy sends multi-row INSERTs ("insertmanyvalues"),
        # and only rows that were inserted come back.
        return len(conn.execute(self._insert_many, rows).all())

    def enqueue_one(self, job: NewJob, *, connection: Connection | None = None) -> int | None:
        """`enqueue_many` for one job, optionally inside the caller's transaction; its id, or None
        when its `unique_key` is taken."""
        row = _row(job, self.clock())
        with _joined(self.engine, connection) as conn:
            created = conn.execute(self._insert_many, [row]).all()
        return int(created[0].id) if created else None

    def requeue(self, unique_key: str, *, now: datetime, connection: Connection | None = None) -> bool:
        """A finished job (done or failed) runnable again: queued at `now`, attempts from 0, no
        error, no lease. False when there is no such job or it is queued or running: a running
        job is never touched, its worker's fenced writes stay valid."""
        query = (
            update(JOBS)
            .where(JOBS.c.unique_key == unique_key, JOBS.c.status.in_([DONE, FAILED]))
            .values(
                status=QUEUED,
                run_at=now,
                attempts=0,
                locked_by=None,
                locked_until=None,
                finished_at=None,
                last_error=None,
            )
        )
        with _joined(self.engine, connection) as conn:
            return conn.execute(query).rowcount == 1

    def status_of(self, unique_key: str, *, connection: Connection | None = None) -> str | None:
        """The status of the job with `unique_key`, or None when there is none (never made, or pruned)."""
        query = select(JOBS.c.status).where(JOBS.c.unique_key == unique_key)
        with _joined(self.engine, connection) as conn:
            status = conn.execute(query).scalar_one_or_none()
        return None if status is None else str(status)

    # -- consuming --------------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        *,
        now: datetime,
        lease: timedelta,
        tasks: Collection[str] | None = None,
        limit: int = 1,
        waited: timedelta = timedelta(0),
    ) -> list[ClaimedJob]:
        """Take up to `limit` due jobs for `worker_id`, oldest run_at first.

        Due means queued with run_at ≤ now, or running with an expired lease (its worker died or
        stalled: we take it over). A job whose lease expired on its last attempt is not run again
        but marked failed, so a job that kills its worker cannot loop forever. With `waited`, a
        queued job is due only once it has been due that long (a stand-in for another worker).
        """
        if limit < 1 or (tasks is not None and not tasks):
            return []
        give_up, claim = self._claims[tasks is not None]
        params: dict[str, Any] = {
            "now": now,
            "due": now - waited,
            "until": now + lease,
            "worker_id": worker_id,
            "n": limit,
        }
        if tasks is not None:
            params["tasks"] = list(tasks)
        with self.engine.begin() as conn:
            # Both statements write first thing, so a SQLite transaction never has to upgrade a
            # stale read snapshot to a write (which fails at once instead of waiting).
            conn.execute(give_up, params)
            rows = conn.execute(claim, params).all()
        jobs = [
            ClaimedJob(
                id=int(row.id),
                task=str(row.task),
                payload=dict(row.payload or {}),
                attempts=int(row.attempts),
                max_attempts=int(row.max_attempts),
                locked_until=row.locked_until,
            )
            for row in rows
        ]
        return sorted(jobs, key=lambda job: job.id)

    def extend(self, job_id: int, worker_id: str, *, until: datetime, attempt: int | None = None) -> bool:
        """Renew our lease; False when the job is no longer ours (taken over, finished)."""
        params = {"job_id": job_id, "worker_id": worker_id, "attempt": attempt, "until": until}
        with self.engine.begin() as conn:
            return conn.execute(self._extend[attempt is not None], params).rowcount == 1

    def extend_many(self, jobs: Iterable[ClaimedJob], worker_id: str, *, until: datetime) -> set[int]:
        """Renew the leases of many jobs (each fenced by its claim) in one transaction; returns
        the ids still ours."""
        held: set[int] = set()
        with self.engine.begin() as conn:
            for job in jobs:
                params = {"job_id": job.id, "worker_id": worker_id, "attempt": job.attempts, "until": until}
                if conn.execute(self._extend[True], params).rowcount == 1:
                    held.add(job.id)
        return held

    def finish(
        self,
        job_id: int,
        worker_id: str,
        *,
        now: datetime,
        attempt: int | None = None,
        connection: Connection | None = None,
    ) -> bool:
        """Mark done; False when the lease was lost to another worker (their result stands).

        With `connection` the update joins the caller's transaction (e.g. the one recording the
        job's result), so the two commit together.
        """
        params = {"job_id": job_id, "worker_id": worker_id, "attempt": attempt, "now": now}
        statement = self._finish[attempt is not None]
        if connection is not None:
            return connection.execute(statement, params).rowcount == 1
        with self.engine.begin() as conn:
            return conn.execute(statement, params).rowcount == 1

    def release(self, jobs: Iterable[ClaimedJob], worker_id: str) -> int:
        """Give claimed jobs back untouched (queued again, this claim not counted as an attempt),
        for a worker that claimed more than it will run; returns how many were still ours."""
        released = 0
        with self.engine.begin() as conn:
            for job in jobs:
                params = {"job_id": job.id, "worker_id": worker_id, "attempt": job.attempts}
                released += conn.execute(self._release, params).rowcount
        return released

    def postpone(
        self,
        job_id: int,
        worker_id: str,
        *,
        run_at: datetime,
        attempt: int,
        reason: str,
        connection: Connection | None = None,
    ) -> bool:
        """Queue again for `run_at` without counting this claim as an attempt: the job could not
        start yet (its delivery is being sent by another door) and has not failed. Fenced by our
        claim; False when the job is no longer ours."""
        params = {"job_id": job_id, "worker_id": worker_id, "attempt": attempt}
        statement = self._release.values(run_at=_moment(run_at), last_error=_clip(reason))
        with _joined(self.engine, connection) as conn:
            return conn.execute(statement, params).rowcount == 1

    def retry(
        self,
        job_id: int,
        worker_id: str,
        *,
        error: str,
        run_at: datetime,
        attempt: int | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Queue again for `run_at`, or mark failed when the attempts are used up."""
        last = JOBS.c.attempts >= JOBS.c.max_attempts
        return self._fenced(
            job_id,
            worker_id,
            attempt,
            status=case((last, FAILED), else_=QUEUED),
            run_at=case((last, JOBS.c.run_at), else_=_moment(run_at)),
            finished_at=case((last, _moment(now or self.clock())), else_=None),
            locked_until=None,
            last_error=_clip(error),
        )

    def fail(
        self,
        job_id: int,
        worker_id: str,
        *,
        error: str,
        attempt: int | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Give up on the job for good (a permanent error)."""
        return self._fenced(
            job_id,
            worker_id,
            attempt,
            status=FAILED,
            locked_until=None,
            finished_at=now or self.clock(),
            last_error=_clip(error),
        )

    def _fenced(self, job_id: int, worker_id: str, attempt: int | None, **values: Any) -> bool:
        """Write only while we hold the job: running, locked by us, and (if given) the same claim.

        `locked_by` stays on finished rows (who did it); the status check keeps a second finish
        from matching. The attempt number is a fencing token unique per claim: it tells our claim
        from a later one by the same worker id.
        """
        query = (
            update(JOBS)
            .where(JOBS.c.id == job_id)
            .where(JOBS.c.status == RUNNING)
            .where(JOBS.c.locked_by == worker_id)
        )
        if attempt is not None:
            query = query.where(JOBS.c.attempts == attempt)
        with self.engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    # -- looking ----------------------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(Job, job_id)

    def counts(self) -> dict[str, int]:
        """Jobs per status; every known status is present, zero when empty."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(JOBS.c.status, func.count()).group_by(JOBS.c.status))
            found = {str(status): int(count) for status, count in rows}
        return {status: 0 for status in STATUSES} | found

    def counts_by_task(self) -> dict[str, dict[str, int]]:
        """Jobs per task, then per status; every known status is present for each task that has
        jobs (finished jobs are pruned, so a task's figures cover what is still stored)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(JOBS.c.task, JOBS.c.status, func.count()).group_by(JOBS.c.task, JOBS.c.status)
            )
            found: dict[str, dict[str, int]] = {}
            for task, status, count in rows:
                found.setdefault(str(task), {s: 0 for s in STATUSES})[str(status)] = int(count)
        return found

    def next_run_at(self, *, tasks: Collection[str] | None = None) -> datetime | None:
        """When the earliest queued job becomes due (for sleeping until then)."""
        query = select(func.min(JOBS.c.run_at)).where(JOBS.c.status == QUEUED)
        if tasks is not None:
            query = query.where(JOBS.c.task.in_(list(tasks)))
        with self.engine.connect() as conn:
            due: datetime | None = conn.scalar(query)
        return due

    def prune(self, *, finished_before: datetime) -> int:
        """Delete done and failed jobs finished before the given time; returns how many went.

        Keep recurring jobs longer than the clock's look-back (a day is plenty), or the clock
        would schedule a pruned slot again.
        """
        query = (
            delete(JOBS).where(JOBS.c.status.in_([DONE, FAILED])).where(JOBS.c.finished_at < finished_before)
        )
        with self.engine.begin() as conn:
            return int(conn.execute(query).rowcount or 0)


@contextmanager
def _joined(engine: Engine, connection: Connection | None) -> Iterator[Connection]:
    """The caller's connection (its transaction goes on), or a transaction of our own."""
    if connection is not None:
        yield connection
    else:
        with engine.begin() as conn:
            yield conn


def _row(job: NewJob, now: datetime) -> dict[str, Any]:
    if job.max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if job.unique_key is not None and len(job.unique_key) > MAX_KEY_CHARS:
        raise ValueError(f"unique_key is longer than {MAX_KEY_CHARS} characters: {job.unique_key[:60]}…")
    return {
        "task": job.task,
        "payload": dict(job.payload or {}),
        "unique_key": job.unique_key,
        "status": QUEUED,
        "run_at": job.run_at or now,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "created_at": now,
    }


def _claim_statements(filtered: bool) -> tuple[Any, Any]:
    """(give up, claim) for JobQueue.claim, with :now, :due, :until, :worker_id, :n (and :tasks).

    Each branch reads the claim index in order and stops after n rows; PostgreSQL locks what it
    read with `FOR UPDATE SKIP LOCKED` (in each branch: a UNION cannot carry a locking clause
    itself), SQLite renders no FOR UPDATE, its one writer making the UPDATE atomic by itself.
    """
    jobs = JOBS.c
    now = bindparam("now", type_=UTCDateTime())
    due = bindparam("due", type_=UTCDateTime())  # queued jobs due this long: now, or earlier
    expired = and_(jobs.status == RUNNING, jobs.locked_until < now)
    exhausted = jobs.attempts >= jobs.max_attempts
    tasks = jobs.task.in_(bindparam("tasks", expanding=True)) if filtered else None
    branches = []
    for condition in (and_(jobs.status == QUEUED, jobs.run_at <= due), and_(expired, ~exhausted)):
        branch = select(jobs.id, jobs.run_at).where(condition)
        if tasks is not None:
            branch = branch.where(tasks)
        branch = (
            branch.order_by(jobs.run_at, jobs.id)
            .limit(bindparam("n", type_=Integer))
            .with_for_update(skip_locked=True)
        )
        branches.append(select(branch.subquery()))
    candidates = union_all(*branches).subquery()
    picked = select(candidates.c.id).order_by(candidates.c.run_at, candidates.c.id).limit(bindparam("n"))
    claim = (
        update(JOBS)
        .where(jobs.id.in_(picked))
        .values(
            status=RUNNING,
            attempts=jobs.attempts + 1,
            locked_by=bindparam("worker_id"),
            locked_until=bindparam("until", type_=UTCDateTime()),
        )
        .returning(jobs.id, jobs.task, jobs.payload, jobs.attempts, jobs.max_attempts, jobs.locked_until)
    )
    lost = select(jobs.id).where(expired, exhausted)
    if tasks is not None:
        lost = lost.where(tasks)
    give_up = (
        update(JOBS)
        .where(jobs.id.in_(lost.with_for_update(skip_locked=True)))
        .values(status=FAILED, locked_until=None, finished_at=now, last_error=GAVE_UP)
    )
    return give_up, claim


_FINISH, _EXTEND = "finish", "extend"


def _fenced_statement(fenced: bool, kind: str) -> Any:
    """The fenced write of `finish` or `extend` with :job_id, :worker_id (:attempt) bound."""
    query = (
        update(JOBS)
        .where(JOBS.c.id == bindparam("job_id"))
        .where(JOBS.c.status == RUNNING)
        .where(JOBS.c.locked_by == bindparam("worker_id"))
    )
    if fenced:
        query = query.where(JOBS.c.attempts == bindparam("attempt"))
    if kind == _FINISH:
        return query.values(status=DONE, locked_until=None, finished_at=bindparam("now", type_=UTCDateTime()))
    return query.values(locked_until=bindparam("until", type_=UTCDateTime()))


def _clip(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else "…" + error[-(MAX_ERROR_CHARS - 1) :]


def _moment(value: datetime) -> ColumnElement[datetime]:
    """A datetime inside an expression, bound as our UTC column type (a bare value would not be)."""
    return literal(value, UTCDateTime())
