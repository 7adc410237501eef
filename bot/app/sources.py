"""The verbs of sources and articles: add (with discovery), list, remove, enable, import and
export OPML, fetch, list articles, prune."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bot.app.base import AppBase

if TYPE_CHECKING:
    from bot.app.types import (
        AddedSource,
        ExportedSources,
        FetchRun,
        ImportedSources,
        Source,
        SourceStatus,
        StoredArticle,
    )
    from bot.sources.ingest import ProgressHook
    from bot.sources.types import ParsedFeed
    from bot.store import NewSource


class SourceVerbs(AppBase):
    def add_source(
        self,
        url: str,
        *,
        name: str | None = None,
        topics: Sequence[str] = (),
        weight: float = 1.0,
        category: str | None = None,
        trusted: bool = True,
    ) -> AddedSource:
        """Add a feed; a page URL is searched for its <link rel="alternate"> feed. A source from
        chat or the web is untrusted: its hosts are refused when private, loopback or link-local
        (bot/sources/netguard.py), for the page and the feed it links to alike."""
        import asyncio

        from bot.app.types import AddedSource
        from bot.sources.netguard import check_url
        from bot.store import NewSource

        url = check_url(url)
        self._refuse_known_url(url)
        feed_url, feed = asyncio.run(self._discover(url, trusted=trusted))
        if feed_url != url:
            self._refuse_known_url(feed_url)
        display = name or feed.title or urlsplit(feed_url).hostname or feed_url
        source = self.store.add_source(
            NewSource(
                display,
                feed_url,
                site_url=feed.site_url,
                title=feed.title,
                topics=tuple(topics),
                weight=weight,
                category=category,
                trusted=trusted,
            )
        )
        return AddedSource(source, url, feed_url, len(feed.entries))

    async def _discover(self, url: str, *, trusted: bool = True) -> tuple[str, ParsedFeed]:
        from bot.sources.discover import discover_feed
        from bot.sources.fetch import Fetcher
        from bot.sources.parse import parse_feed

        settings = self.settings
        async with Fetcher(settings.fetch, allow_private=settings.allow_private_urls) as fetcher:
            return await discover_feed(
                url,
                fetch=lambda u: fetcher.fetch(u, trusted=trusted),
                parse=lambda body, u, kind: parse_feed(body, url=u, content_type=kind),
            )

    def _refuse_known_url(self, url: str) -> None:
        from bot.store import DuplicateSourceError

        for source in self.store.list_sources():
            if source.url == url:
                raise DuplicateSourceError(f"{url} is already a source, named {source.name!r}")

    def add_sources(self, new: Sequence[NewSource]) -> list[Source]:
        """Add feeds as they are (no discovery): the demo's, an import's."""
        return self.store.add_sources(list(new))

    def mark_seeded(self) -> None:
        """Never add the configured or default sources to this store (the demo's own folder)."""
        from bot.sources.defaults import SEEDED_FLAG

        self.store.set_meta(SEEDED_FLAG, "1")

    def list_sources(self) -> list[SourceStatus]:
        from bot.app.types import SourceStatus

        sources = self.store.list_sources()
        counts = self.store.article_counts()
        return [SourceStatus(s, counts.get(s.id or 0, 0)) for s in sources]

    def remove_source(self, ref: str) -> Source:
        """Remove a source (name, URL or id) and its articles."""
        return self.store.remove_source(ref)

    def enable_source(self, ref: str, enabled: bool = True) -> Source:
        return self.store.set_enabled(ref, enabled)

    def import_sources(self, opml: bytes, *, origin: str, skip_invalid: bool = False) -> ImportedSources:
        """Sources from an OPML document, folders kept as categories; all or nothing unless
        `skip_invalid` (then `OPMLImportRefused` carries the problems)."""
        from bot.app.types import ImportedSources, OPMLImportRefused
        from bot.sources.opml import parse_opml
        from bot.store import NewSource

        feeds, found = parse_opml(opml, origin=origin)
        problems = tuple(str(p) for p in found)
        if problems and not skip_invalid:
            raise OPMLImportRefused(
                f"{origin}: {len(problems)} invalid outline(s), nothing imported "
                "(fix them, or pass --skip-invalid to import the valid ones)",
                problems,
            )
        stored = self.store.list_sources()
        known = {s.url for s in stored}
        names = {s.name for s in stored}
        fresh = [f for f in feeds if f.url not in known]
        to_add = []
        for feed in fresh:
            name = _unique_name(feed.name, names)
            names.add(name)
            to_add.append(
                NewSource(
                    name,
                    feed.url,
                    site_url=feed.site_url,
                    topics=feed.topics,
                    weight=feed.weight,
                    category=feed.category,
                )
            )
        self.add_sources(to_add)
        return ImportedSources(len(to_add), len(feeds) - len(fresh), problems)

    def export_sources(self) -> ExportedSources:
        """Every source as OPML 2.0, categories as folders."""
        from bot.app.types import ExportedSources
        from bot.sources.opml import OutlineFeed, export_opml

        feeds = [
            OutlineFeed(
                url=s.url,
                name=s.name,
                site_url=s.site_url,
                category=s.category,
                topics=tuple(s.topics),
                weight=s.weight,
            )
            for s in self.store.list_sources()
        ]
        return ExportedSources(export_opml(feeds), len(feeds))

    def fetch(
        self,
        *,
        refs: Iterable[str] = (),
        force: bool = False,
        on_start: Callable[[list[Source]], None] | None = None,
        on_progress: ProgressHook | None = None,
        parse_in_threads: bool = False,
    ) -> FetchRun:
        """Fetch the due sources (all enabled ones with `force`, or those named by `refs`).
        `parse_in_threads`: a few small feeds (the demo's) parse in milliseconds; threads spare
        starting the parser processes."""
        import asyncio
        from concurrent.futures import Executor, ThreadPoolExecutor

        from bot.sources.parse_pool import start_parse_pool

        # The parser processes start on the other core while this one imports the store and the
        # fetcher and opens the database: the verb then costs little more than the ingest itself.
        pool: Executor = (
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="parse")
            if parse_in_threads
            else start_parse_pool(self.settings)
        )
        try:
            from bot.app.types import FetchRun
            from bot.sources.ingest import ingest_sources

            reports = asyncio.run(
                ingest_sources(
                    self.store,
                    self.settings,
                    refs=refs,
                    force=force,
                    on_start=on_start,
                    on_progress=on_progress,
                    pool=pool,
                )
            )
            return FetchRun(tuple(reports), self.store.next_due_at())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def list_articles(
        self, *, source: str | None = None, since: timedelta | None = None, limit: int = 50
    ) -> list[StoredArticle]:
        """Stored articles, newest first."""
        from bot.app.types import StoredArticle

        cutoff = self.now() - since if since is not None else None
        rows = self.store.list_articles(source=source, since=cutoff, limit=limit)
        return [StoredArticle(article, name) for article, name in rows]

    def prune(self, *, older_than: timedelta | None = None) -> tuple[int, datetime]:
        """Delete articles published before the age limit (default: prune_after_days); returns
        (how many, the cutoff)."""
        cutoff = self.now() - (older_than or timedelta(days=self.settings.prune_after_days))
        return self.store.prune_articles(cutoff), cutoff


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate
