"""`FlareStart`: one object, built once from the Settings, whose methods are the users' verbs.

The store opens on first use (so `topics` and `config` never touch the database) and is seeded with
the first run's sources unless the door says not to. Every verb imports the part of the core it
needs inside its body: importing this module costs the standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from bot.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy import Engine

    from bot.app.delivery import SampleSend, SendOutcome
    from bot.app.metrics import Gauge, StoreMetrics
    from bot.app.preferences import PreferencesEditor
    from bot.app.types import (
        AddedSource,
        DeliveryListing,
        ExportedSources,
        FetchRun,
        ImportedSources,
        NextDelivery,
        Preview,
        RenderedPreview,
        Source,
        SourceStatus,
        StatusChange,
        StoredArticle,
        Subscriber,
        SubscriberView,
        SyncOutcome,
    )
    from bot.channels.base import Channel
    from bot.channels.registry import ChannelRegistry
    from bot.config import Settings
    from bot.delivery.retry import RetryOutcome
    from bot.delivery.service import SendResult
    from bot.ranking.topics import Taxonomy
    from bot.ranking.types import Topic
    from bot.sources.ingest import ProgressHook
    from bot.sources.types import ParsedFeed
    from bot.store import NewSource, Store
    from bot.store.subscribers import SubscriberStore
    from bot.subscribers.files import SubscriberSpec
    from bot.types import Destination


class SubscriberAccess(Protocol):
    """What the lifecycle verbs need of the subscriber store (SubscriberStore; tests may pass others)."""

    def get(self, ref: str | int, /) -> Subscriber: ...

    def set_status(
        self, subscriber_id: int, status: str, /, *, now: datetime, expect: Collection[str] | None = None
    ) -> Subscriber: ...

    def update(self, subscriber_id: int, *, now: datetime | None = None, **values: Any) -> Subscriber: ...


PREVIEW_ADDRESS = "preview@example.com"  # the stand-in reader of a preview of preferences
STAND_IN_ID = 1  # links need an id; a throwaway key (see render_preview) keeps them from working


class FlareStart:
    """What users can do, for every door. Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        seed: bool = True,
        clock: Callable[[], datetime] | None = None,
        subscriber_access: Callable[[Engine], SubscriberAccess] | None = None,
    ) -> None:
        """`subscriber_access` builds what the lifecycle verbs (unsubscribe, confirm, change
        status, update preferences) read and write through, from the engine (default: the
        subscriber store; tests pass a failing one)."""
        self.settings = settings
        self._access_factory = subscriber_access
        self._access: SubscriberAccess | None = None
        self._seed = seed
        self._clock = clock
        self._store: Store | None = None
        self._taxonomy: Taxonomy | None = None
        self._metrics: StoreMetrics | None = None
        self._registry: ChannelRegistry | None = None

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The configured store, migrated on first use (and seeded, unless built with seed=False)."""
        if self._store is None:
            from bot.sources.defaults import seed_sources
            from bot.store import Store

            store = Store.open(self.settings)
            if self._seed:
                try:
                    seed_sources(store, self.settings)
                except BaseException:
                    store.close()
                    raise
            self._store = store
        return self._store

    @property
    def subscribers(self) -> SubscriberStore:
        from bot.store.subscribers import SubscriberStore

        return SubscriberStore(self.store.engine)

    @property
    def lifecycle(self) -> SubscriberAccess:
        """What the lifecycle verbs go through (see `subscriber_access`)."""
        if self._access is None:
            factory = self._access_factory
            self._access = factory(self.store.engine) if factory is not None else self.subscribers
        return self._access

    @property
    def taxonomy(self) -> Taxonomy:
        if self._taxonomy is None:
            from bot.ranking.setup import taxonomy_for

            self._taxonomy = taxonomy_for(self.settings)
        return self._taxonomy

    def now(self) -> datetime:
        if self._clock is not None:
            return self._clock()
        from bot.store.types import utcnow

        return utcnow()

    def close(self) -> None:
        self._access = self._metrics = None  # both hold the store's engine
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> FlareStart:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- settings, schema, topics --------------------------------------------------------------

    def describe_config(self) -> list[tuple[str, Any, str]]:
        """Every setting: key, value (secrets masked), where it came from."""
        from bot.config import describe

        return describe(self.settings)

    def upgrade_database(self) -> tuple[str | None, str | None]:
        """Apply pending migrations: (revision before, revision after)."""
        from bot.store.engine import make_engine
        from bot.store.migrate import upgrade

        engine = make_engine(self.settings.effective_database_url)
        try:
            return upgrade(engine)
        finally:
            engine.dispose()

    def database_revision(self) -> tuple[str | None, str | None]:
        """(the database's schema revision, this code's)."""
        from bot.store.engine import make_engine
        from bot.store.migrate import current_revision, head_revision

        engine = make_engine(self.settings.effective_database_url)
        try:
            return current_revision(engine), head_revision()
        finally:
            engine.dispose()

    def topics(self) -> tuple[Topic, ...]:
        return tuple(self.taxonomy.topics)

    # -- sources -------------------------------------------------------------------------------

    def add_source(
        self,
        url: str,
        *,
        name: str | None = None,
        topics: Sequence[str] = (),
        weight: float = 1.0,
        category: str | None = None,
    ) -> AddedSource:
        """Add a feed; a page URL is searched for its <link rel="alternate"> feed."""
        import asyncio

        from bot.app.types import AddedSource
        from bot.sources.netguard import check_url
        from bot.store import NewSource

        url = check_url(url)
        self._refuse_known_url(url)
        feed_url, feed = asyncio.run(self._discover(url))
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
            )
        )
        return AddedSource(source, url, feed_url, len(feed.entries))

    async def _discover(self, url: str) -> tuple[str, ParsedFeed]:
        from bot.sources.discover import discover_feed
        from bot.sources.fetch import Fetcher
        from bot.sources.parse import parse_feed

        settings = self.settings
        async with Fetcher(settings.fetch, allow_private=settings.allow_private_urls) as fetcher:
            return await discover_feed(
                url,
                fetch=lambda u: fetcher.fetch(u, trusted=True),
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

    # -- fetching and articles -----------------------------------------------------------------

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

    # -- subscribers ---------------------------------------------------------------------------

    def validate_topics(self, slugs: Iterable[str]) -> None:
        """Raise ConfigError naming unknown topic slugs (and the closest known ones)."""
        self.taxonomy.resolve(slugs)

    def load_subscriber_files(self, folder: Path) -> list[SubscriberSpec]:
        """The subscriber files of `folder`, checked against the taxonomy and the sources (raises
        SubscriberFileError naming file and line)."""
        from bot.sources.defaults import source_names
        from bot.subscribers.files import load_subscriber_files

        known = source_names(self.store, self.settings)
        return load_subscriber_files(folder, validate_topics=self.validate_topics, known_sources=known)

    def sync_subscribers(self, folder: Path | None = None, *, dry_run: bool = False) -> SyncOutcome:
        """Make the stored file subscribers match the files of `folder` (default: subscribers_dir).
        Raises SubscriberFileError (every problem of every file) before anything changes."""
        from bot.app.types import SyncOutcome
        from bot.subscribers.sync import sync_subscribers

        where = folder if folder is not None else self.settings.subscribers_dir
        specs = self.load_subscriber_files(where)
        report = sync_subscribers(self.subscribers, specs, folder=where, dry_run=dry_run)
        added = set(report.added)
        rows = [s for s in self.subscribers.list() if s.email in added]
        return SyncOutcome(report, str(where), tuple(self.with_next_delivery(rows)))

    def sync_subscriber_files_at_start(self) -> tuple[str, ...]:
        """`run`'s start: sync the subscribers_dir when it exists. Broken files change nothing;
        their problems are returned for the door to show."""
        from bot.subscribers.files import SubscriberFileError
        from bot.subscribers.sync import sync_subscribers

        folder = self.settings.subscribers_dir
        if not folder.is_dir():
            return ()
        try:
            specs = self.load_subscriber_files(folder)
        except SubscriberFileError as exc:
            return tuple(str(problem) for problem in exc.problems)
        sync_subscribers(self.subscribers, specs, folder=folder)  # logs what it added, changed, removed
        return ()

    def subscribe(
        self,
        destination: Destination | str,
        *,
        name: str = "",
        topics: dict[str, float] | None = None,
        timezone: str = "UTC",
        delivery_time: str = "07:00",
        frequency: str = "daily",
        max_items: int = 10,
        origin: str = "cli",
        status: str = "active",
    ) -> SubscriberView:
        """Add a subscriber whose digests go to `destination` (an email address today). Doors
        an operator uses add them active; sign-ups from the web or chat add them pending."""
        from bot.subscribers.files import make_spec

        address = self._address(destination)
        spec = make_spec(
            email=address,
            name=name,
            timezone=timezone,
            delivery_time=delivery_time,
            frequency=frequency,
            topics=topics or {},
            max_items=max_items,
            origin=origin,
            validate_topics=self.validate_topics,
        )
        subscriber = self.subscribers.add(spec, status=status, now=self.now())
        [view] = self.with_next_delivery([subscriber])
        return view

    def _address(self, destination: Destination | str) -> str:
        if isinstance(destination, str):
            return destination
        if destination.kind != "email":
            raise ConfigError(f"{destination}: {destination.kind} destinations are not served yet")
        return destination.address

    def list_subscribers(self, status: str | None = None) -> list[SubscriberView]:
        from bot.store.subscribers import STATUSES

        if status is not None and status not in STATUSES:
            raise ConfigError(f"--status {status!r}: expected one of {', '.join(STATUSES)}")
        return self.with_next_delivery(self.subscribers.list(status))

    def subscriber(self, ref: str | int) -> SubscriberView:
        """One subscriber by email or id (NotFoundError otherwise)."""
        [view] = self.with_next_delivery([self.subscribers.get(ref)])
        return view

    def pause(self, ref: str | int) -> StatusChange:
        """Stop sending digests until `resume`."""
        from bot.app.types import StatusChange
        from bot.store.subscribers import SubscriberError

        found = self.subscribers.get(ref)
        if found.status == "paused":
            return StatusChange(found, "paused", changed=False)
        if found.status == "unsubscribed":
            raise SubscriberError(f"{found.email} has unsubscribed; there is nothing to pause")
        assert found.id is not None
        changed = self.subscribers.set_status(found.id, "paused", now=self.now())
        return StatusChange(changed, found.status, changed=True)

    def resume(self, ref: str | int) -> StatusChange:
        """Send digests again (also clears a bouncing state); an unsubscribe only they undo."""
        from bot.app.types import StatusChange
        from bot.store.subscribers import SubscriberError

        found = self.subscribers.get(ref)
        if found.status == "active":
            return StatusChange(found, "active", changed=False)
        if found.status == "unsubscribed":
            raise SubscriberError(f"{found.email} unsubscribed themselves; only they can subscribe again")
        assert found.id is not None
        changed = self.subscribers.set_status(found.id, "active", now=self.now())
        return StatusChange(changed, found.status, changed=True)

    def get_subscriber(self, ref: str | int) -> Subscriber:
        """One subscriber's row, through the lifecycle access (NotFoundError when there is none)."""
        return self.lifecycle.get(ref)

    def unsubscribe(self, subscriber_id: int) -> StatusChange:
        """The subscriber asked to stop: unsubscribed from now on (again: nothing changes)."""
        from bot.app.types import StatusChange

        found = self.lifecycle.get(subscriber_id)
        if found.status == "unsubscribed":
            return StatusChange(found, "unsubscribed", changed=False)
        changed = self.lifecycle.set_status(subscriber_id, "unsubscribed", now=self.now())
        return StatusChange(changed, found.status, changed=True)

    def confirm(self, subscriber_id: int) -> StatusChange:
        """Double opt-in: a pending subscriber becomes active; any other status is left as it is
        (an unsubscribe is never undone by an old confirmation link)."""
        from bot.app.types import StatusChange

        found = self.lifecycle.get(subscriber_id)
        if found.status != "pending":
            return StatusChange(found, found.status, changed=False)
        changed = self.lifecycle.set_status(subscriber_id, "active", now=self.now())
        return StatusChange(changed, "pending", changed=True)

    def change_status(self, subscriber_id: int, status: str, *, expect: str) -> Subscriber:
        """Pause or resume from the subscriber's own page: only from `expect`, checked inside the
        update (StatusChangedError when another change came first)."""
        return self.lifecycle.set_status(subscriber_id, status, now=self.now(), expect=(expect,))

    def update_preferences(self, subscriber_id: int, values: Mapping[str, Any]) -> Subscriber:
        """Store preferences validated by `parse_preferences` (the preferences form, chat)."""
        return self.lifecycle.update(subscriber_id, now=self.now(), **values)

    def remove_subscriber(self, ref: str | int) -> Subscriber:
        """Delete a subscriber and their delivery history."""
        return self.subscribers.remove(ref)

    def with_next_delivery(self, subscribers: Sequence[Subscriber]) -> list[SubscriberView]:
        from bot.app.types import SubscriberView

        upcoming = self.upcoming_deliveries(subscribers)
        return [SubscriberView(s, upcoming.get(s.id or 0)) for s in subscribers]

    def upcoming_deliveries(self, subscribers: Sequence[Subscriber]) -> dict[int, NextDelivery]:
        """Each active subscriber's next digest as `flarestart run` will send it: `next_delivery`
        (catch-up included), with the periods the ledger has settled already left out."""
        from collections.abc import Container

        from bot.channels.registry import email_channel_name
        from bot.delivery.ledger import DeliveryLedger
        from bot.delivery.service import send_job_key
        from bot.jobs.queue import JobQueue
        from bot.subscribers.schedule import next_delivery, parse_delivery_time

        now = self.now()
        catch_up = timedelta(hours=self.settings.delivery.catch_up_hours)
        active = [s for s in subscribers if s.status == "active" and s.id is not None]

        def next_for(s: Subscriber, settled: Container[str] = ()) -> NextDelivery:
            return next_delivery(
                now=now,
                timezone=s.timezone,
                delivery_time=parse_delivery_time(s.delivery_time),
                frequency=s.frequency,
                catch_up=catch_up,
                settled=settled,
            )

        first = {s.id: next_for(s) for s in active if s.id is not None}
        due = [(sid, found.period) for sid, found in first.items() if found.due_now]
        channel = email_channel_name(self.settings)
        closed = DeliveryLedger(self.store.engine).closed(due, channel)
        queue = JobQueue(self.store.engine)
        # Sent and failed rows are final. A skipped one (a quiet period) is tried again by `run`
        # only while no send job of the period has run yet (one made by `send --now`, for instance).
        done = {
            key
            for key, status in closed.items()
            if status != "skipped" or queue.status_of(send_job_key(*key, channel)) not in (None, "queued")
        }
        return {
            s.id: next_for(s, {first[s.id].period}) if (s.id, first[s.id].period) in done else first[s.id]
            for s in active
            if s.id is not None
        }

    # -- previews ------------------------------------------------------------------------------

    def preview_subscriber(self, ref: str | int, *, max_items: int | None = None) -> Preview:
        """The digest `ref` (email or id) would get now: their preferences, minus what they were sent."""
        from dataclasses import replace

        from bot.app.types import Preview
        from bot.delivery.ledger import DeliveryLedger
        from bot.digest.compose import Composer

        now = self.now()
        row = self.subscribers.get(ref)
        composer = Composer(self.store, self.settings, self.taxonomy, now=now)
        prefs = composer.preferences_of(row)
        if max_items:
            prefs = replace(prefs, max_items=max_items)
        delivered = DeliveryLedger(self.store.engine).sent_article_ids(row.id or 0)
        plan = composer.plan(prefs, delivered=delivered)
        account = composer.account(prefs, plan, delivered=delivered)
        upcoming = self.upcoming_deliveries([row]).get(row.id or 0)
        label = f"{row.name or row.email}"
        return Preview(label, row, False, plan, account, self.taxonomy, upcoming, now)

    def preview_preferences(
        self, topics: Sequence[str], *, mute: Sequence[str] = (), max_items: int | None = None
    ) -> Preview:
        """The digest a reader following `topics` would get now; `mute` takes known topics (muted
        as topics) and any other word (muted as a keyword)."""
        from bot.app.types import Preview
        from bot.digest.compose import Composer, window_for
        from bot.store.models import Subscriber

        if not topics:
            raise ConfigError("preview needs a SUBSCRIBER or --topics (e.g. --topics python,ai)")
        now = self.now()
        taxonomy = self.taxonomy
        composer = Composer(self.store, self.settings, taxonomy, now=now)
        muted_topics = [w for w in mute if w.casefold() in taxonomy]
        prefs = composer.preferences(
            topics={slug: 1.0 for slug in topics},
            muted_topics=muted_topics,
            muted_keywords=[w for w in mute if w not in muted_topics],
            max_items=max_items,
            window=window_for("daily", self.settings),
        )
        plan = composer.plan(prefs, delivered=set())
        account = composer.account(prefs, plan, delivered=set())
        reader = Subscriber(id=STAND_IN_ID, email=PREVIEW_ADDRESS)  # who its HTML is addressed to
        return Preview(", ".join(topics), reader, True, plan, account, taxonomy, None, now)

    def render_preview(self, preview: Preview) -> RenderedPreview:
        """The preview's email exactly as DigestService sends it. A stand-in's links are signed
        with a throwaway key, so its unsubscribe link never works for whoever is subscriber #1."""
        import secrets
        from zoneinfo import ZoneInfo

        from bot.app.types import RenderedPreview
        from bot.delivery.service import DigestService
        from bot.subscribers.schedule import current_period

        settings = self.settings
        if preview.stand_in:
            settings = settings.model_copy(update={"secret_key": secrets.token_hex(32)})
        # The registry's channel is never made: the service only renders here.
        service = DigestService(
            self.store, settings, self._channels(settings), clock=lambda: preview.now, taxonomy=self.taxonomy
        )
        reader = preview.reader
        due = None if preview.stand_in else service.due(reader, preview.now)
        today = preview.now.astimezone(ZoneInfo(reader.timezone)).date()
        period = due.period if due else current_period(reader.frequency, today) or today.isoformat()
        rendered = service.outgoing(reader, period, preview.plan).rendered
        return RenderedPreview(rendered.subject, rendered.html, len(preview.plan.items))

    @property
    def channels(self) -> ChannelRegistry:
        """The channel that serves each destination kind (made on first send, closed with `aclose`)."""
        if self._registry is None:
            self._registry = self._channels()
        return self._registry

    def _channels(self, settings: Settings | None = None) -> ChannelRegistry:
        from bot.channels.registry import registry_for

        return registry_for(settings or self.settings)

    # -- sending and the delivery ledger -------------------------------------------------------

    def send(self, ref: str | int, *, force: bool = False, dry_run: bool = False) -> SendOutcome:
        """Send one active subscriber's digest for the period due now (with `force`, the current
        one), at most once; `dry_run` composes and renders only. Raises NothingToSendError when
        there is none to send, Delivery*Error as the channel does."""
        import asyncio

        from bot.app.delivery import send_one
        from bot.store.subscribers import SubscriberError

        row = self.subscribers.get(ref)
        who = row.email or f"#{row.id}"
        if row.status != "active":
            hint = (
                "; `flarestart subscribers resume` sends to them again"
                if row.status != "unsubscribed"
                else ""
            )
            raise SubscriberError(f"{who} is {row.status}, so no digest goes to them{hint}")
        if not row.email:
            raise SubscriberError(f"subscriber #{row.id} has no email address to send to")
        return asyncio.run(send_one(self.store, self.settings, row, force=force, dry_run=dry_run))

    def placeholder_warnings(self) -> list[str]:
        """Settings still at the shipped placeholders that a real mail must not carry (SMTP only)."""
        from bot.delivery.service import placeholders

        return placeholders(self.settings) if self.settings.email.smtp_url else []

    def send_test(self, address: str, *, dry_run: bool = False) -> SampleSend:
        """Today's sample digest to `address` through the configured channel; records nothing.
        Its links are signed with a throwaway key: they must not work for whoever is subscriber #1."""
        import asyncio
        import secrets

        from bot.app.delivery import run_test

        address = self.test_address(address)
        throwaway = self.settings.model_copy(update={"secret_key": secrets.token_hex(32)})
        return asyncio.run(run_test(self.store, throwaway, address, dry_run=dry_run))

    def test_address(self, address: str) -> str:
        """`address` normalised for `send_test`, or a ConfigError saying what is wrong with it."""
        from bot.subscribers.files import normalize_email

        try:
            return normalize_email(address)
        except ValueError as exc:
            raise ConfigError(f"--test: {exc}") from None

    def list_deliveries(
        self, *, status: str | None = None, subscriber: str | None = None, limit: int = 50
    ) -> DeliveryListing:
        """Ledger rows, newest first, with each subscriber's address and the counts of all rows."""
        from bot.app.types import DeliveryListing
        from bot.delivery.ledger import STATUSES, DeliveryLedger

        if status is not None and status not in STATUSES:
            raise ConfigError(f"--status {status!r}: expected one of {', '.join(STATUSES)}")
        subscribers = self.subscribers
        wanted = subscribers.get(subscriber).id if subscriber is not None else None
        ledger = DeliveryLedger(self.store.engine)
        rows = ledger.list(status=status, subscriber_id=wanted, limit=limit)
        emails = {s.id or 0: s.email or f"#{s.id}" for s in subscribers.list()}
        return DeliveryListing(tuple(rows), emails, ledger.counts(), STATUSES)

    def retry_deliveries(
        self,
        *,
        since: timedelta,
        subscriber: str | None = None,
        period: str | None = None,
        channel: str | None = None,
        dry_run: bool = False,
    ) -> list[RetryOutcome]:
        """Put digests that failed for good within `since` back in the queue (`flarestart run`
        sends them); subscribers who are not active are skipped."""
        import asyncio

        from bot.delivery.retry import retry_failed
        from bot.delivery.service import DigestService

        cutoff = self.now() - since
        wanted = self.subscribers.get(subscriber).id if subscriber is not None else None
        channels = self._channels()
        try:
            service = DigestService(self.store, self.settings, channels)
            return retry_failed(
                service, since=cutoff, subscriber_id=wanted, period=period, channel=channel, dry_run=dry_run
            )
        finally:
            asyncio.run(channels.aclose())

    # -- what the web needs ----------------------------------------------------------------------

    def open(self) -> FlareStart:
        """Open (and migrate) the store now: a server opens it at start, not on its first request."""
        _ = self.store
        return self

    def preferences_editor(self) -> PreferencesEditor:
        """The preferences page's form: what it shows and what a POST may change."""
        from bot.app.preferences import PreferencesEditor
        from bot.ranking.topics import load_taxonomy

        return PreferencesEditor(self.taxonomy, shipped=load_taxonomy().slugs)

    def metrics(self) -> list[Gauge]:
        """The operator's figures (aggregates only), a handful of count queries."""
        from bot.app.metrics import StoreMetrics

        if self._metrics is None:
            self._metrics = StoreMetrics(self.store)
        return self._metrics.collect()

    def ping(self) -> None:
        """One round trip to the database (health checks); raises when it is unreachable."""
        from sqlalchemy import text

        with self.store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def current_period(self, subscriber: Subscriber, now: datetime | None = None) -> str:
        """The period `now` falls in for `subscriber` (a delivery day or not): what `send --now` sends."""
        from zoneinfo import ZoneInfo

        from bot.subscribers.schedule import current_period

        today = (now or self.now()).astimezone(ZoneInfo(subscriber.timezone)).date()
        return current_period(subscriber.frequency, today) or today.isoformat()

    async def deliver(
        self, subscriber_id: int, period: str, *, through: Channel, settings: Settings | None = None
    ) -> SendResult:
        """Send one subscriber's digest for `period` through `through` (the demo's loopback SMTP),
        at most once, with `settings` in place of the layer's (its SMTP server)."""
        from bot.delivery.service import DigestService

        service = DigestService(self.store, settings or self.settings, through)
        return await service.send(subscriber_id, period)

    # -- the service ---------------------------------------------------------------------------

    def run(self) -> None:
        """The service until Ctrl-C or SIGTERM: fetch on schedule, send digests when due."""
        import asyncio

        from bot.daemon import run_daemon

        asyncio.run(run_daemon(self))

    def active_subscriber_count(self) -> int:
        return len(self.subscribers.active())

    def source_count(self) -> int:
        return len(self.store.list_sources())


@contextmanager
def open_app(settings: Settings, *, seed: bool = True) -> Iterator[FlareStart]:
    """A `FlareStart` for one command, closed after it."""
    app = FlareStart(settings, seed=seed)
    try:
        yield app
    finally:
        app.close()


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name} ({n})", n + 1
    return candidate
