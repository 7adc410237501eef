"""The plumbing every verb shares: the Settings, the store opened (and seeded) on first use, the
subscriber store, the taxonomy, the clock and the channel registry."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bot.app.metrics import StoreMetrics
    from bot.app.types import NextDelivery, Subscriber, SubscriberView
    from bot.channels.registry import ChannelRegistry
    from bot.config import Settings
    from bot.ranking.topics import Taxonomy
    from bot.store import Store
    from bot.store.subscribers import SubscriberStore


class SubscriberAccess(Protocol):
    """What the lifecycle verbs need of the subscriber store (SubscriberStore; tests may pass others)."""

    def get(self, ref: str | int, /) -> Subscriber: ...

    def set_status(
        self, subscriber_id: int, status: str, /, *, now: datetime, expect: Collection[str] | None = None
    ) -> Subscriber: ...

    def update(self, subscriber_id: int, *, now: datetime | None = None, **values: Any) -> Subscriber: ...


class AppBase:
    """The state a FlareStart holds, and what verbs of several groups share (a subscriber's next
    digest); the verbs are in the mixins FlareStart is made of (bot/app/core.py)."""

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def channels(self) -> ChannelRegistry:
        """The channel that serves each destination kind (made on first send, closed with `aclose`)."""
        if self._registry is None:
            self._registry = self._channels()
        return self._registry

    def _channels(self, settings: Settings | None = None) -> ChannelRegistry:
        from bot.channels.registry import registry_for
        from bot.store.parts import DatabasePartLog

        return registry_for(settings or self.settings, DatabasePartLog(self.store.engine))

    def open(self) -> Self:
        """Open (and migrate) the store now: a server opens it at start, not on its first request."""
        _ = self.store
        return self

    def with_next_delivery(self, subscribers: Sequence[Subscriber]) -> list[SubscriberView]:
        from bot.app.types import SubscriberView

        upcoming = self.upcoming_deliveries(subscribers)
        return [SubscriberView(s, upcoming.get(s.id or 0)) for s in subscribers]

    def upcoming_deliveries(self, subscribers: Sequence[Subscriber]) -> dict[int, NextDelivery]:
        """Each active subscriber's next digest as `flarestart run` will send it: `next_delivery`
        (catch-up included), with the periods the ledger has settled already left out."""
        from collections.abc import Container

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
        # Each destination kind's rows are under the name of the channel serving it.
        due_by_channel: dict[str, list[tuple[int, str]]] = {}
        for s in active:
            if s.id is not None and first[s.id].due_now:
                channel = self.channels.name_for_subscriber(s)
                due_by_channel.setdefault(channel, []).append((s.id, first[s.id].period))
        # Sent and failed rows are final. A skipped one (a quiet period) is tried again by `run`
        # only while no send job of the period has run yet (one made by `send --now`, for instance).
        # The ledger and the queue are made only when asked (a chat command's reply asks for one
        # subscriber's next digest, mostly not due: building the queue's statements was ~4 ms).
        done: set[tuple[int, str]] = set()
        if due_by_channel:
            ledger = DeliveryLedger(self.store.engine)
            queue: JobQueue | None = None
            for channel, due in due_by_channel.items():
                for key, status in ledger.closed(due, channel).items():
                    if status == "skipped":
                        queue = queue or JobQueue(self.store.engine)
                        if queue.status_of(send_job_key(*key, channel)) in (None, "queued"):
                            continue
                    done.add(key)
        return {
            s.id: next_for(s, {first[s.id].period}) if (s.id, first[s.id].period) in done else first[s.id]
            for s in active
            if s.id is not None
        }
