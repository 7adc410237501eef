"""Times in words, the same in every door's messages: "3h ago", "in 25m", the next digest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from bot.subscribers.schedule import NextDelivery


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


def describe_next(found: NextDelivery | None, timezone: str, now: datetime) -> str:
    """The next digest in words, the same in every message."""
    if found is None:
        return "-"
    when = local_time(found.scheduled_at, timezone)
    if found.due_now:
        return f"{when} (due now: `flarestart run` sends it within a minute)"
    return f"{when} ({ago(found.scheduled_at, now)})"


def local_time(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo(timezone)).strftime("%a %Y-%m-%d %H:%M %Z")
