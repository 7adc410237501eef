"""When a subscriber's digest is due: pure functions of the clock, a time zone and a frequency.

A digest is scheduled at the subscriber's local delivery time on the days their frequency allows.
Local times are resolved with zoneinfo the PEP 495 way (fold=0): a time that does not exist on a
spring-forward day (02:30 in New York on 8 March 2026) moves forward by the gap (03:30 EDT), and a
time that happens twice on a fall-back day takes its first occurrence.

Only the most recent scheduled moment can be due, and only while it is at most `catch_up` old:
after downtime the latest missed digest goes out late, older periods never do.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FREQUENCY_HELP = "daily, weekdays or weekly:mon … weekly:sun"
DEFAULT_DELIVERY_TIME = time(7, 0)
# Far enough back or ahead to meet any frequency's previous or next delivery day.
_SEARCH_DAYS = 8
_HH_MM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class DuePeriod:
    """A digest to send now: its period key, when it was due and what it covers (all UTC).

    The window runs from the previous scheduled delivery to this one, so consecutive digests
    neither overlap nor leave gaps, whatever DST does in between (a daily window is 23 or 25 hours
    on change days; a weekdays digest on Monday covers since Friday's delivery).
    """

    period: str  # "2026-11-27" (daily, weekdays) or "2026-W48" (weekly)
    scheduled_at: datetime
    window_start: datetime
    window_end: datetime


def normalize_frequency(text: str) -> str:
    """'Daily' → 'daily', 'weekly:Monday' → 'weekly:mon'; ValueError for anything else."""
    value = text.strip().lower()
    if value in ("daily", "weekdays"):
        return value
    kind, sep, day = value.partition(":")
    day = day.strip()
    if kind.strip() == "weekly" and sep:
        if day in WEEKDAYS:
            return f"weekly:{day}"
        if day in _FULL_DAYS:
            return f"weekly:{WEEKDAYS[_FULL_DAYS.index(day)]}"
    hint = " (say on which day, e.g. weekly:mon)" if value == "weekly" else ""
    raise ValueError(f"frequency must be {FREQUENCY_HELP}, got {text!r}{hint}")


def parse_delivery_time(value: str | time) -> time:
    """'07:00' or '7:00' (or a TOML local time without seconds) → time; ValueError otherwise."""
    if isinstance(value, time):
        if value.tzinfo is not None or value.second or value.microsecond:
            raise ValueError(f"delivery time must be a local HH:MM, got {value.isoformat()}")
        return value
    match = _HH_MM.match(value)
    if match:
        hour, minute = int(match[1]), int(match[2])
        if hour < 24 and minute < 60:
            return time(hour, minute)
    raise ValueError(f"delivery time must be HH:MM (00:00 … 23:59), got {value!r}")


def format_delivery_time(moment: time) -> str:
    return f"{moment.hour:02d}:{moment.minute:02d}"


def period_for(frequency: str, local_date: date) -> str | None:
    """The period a delivery on `local_date` belongs to, or None when that day has none."""
    if frequency == "daily":
        return local_date.isoformat()
    if frequency == "weekdays":
        return local_date.isoformat() if local_date.weekday() < 5 else None
    kind, _, day = frequency.partition(":")
    if kind != "weekly" or day not in WEEKDAYS:
        raise ValueError(f"frequency must be {FREQUENCY_HELP}, got {frequency!r}")
    if local_date.weekday() != WEEKDAYS.index(day):
        return None
    year, week, _ = local_date.isocalendar()
    return f"{year}-W{week:02d}"


def scheduled_at(local_date: date, *, timezone: str, delivery_time: time) -> datetime:
    """The UTC moment of `delivery_time` on `local_date` in `timezone` (gaps shift forward)."""
    local = datetime.combine(local_date, delivery_time, tzinfo=ZoneInfo(timezone))
    return local.astimezone(UTC)


def due_period(
    *,
    now: datetime,
    timezone: str,
    delivery_time: time,
    frequency: str,
    catch_up: timedelta,
) -> DuePeriod | None:
    """The digest due at `now`: the latest scheduled delivery, if it is at most `catch_up` old.

    Usually that is today's; with a late delivery time it can be yesterday's just after midnight.
    Never an older one: a digest missed beyond the catch-up window is skipped, not sent late.
    """
    _require_aware(now)
    latest = _scheduled_moments(now, timezone, delivery_time, frequency, step=-1)
    if latest is None:
        return None
    period, moment = latest
    if now - moment > catch_up:
        return None
    previous = _scheduled_moments(moment - timedelta(seconds=1), timezone, delivery_time, frequency, step=-1)
    # Only a frequency with no day at all could lack a previous delivery; fall back to its length.
    start = previous[1] if previous else moment - _nominal_length(frequency)
    return DuePeriod(period=period, scheduled_at=moment, window_start=start, window_end=moment)


@dataclass(frozen=True, slots=True)
class NextDelivery:
    """The digest a subscriber gets next, as `flarestart run` will send it."""

    period: str
    scheduled_at: datetime  # UTC; in the past when `due_now`
    due_now: bool  # its moment passed within the catch-up window: the next planning (≤ 1 min) sends it


def next_delivery(
    *,
    now: datetime,
    timezone: str,
    delivery_time: time,
    frequency: str,
    catch_up: timedelta,
    settled: Container[str] = (),
) -> NextDelivery:
    """The one answer to "when is the next digest?" that every message gives (add, show, list,
    sync, send, preview): the period due now (`due_period`, catch-up included) unless it is
    `settled` (sent, skipped or failed already), else the first scheduled delivery after `now`."""
    due = due_period(
        now=now, timezone=timezone, delivery_time=delivery_time, frequency=frequency, catch_up=catch_up
    )
    if due is not None and due.period not in settled:
        return NextDelivery(due.period, due.scheduled_at, True)
    after = _scheduled_moments(now, timezone, delivery_time, frequency, step=1)
    if after is None:  # pragma: no cover - every valid frequency has a day within a week
        raise ValueError(f"no delivery day for frequency {frequency!r}")
    return NextDelivery(after[0], after[1], False)


def next_delivery_at(*, now: datetime, timezone: str, delivery_time: time, frequency: str) -> datetime:
    """The first scheduled delivery strictly after `now`, in UTC."""
    _require_aware(now)
    found = _scheduled_moments(now, timezone, delivery_time, frequency, step=1)
    if found is None:  # pragma: no cover - every valid frequency has a day within a week
        raise ValueError(f"no delivery day for frequency {frequency!r}")
    return found[1]


def _scheduled_moments(
    now: datetime, timezone: str, delivery_time: time, frequency: str, *, step: int
) -> tuple[str, datetime] | None:
    """step=-1: the latest scheduled (period, moment) ≤ now; step=1: the first one > now."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    for offset in range(_SEARCH_DAYS):
        day = today + timedelta(days=offset * step)
        period = period_for(frequency, day)
        if period is None:
            continue
        moment = scheduled_at(day, timezone=timezone, delivery_time=delivery_time)
        if (step < 0 and moment <= now) or (step > 0 and moment > now):
            return period, moment
    return None


def _nominal_length(frequency: str) -> timedelta:
    return timedelta(days=7) if frequency.startswith("weekly") else timedelta(hours=24)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got naive {now.isoformat()}")


def current_period(frequency: str, local_date: date) -> str | None:
    """The period `local_date` falls in, whether or not it is a delivery day: the date for daily
    and weekdays (None on a weekend for weekdays), the ISO week for weekly."""
    if frequency.startswith("weekly"):
        year, week, _ = local_date.isocalendar()
        return f"{year}-W{week:02d}"
    return period_for(frequency, local_date)
