"""Ingestion: fetch the due sources, parse off the event loop, store, and plan each next fetch.

Fetching is I/O on the event loop; parsing is CPU in a process pool (both cores work while the
loop keeps fetching); writes go to one writer thread, so SQLite sees a single writer. One failing
source only ever produces its own failed report.

Memory stays flat however many sources are due: a fixed number of lanes take the sources one
after another (fetch → parse → store), so at most one body per lane is alive, and fetching
waits when parsing is behind. Writes are batched: whatever is waiting when the writer thread
is free goes into one transaction (each feed's entries together with its new ETag, so a
validator is never stored without its entries).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.exc import IntegrityError

from bot.config import Settings
from bot.errors import FeedParseError
from bot.futures import settle
from bot.sources.fetch import Fetcher
from bot.sources.parse_pool import make_parse_pool, parse_job, parse_workers
from bot.sources.schedule import next_fetch_at
from bot.sources.types import FetchResult, PackedEntries, ParsedFeed
from bot.store import SaveCounts, Store
from bot.store.models import Source
from bot.store.store import FetchRecord
from bot.store.types import utcnow

if TYPE_CHECKING:
    from bot.ranking.types import Topic

log = logging.getLogger(__name__)

ReportStatus = Literal["updated", "unchanged", "not_modified", "failed", "gone"]

# Sources written in one transaction at most: long enough to spare commits, short enough that
# other writers (delivery, the CLI) never wait long for SQLite's lock.
MAX_WRITE_BATCH = 64


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What one source's fetch gave, for the summary table and `--json`."""

    source: str
    url: str
    status: ReportStatus
    http_status: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    error: str | None = None
    warning: str | None = None
    moved_to: str | None = None
    next_fetch_at: datetime | None = None
    elapsed: float = 0.0


ProgressHook = Callable[[SourceReport], None]


