"""Work as rows in the `jobs` table: enqueued once, claimed atomically, leased, finished fenced.

The life of a job: queued → running (claimed: attempts + 1, locked_by and locked_until set)
→ done | queued again (retry, later run_at) | failed (permanent error or attempts used up).

Why it is safe with many workers on one database:
- A claim is one atomic statement. On PostgreSQL the candidate rows are picked with
  `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait for or take each other's rows; on
  SQLite the single `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING` runs under the one write
  lock.
- A lease: a running job whose `locked_until` has passed is claimable again, so a crashed
  worker's job is taken over by another. A live worker renews its leases (`extend`).
- A fence: every write after the claim requires `locked_by = me` and the claim's attempt number,
  so a worker that lost its lease (paused, partitioned) cannot finish or requeue the job that
  another worker now runs; the call returns False instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, Table, and_, case, delete, func, literal, or_, select, update
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

RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
RETRY_JITTER = 0.25  # jitter only shortens a delay, so the cap stays a cap


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


class JobQueue:
    """The job table behind a narrow interface: enqueue, claim, extend, finish, retry, fail."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"the job queue needs SQLite or PostgreSQL, not {self.dialect}")

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
        now = utcnow()
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

    # -- consuming --------------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        *,
        now: datetime,
        lease: timedelta,
        tasks: Collection[str] | None = None,
        limit: int = 1,
    ) -> list[ClaimedJob]:
        """Take up to `limit` due jobs for `worker_id`, oldest run_at first.

        Due means queued with run_at ≤ now, or running with an expired lease (its worker died or
        stalled: we take it over). A job whose lease expired on its last attempt is not run again
        but marked failed, so a job that kills its worker cannot loop forever.
        """
        if limit < 1 or (tasks is not None and not tasks):
            return []
        task_filter = JOBS.c.task.in_(list(tasks)) if tasks is not None else None
        expired = and_(JOBS.c.status == RUNNING, JOBS.c.locked_until < now)
        exhausted = JOBS.c.attempts >= JOBS.c.max_attempts
        due = or_(
            and_(JOBS.c.status == QUEUED, JOBS.c.run_at <= now),
            and_(expired, ~exhausted),
        )
        picked = self._pick(due, task_filter).order_by(JOBS.c.run_at, JOBS.c.id).limit(limit)
        claim = (
            update(JOBS)
            .where(JOBS.c.id.in_(picked))
            .values(
                status=RUNNING,
                attempts=JOBS.c.attempts + 1,
                locked_by=worker_id,
                locked_until=now + lease,
            )
            .returning(
                JOBS.c.id,
                JOBS.c.task,
                JOBS.c.payload,
                JOBS.c.attempts,
                JOBS.c.max_attempts,
                JOBS.c.locked_until,
            )
        )
        give_up = (
            update(JOBS)
            .where(JOBS.c.id.in_(self._pick(and_(expired, exhausted), task_filter)))
            .values(
                status=FAILED,
                locked_until=None,
                finished_at=now,
                last_error="the lease expired on the last attempt (the worker crashed or hung)",
            )
        )
        with self.engine.begin() as conn:
            # Both statements write first thing, so a SQLite transaction never has to upgrade a
            # stale read snapshot to a write (which fails at once instead of waiting).
            conn.execute(give_up)
            rows = conn.execute(claim).all()
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

    def _pick(self, condition: ColumnElement[bool], task_filter: ColumnElement[bool] | None) -> Any:
        query = select(JOBS.c.id).where(condition)
        if task_filter is not None:
            query = query.where(task_filter)
        # PostgreSQL: lock the candidates, skip rows another claimer holds. SQLite has no row
        # locks and renders no FOR UPDATE: its one writer makes the UPDATE atomic by itself.
        return query.with_for_update(skip_locked=True)

    def extend(self, job_id: int, worker_id: str, *, until: datetime, attempt: int | None = None) -> bool:
        """Renew our lease; False when the job is no longer ours (taken over, finished)."""
        return self._fenced(job_id, worker_id, attempt, locked_until=until)

    def finish(self, job_id: int, worker_id: str, *, now: datetime, attempt: int | None = None) -> bool:
        """Mark done; False when the lease was lost to another worker (their result stands)."""
        return self._fenced(job_id, worker_id, attempt, status=DONE, locked_until=None, finished_at=now)

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
            finished_at=case((last, _moment(now or utcnow())), else_=None),
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
            finished_at=now or utcnow(),
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


def _clip(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else "…" + error[-(MAX_ERROR_CHARS - 1) :]


def _moment(value: datetime) -> ColumnElement[datetime]:
    """A datetime inside an expression, bound as our UTC column type (a bare value would not be)."""
    return literal(value, UTCDateTime())
