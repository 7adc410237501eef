"""What every command shares: the one Settings object, the store, output for people and scripts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.style import Style
from rich.text import Text

from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.store import Store

# Every command pays for what this package imports before it runs, so the settings (pydantic),
# the store (SQLAlchemy) and the pipeline are imported where a command needs them: `--version`
# and `--help` import typer and rich only (tests/cli/test_startup.py guards it).

console = Console()
err_console = Console(stderr=True)


def feed_text(text: str, *, link: str | None = None, style: str = "") -> Text:
    """Text a feed wrote (titles, names, tags), for rich: never read as markup, so "[link=…]" in
    a title stays text, and a rich Text is never run through the highlighter's regexes."""
    return Text(text, style=Style.parse(style) + Style(link=link) if link else style)


@dataclass
class AppState:
    settings: Settings | None = None

    def get_settings(self) -> Settings:
        if self.settings is None:
            from bot.config import load_settings

            self.use(load_settings())
        assert self.settings is not None
        return self.settings

    def use(self, settings: Settings) -> None:
        """Make `settings` the one every command uses, and log the way they say."""
        from bot.config import warn_unknown_environment
        from bot.logs import setup_logging

        self.settings = settings
        setup_logging(settings.log_level, settings.log_format)
        warn_unknown_environment()


state = AppState()


@contextmanager
def open_store(*, seed: bool = True) -> Iterator[Store]:
    """The configured store, migrated, with the first run's sources seeded."""
    from bot.sources.defaults import seed_sources
    from bot.store import Store

    store = Store.open(state.get_settings())
    try:
        if seed:
            seed_sources(store, state.get_settings())
        yield store
    finally:
        store.close()


def print_json(data: Any) -> None:
    """JSON for scripts: plain stdout, no colours, dates as ISO 8601."""
    import json

    typer.echo(json.dumps(data, indent=2, default=_json_default, ensure_ascii=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str, *, option: str) -> timedelta:
    """'90m', '24h', '30d', '2w' → timedelta; anything else is a one-line error naming the option."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{option} {text!r}: expected a number and a unit, like 30m, 24h, 30d or 2w")
    return timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """'3h ago' / 'in 25m' / '-' for tables people read."""
    if moment is None:
        return "-"
    delta = (now or datetime.now(UTC)) - moment
    seconds = delta.total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    else:
        text = f"{int(seconds)}s"
    return f"in {text}" if future else f"{text} ago"