class Ingestor:
    """Runs fetch → parse → store for many sources; reusable across daemon cycles."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        pool: Executor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._own_pool = pool is None
        self._pool: Executor = pool or make_parse_pool(settings)
        # One writer thread: SQLite sees a single writer, and writes never block the event loop.
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-store")
        self._topics = _user_topics(settings)
        # Enough lanes to keep `concurrency` fetches in flight while a few bodies wait for the
        # parse pool (so it never starves); more would only hold more bodies in memory.
        self._lanes = settings.fetch.concurrency + 2 * parse_workers(settings)

    def close(self) -> None:
        if self._own_pool:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._writer_thread.shutdown(wait=True)

    async def run(
        self,
        *,
        refs: Iterable[str] = (),
        force: bool = False,
        on_start: Callable[[list[Source]], None] | None = None,
        on_progress: ProgressHook | None = None,
    ) -> list[SourceReport]:
        """Fetch the due sources (or `refs`, or all enabled with force); report each one."""
        sources = self.store.sources_due(self.clock(), refs=list(refs), force=force)
        if on_start:
            on_start(sources)
        if not sources:
            return []
        reports: list[SourceReport | None] = [None] * len(sources)
        todo = iter(enumerate(sources))
        writer = _Writer(self.store, self._writer_thread)
        async with Fetcher(self.settings.fetch, allow_private=self.settings.allow_private_urls) as fetcher:

            async def lane() -> None:
                for index, source in todo:  # shared: each lane takes the next source
                    report = await self._ingest_one(fetcher, writer, source)
                    reports[index] = report
                    if on_progress:
                        on_progress(report)

            lanes = [asyncio.create_task(lane()) for _ in range(min(self._lanes, len(sources)))]
            try:
                await asyncio.gather(*lanes)
            finally:
                for task in lanes:  # when one lane failed (a progress hook raised): stop the rest
                    task.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)
                await writer.drained()
        return [report for report in reports if report is not None]

    async def _ingest_one(self, fetcher: Fetcher, writer: _Writer, source: Source) -> SourceReport:
        started = time.perf_counter()
        try:
            result, parsed, parse_error = await self._fetch_and_parse(fetcher, source)
            feed = parsed[0] if parsed else None
            moved_to = None
            if result.moved_to and result.moved_to != source.url:
                loop = asyncio.get_running_loop()
                moved_to = await loop.run_in_executor(
                    self._writer_thread, self._move, source, result.moved_to
                )
            plan = self._plan(source, result, parsed, parse_error)
            counts = await writer.write(plan.record)
            status = plan.status
            if status == "updated" and not (counts.new or counts.updated):
                status = "unchanged"
            report = SourceReport(
                source=source.name,
                url=moved_to or source.url,
                status=status,
                http_status=result.status,
                new=counts.new,
                updated=counts.updated,
                unchanged=counts.unchanged,
                error=plan.error,
                warning=feed.warning if feed else None,
                moved_to=moved_to,
                next_fetch_at=plan.next_fetch_at,
                elapsed=round(time.perf_counter() - started, 3),
            )
        except Exception as exc:  # a bug for one source must not stop the others; say it loudly
            log.exception("ingest failed", extra={"source": source.name, "url": source.url})
            report = SourceReport(
                source.name,
                source.url,
                "failed",
                error=f"internal error: {exc!r}",
                elapsed=round(time.perf_counter() - started, 3),
            )
        _log_report(report)
        return report

    async def _fetch_and_parse(
        self, fetcher: Fetcher, source: Source
    ) -> tuple[FetchResult, _Parsed | None, str | None]:
        """The fetch (without its body: only this frame holds it) and what parsing gave."""
        result = await fetcher.fetch(
            source.url,
            etag=source.etag,
            last_modified=source.last_modified,
            trusted=source.trusted,
        )
        if result.outcome != "ok":
            return result, None, None
        body, result = result.body, _without_body(result)
        try:
            loop = asyncio.get_running_loop()
            parsed = await loop.run_in_executor(
                self._pool,
                parse_job,
                body,
                result.final_url or source.url,
                result.content_type,
                self._topics,
            )
        except FeedParseError as exc:
            return result, None, f"not a readable feed: {exc}"
        return result, parsed, None

    def _plan(
        self, source: Source, result: FetchResult, parsed: _Parsed | None, parse_error: str | None
    ) -> _Plan:
        """The source's new state and its report status ("updated" until the write tells)."""
        assert source.id is not None
        now = self.clock()
        fetch = self.settings.fetch
        feed, entries = parsed if parsed else (None, None)
        failed = result.outcome == "error" or parse_error is not None
        errors = source.error_count + 1 if failed else 0
        values: dict[str, Any] = {"last_fetch_at": now, "error_count": errors}
        if feed is not None:
            values["title"] = source.title or feed.title
            values["site_url"] = source.site_url or feed.site_url
        if result.outcome in ("ok", "not_modified") and not parse_error:
            values["last_success_at"] = now
            values["last_error"] = None
            if result.outcome == "ok":
                values["etag"] = result.etag
                values["last_modified"] = result.last_modified
        error = parse_error or result.error
        if failed:
            values["last_error"] = error
        status: ReportStatus
        if result.outcome == "gone":
            status = "gone"
            values["enabled"] = False
            values["disabled_reason"] = error or "HTTP 410 Gone"
            values["next_fetch_at"] = None
        else:
            status = "failed" if failed else "not_modified" if result.outcome == "not_modified" else "updated"
            values["next_fetch_at"] = next_fetch_at(
                now=now,
                outcome="error" if failed else result.outcome,
                error_count=errors,
                interval=timedelta(minutes=fetch.interval_minutes),
                max_backoff=timedelta(hours=fetch.max_backoff_hours),
                max_age=result.max_age,
                retry_after=result.retry_after,
                ttl_minutes=feed.ttl_minutes if feed else None,
            )
        record = FetchRecord(source.id, now, values, entries)
        return _Plan(
            record=record,
            status=status,
            error=error if failed or status == "gone" else None,
            next_fetch_at=values["next_fetch_at"],
        )

    def _move(self, source: Source, moved_to: str) -> str | None:
        """A permanent redirect updates the stored URL, unless another source already has it."""
        assert source.id is not None
        try:
            self.store.update_source(source.id, url=moved_to)
        except IntegrityError:
            log.warning(
                "permanent redirect to a URL another source already uses; keeping the old URL",
                extra={"source": source.name, "url": source.url, "moved_to": moved_to},
            )
            return None
        log.info("source moved permanently", extra={"source": source.name, "moved_to": moved_to})
        return moved_to


