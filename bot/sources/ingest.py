"""Ingestion: fetch the due sources, parse off the event loop, store, and plan each next fetch.

Fetching is I/O on the event loop; parsing is CPU in a process pool (both cores work while the
loop keeps fetching); writes go through one lock so SQLite sees a single writer. One failing
source only ever produces its own failed report.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.exc import IntegrityError

from bot.config import Settings
from bot.errors import FeedParseError
from bot.ranking.setup import tag_feed, user_topics
from bot.ranking.types import Topic
from bot.sources.fetch import Fetcher
from bot.sources.parse import parse_feed
from bot.sources.schedule import next_fetch_at
from bot.sources.types import FetchResult, ParsedFeed
from bot.store import SaveCounts, Store
from bot.store.models import Source
from bot.store.types import utcnow

log = logging.getLogger(__name__)

ReportStatus = Literal["updated", "unchanged", "not_modified", "failed", "gone"]


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


def make_parse_pool(settings: Settings) -> ProcessPoolExecutor:
    """Parser processes started from a clean forkserver (forking a threaded process is unsafe)."""
    workers = settings.fetch.parse_workers or os.cpu_count() or 1
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bot.sources.parse", "bot.ranking.setup"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def _parse_job(body: bytes, url: str, content_type: str | None, topics: tuple[Topic, ...]) -> ParsedFeed:
    """Runs in a parser process: parse, then tag, so the event loop does neither."""
    return tag_feed(parse_feed(body, url=url, content_type=content_type), topics)


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
        self._write_lock = asyncio.Lock()
        self._topics = user_topics(settings)

    def close(self) -> None:
        if self._own_pool:
            self._pool.shutdown(wait=True, cancel_futures=True)

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
        async with Fetcher(self.settings.fetch, allow_private=self.settings.allow_private_urls) as fetcher:

            async def one(source: Source) -> SourceReport:
                report = await self._ingest_one(fetcher, source)
                if on_progress:
                    on_progress(report)
                return report

            return list(await asyncio.gather(*(one(source) for source in sources)))

    async def _ingest_one(self, fetcher: Fetcher, source: Source) -> SourceReport:
        started = time.perf_counter()
        try:
            result = await fetcher.fetch(
                source.url,
                etag=source.etag,
                last_modified=source.last_modified,
                trusted=source.trusted,
            )
            feed: ParsedFeed | None = None
            parse_error: str | None = None
            if result.outcome == "ok":
                try:
                    loop = asyncio.get_running_loop()
                    feed = await loop.run_in_executor(
                        self._pool,
                        _parse_job,
                        result.body,
                        result.final_url or source.url,
                        result.content_type,
                        self._topics,
                    )
                except FeedParseError as exc:
                    parse_error = f"not a readable feed: {exc}"
            async with self._write_lock:
                report = await asyncio.to_thread(self._record, source, result, feed, parse_error)
        except Exception as exc:  # a bug for one source must not stop the others; say it loudly
            log.exception("ingest failed", extra={"source": source.name, "url": source.url})
            report = SourceReport(source.name, source.url, "failed", error=f"internal error: {exc!r}")
        report = _with_elapsed(report, time.perf_counter() - started)
        _log_report(report)
        return report

    def _record(
        self, source: Source, result: FetchResult, feed: ParsedFeed | None, parse_error: str | None
    ) -> SourceReport:
        """Store the entries and the source's new state; runs in a worker thread under the lock."""
        assert source.id is not None
        now = self.clock()
        fetch = self.settings.fetch
        failed = result.outcome == "error" or parse_error is not None
        errors = source.error_count + 1 if failed else 0
        values: dict[str, object] = {"last_fetch_at": now, "error_count": errors}
        counts = SaveCounts()
        if feed is not None:
            counts = self.store.save_entries(source.id, feed.entries, now=now)
            values |= {
                "title": source.title or feed.title,
                "site_url": source.site_url or feed.site_url,
            }
        if result.outcome in ("ok", "not_modified") and not parse_error:
            values |= {"last_success_at": now, "last_error": None}
            if result.outcome == "ok":
                values |= {"etag": result.etag, "last_modified": result.last_modified}
        error = parse_error or result.error
        if failed:
            values["last_error"] = error
        status: ReportStatus
        if result.outcome == "gone":
            status = "gone"
            values |= {
                "enabled": False,
                "disabled_reason": error or "HTTP 410 Gone",
                "next_fetch_at": None,
            }
        else:
            status = (
                "failed"
                if failed
                else (
                    "not_modified"
                    if result.outcome == "not_modified"
                    else "updated"
                    if counts.new or counts.updated
                    else "unchanged"
                )
            )
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
        moved_to = self._move(source, result.moved_to)
        self.store.update_source(source.id, **values)
        return SourceReport(
            source=source.name,
            url=moved_to or source.url,
            status=status,
            http_status=result.status,
            new=counts.new,
            updated=counts.updated,
            unchanged=counts.unchanged,
            error=error if failed or status == "gone" else None,
            warning=feed.warning if feed else None,
            moved_to=moved_to,
            next_fetch_at=values.get("next_fetch_at"),  # type: ignore[arg-type]
        )

    def _move(self, source: Source, moved_to: str | None) -> str | None:
        """A permanent redirect updates the stored URL, unless another source already has it."""
        if not moved_to or moved_to == source.url:
            return None
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


def _with_elapsed(report: SourceReport, elapsed: float) -> SourceReport:
    return replace(report, elapsed=round(elapsed, 3))


def _log_report(report: SourceReport) -> None:
    extra = {
        "source": report.source,
        "status": report.status,
        "http": report.http_status,
        "new": report.new,
        "updated": report.updated,
        "elapsed": report.elapsed,
    }
    if report.status in ("failed", "gone"):
        log.warning("fetch failed: %s", report.error, extra=extra)
    else:
        if report.warning:
            log.info("feed recovered with warnings: %s", report.warning, extra=extra)
        log.debug("fetched", extra=extra)


async def ingest_sources(
    store: Store,
    settings: Settings,
    *,
    refs: Iterable[str] = (),
    force: bool = False,
    on_start: Callable[[list[Source]], None] | None = None,
    on_progress: ProgressHook | None = None,
) -> list[SourceReport]:
    """One-shot ingestion (the `fetch` command and the benchmark): a pool for this run only."""
    ingestor = Ingestor(store, settings)
    try:
        return await ingestor.run(refs=refs, force=force, on_start=on_start, on_progress=on_progress)
    finally:
        ingestor.close()
