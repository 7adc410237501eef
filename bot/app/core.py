"""`FlareStart`: one object, built once from the Settings, whose methods are the users' verbs.

The store opens on first use (so `topics` and `config` never touch the database) and is seeded with
the first run's sources unless the door says not to. Every verb imports the part of the core it
needs inside its body: importing this module costs the standard library only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from bot.app.base import SubscriberAccess
from bot.app.digests import DigestVerbs
from bot.app.sources import SourceVerbs
from bot.app.subscribers import SubscriberVerbs

if TYPE_CHECKING:
    from bot.app.metrics import Gauge
    from bot.app.preferences import PreferencesEditor
    from bot.config import Settings
    from bot.ranking.types import Topic


class FlareStart(SourceVerbs, SubscriberVerbs, DigestVerbs):
    """What users can do, for every door. Use it as a context manager, or call `close()`.

    The verbs are grouped by what they concern: sources and articles (bot/app/sources.py),
    subscribers (subscribers.py), digests and deliveries (digests.py); the shared state is in
    base.py. What is left here concerns the instance as a whole.
    """

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

    def run(self) -> None:
        """The service until Ctrl-C or SIGTERM: fetch on schedule, send digests when due."""
        import asyncio

        from bot.daemon import run_daemon

        asyncio.run(run_daemon(self))

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


__all__ = ["FlareStart", "SubscriberAccess", "open_app"]
