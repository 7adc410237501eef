"""The figures of GET /metrics, collected from the store (the web renders them; see bot.web.metrics).

Collecting costs a handful of aggregate queries (one per store method `StoreMetrics.collect`
calls), one row per source and no row per article. Deliveries by (status, channel) are counted
from their covering index (migration 0004: the ledger is never pruned); jobs by (task, status)
read their table, which is pruned. No address or subscriber name is ever a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot import __version__
from bot.delivery.ledger import DeliveryLedger
from bot.jobs.queue import JobQueue
from bot.store import Store
from bot.store.subscribers import SubscriberStore

PREFIX = "flarestart_"

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Sample:
    labels: Labels
    value: float


@dataclass(frozen=True, slots=True)
class Gauge:
    """One metric family: its name, its HELP text and its samples (all gauges: figures of now)."""

    name: str
    description: str
    samples: tuple[Sample, ...]


def gauge(name: str, description: str, samples: Iterable[tuple[Mapping[str, str], float]]) -> Gauge:
    """A gauge from (labels, value) pairs; `name` without the flarestart_ prefix."""
    return Gauge(
        PREFIX + name, description, tuple(Sample(tuple(labels.items()), value) for labels, value in samples)
    )


class StoreMetrics:
    """Reads the figures from the store. Synchronous: call it from a worker thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.subscribers = SubscriberStore(store.engine)
        self.ledger = DeliveryLedger(store.engine)
        self.queue = JobQueue(store.engine)

    def collect(self) -> list[Gauge]:
        gauges = [
            gauge(
                "build_info",
                "FlareStart's version; always 1.",
                [({"version": __version__}, 1)],
            ),
            gauge(
                "subscribers",
                "Subscribers by status.",
                [({"status": status}, count) for status, count in self.subscribers.counts().items()],
            ),
            gauge(
                "deliveries",
                "Digest deliveries in the ledger (all time) by channel and status.",
                [
                    ({"channel": channel, "status": status}, count)
                    for channel, counts in sorted(self.ledger.counts_by_channel().items())
                    for status, count in counts.items()
                ],
            ),
            gauge(
                "jobs",
                "Stored jobs by task and status (finished jobs are pruned after a while).",
                [
                    ({"task": task, "status": status}, count)
                    for task, counts in sorted(self.queue.counts_by_task().items())
                    for status, count in counts.items()
                ],
            ),
        ]
        gauges += self._sources()
        newest = self.store.newest_published_at()
        gauges += [
            gauge("articles", "Articles in the store.", [({}, self.store.count_articles())]),
            gauge(
                "articles_newest_timestamp_seconds",
                "When the newest stored article was published (Unix time).",
                [({}, newest.timestamp())] if newest is not None else [],
            ),
        ]
        return gauges

    def _sources(self) -> list[Gauge]:
        sources = self.store.list_sources()  # one row per source: an operator's list, not big
        enabled = [s for s in sources if s.enabled]
        return [
            gauge(
                "sources",
                "Sources by state.",
                [({"state": "enabled"}, len(enabled)), ({"state": "disabled"}, len(sources) - len(enabled))],
            ),
            gauge(
                "source_failing",
                "1 when an enabled source's last fetch failed, else 0.",
                [({"source": s.name}, 1 if s.error_count else 0) for s in enabled],
            ),
            gauge(
                "source_consecutive_failures",
                "Fetches of an enabled source that failed in a row, up to the last one (0 after a success).",
                [({"source": s.name}, s.error_count) for s in enabled],
            ),
            gauge(
                "source_last_success_timestamp_seconds",
                "When an enabled source was last fetched successfully (Unix time); absent if never.",
                [({"source": s.name}, s.last_success_at.timestamp()) for s in enabled if s.last_success_at],
            ),
        ]
