"""What every command shares: the one Settings object, the store, output for people and scripts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.style import Style
from rich.text import Text

from bot.app.words import ago as ago  # the tables' times, in the words every door uses
from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.app import FlareStart
    from bot.config import Settings

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
    # True when this process is the command and ends with it (the script, `python -m bot`), not
    # a test or a program that calls `main`: what it builds lives until the process exits.
    one_shot: bool = False

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
def open_app(*, seed: bool = True) -> Iterator[FlareStart]:
    """The application layer for one command: the store opens (migrated, and with the first run's
    sources seeded unless `seed` is False) when a verb first needs it, and closes after."""
    from bot.app import open_app as app_for

    with app_for(state.get_settings(), seed=seed) as app:
        yield app


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
