"""FlareStart's own starting sources, seeded on first run unless the configuration lists others."""

from bot.config import Settings
from bot.store import NewSource, Store
from bot.store.listing import SEEDED_FLAG as SEEDED_FLAG
from bot.store.models import Source

DEFAULT_SOURCES: tuple[NewSource, ...] = (
    NewSource(
        "TechCrunch",
        "https://techcrunch.com/feed/",
        "https://techcrunch.com/",
        topics=("startups", "business"),
        category="News",
    ),
    NewSource(
        "The Verge",
        "https://www.theverge.com/rss/index.xml",
        "https://www.theverge.com/",
        topics=("gadgets", "big-tech"),
        category="News",
    ),
    NewSource(
        "DEV Community",
        "https://dev.to/feed",
        "https://dev.to/",
        topics=("programming", "tutorials"),
        category="Tutorials",
    ),
    NewSource(
        "HackerNoon",
        "https://hackernoon.com/feed",
        "https://hackernoon.com/",
        topics=("programming",),
        category="Tutorials",
    ),
    NewSource(
        "Medium: Programming",
        "https://medium.com/feed/tag/programming",
        "https://medium.com/tag/programming",
        topics=("programming",),
        category="Tutorials",
    ),
)


def seed_sources(store: Store, settings: Settings) -> list[Source]:
    """On the first start only: add the configured sources, or FlareStart's defaults.

    Seeding once (a flag in the store) means a source the user removes stays removed.
    """
    if store.get_meta(SEEDED_FLAG):
        return []
    if settings.sources is not None:
        wanted = [
            NewSource(s.name, s.url, topics=tuple(s.topics), weight=s.weight, category=s.category)
            for s in settings.sources
        ]
    else:
        wanted = list(DEFAULT_SOURCES)
    known = {source.url for source in store.list_sources()} | {s.name for s in store.list_sources()}
    added = store.add_sources([s for s in wanted if s.url not in known and s.name not in known])
    store.set_meta(SEEDED_FLAG, "1")
    return added


def source_names(store: Store, settings: Settings) -> set[str]:
    """The names subscribers may mute or weigh: the stored sources, and before the first run
    seeded them, the sources it will add (so `subscribers sync` can run first)."""
    names = {source.name for source in store.list_sources()}
    if not store.get_meta(SEEDED_FLAG):
        seeds = settings.sources if settings.sources is not None else DEFAULT_SOURCES
        names |= {seed.name for seed in seeds}
    return names
