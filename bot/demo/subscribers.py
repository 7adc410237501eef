"""The demo's readers: different topics, time zones and schedules, so their digests differ."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.store.models import Subscriber
from bot.store.subscribers import SubscriberStore
from bot.subscribers.files import make_spec


@dataclass(frozen=True, slots=True)
class SampleSubscriber:
    email: str
    name: str
    timezone: str
    delivery_time: str
    frequency: str
    topics: tuple[str, ...]


SAMPLE_SUBSCRIBERS: tuple[SampleSubscriber, ...] = (
    SampleSubscriber("ada@example.com", "Ada", "Europe/Berlin", "07:00", "daily", ("python", "llms", "ai")),
    SampleSubscriber(
        "grace@example.com", "Grace", "America/New_York", "08:30", "daily", ("security", "devops", "cloud")
    ),
    SampleSubscriber(
        "kenji@example.com",
        "Kenji",
        "Asia/Tokyo",
        "09:00",
        "weekly:mon",
        ("rust", "web-development", "performance"),
    ),
    SampleSubscriber(
        "amara@example.org",
        "Amara",
        "Africa/Lagos",
        "06:30",
        "daily",
        ("machine-learning", "data-engineering", "databases"),
    ),
    SampleSubscriber(
        "mateo@example.net",
        "Mateo",
        "America/Sao_Paulo",
        "07:45",
        "daily",
        ("kubernetes", "frontend", "typescript"),
    ),
)


def add_sample_subscribers(
    subscribers: SubscriberStore,
    count: int,
    *,
    validate_topics: Callable[[Iterable[str]], None] | None = None,
) -> list[Subscriber]:
    """Add the first `count` sample readers, active, as if someone had run `subscribers add`."""
    added = []
    for sample in SAMPLE_SUBSCRIBERS[:count]:
        spec = make_spec(
            email=sample.email,
            name=sample.name,
            timezone=sample.timezone,
            delivery_time=sample.delivery_time,
            frequency=sample.frequency,
            topics=sample.topics,
            max_items=6,
            origin="demo",
            validate_topics=validate_topics,
        )
        added.append(subscribers.add(spec, status="active"))
    return added