_Parsed = tuple[ParsedFeed, PackedEntries]  # a feed (its entries left out) and its entries


@dataclass(frozen=True, slots=True)
class _Plan:
    record: FetchRecord
    status: ReportStatus
    error: str | None
    next_fetch_at: datetime | None


class _Writer:
    """The store writes of one run, on the writer thread, batched while the thread is busy.

    `write` waits for its record to be committed. Records queue up while a batch is being
    written and go together into the next transaction; when a batch fails, its records are
    written again one by one, so only the culprit fails.
    """

    def __init__(self, store: Store, thread: Executor) -> None:
        self._store = store
        self._thread = thread
        self._queue: list[tuple[FetchRecord, asyncio.Future[SaveCounts]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, record: FetchRecord) -> SaveCounts:
        future: asyncio.Future[SaveCounts] = asyncio.get_running_loop().create_future()
        self._queue.append((record, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await future

    async def drained(self) -> None:
        """Wait until every queued record is written (also when the run is being cancelled)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue[:MAX_WRITE_BATCH], self._queue[MAX_WRITE_BATCH:]
            outcomes: Sequence[SaveCounts | BaseException]
            try:
                outcomes = await loop.run_in_executor(self._thread, self._write, [r for r, _ in batch])
            except Exception as exc:  # the thread pool itself failed: tell every waiter
                outcomes = [exc] * len(batch)
            settle([future for _, future in batch], outcomes)

    def _write(self, records: Sequence[FetchRecord]) -> Sequence[SaveCounts | BaseException]:
        """On the writer thread: one transaction for all, else one each to isolate a failure."""
        try:
            return self._store.record_fetches(records)
        except Exception as exc:
            if len(records) == 1:
                return [exc]
        outcomes: list[SaveCounts | BaseException] = []
        for record in records:
            try:
                outcomes.extend(self._store.record_fetches([record]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes


def _without_body(result: FetchResult) -> FetchResult:
    return FetchResult(
        url=result.url,
        outcome=result.outcome,
        status=result.status,
        final_url=result.final_url,
        moved_to=result.moved_to,
        content_type=result.content_type,
        etag=result.etag,
        last_modified=result.last_modified,
        max_age=result.max_age,
        retry_after=result.retry_after,
        error=result.error,
        elapsed=result.elapsed,
    )


def _log_report(report: SourceReport) -> None:
    failed = report.status in ("failed", "gone")
    if not (failed or report.warning or log.isEnabledFor(logging.DEBUG)):
        return
    extra = {
        "source": report.source,
        "status": report.status,
        "http": report.http_status,
        "new": report.new,
        "updated": report.updated,
        "elapsed": report.elapsed,
    }
    if failed:
        log.warning("fetch failed: %s", report.error, extra=extra)
    else:
        if report.warning:
            log.info("feed recovered with warnings: %s", report.warning, extra=extra)
        log.debug("fetched", extra=extra)


def _user_topics(settings: Settings) -> tuple[Topic, ...]:
    """The settings' own topics for the tagger; with none (the usual case) the tagging modules
    stay in the parser processes (see `parse_job`)."""
    if not settings.topics:
        return ()
    from bot.ranking.setup import user_topics

    return user_topics(settings)


async def ingest_sources(
    store: Store,
    settings: Settings,
    *,
    refs: Iterable[str] = (),
    force: bool = False,
    on_start: Callable[[list[Source]], None] | None = None,
    on_progress: ProgressHook | None = None,
    pool: Executor | None = None,
) -> list[SourceReport]:
    """One-shot ingestion (the `fetch` command and the benchmark): a pool for this run only,
    unless the caller brings one (and shuts it down)."""
    ingestor = Ingestor(store, settings, pool=pool)
    try:
        return await ingestor.run(refs=refs, force=force, on_start=on_start, on_progress=on_progress)
    finally:
        ingestor.close()
