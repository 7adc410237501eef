"""When a digest is due, as tables: a UTC clock, a time zone and a frequency → the period due.

DST dates of 2026: New York springs forward on 8 March and falls back on 1 November; Berlin on
29 March and 25 October; Auckland falls back on 5 April and springs forward on 27 September.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pytest

from bot.subscribers.schedule import (
    DuePeriod,
    due_period,
    next_delivery,
    next_delivery_at,
    normalize_frequency,
    parse_delivery_time,
    period_for,
    scheduled_at,
)

SIX_HOURS = timedelta(hours=6)
SEVEN = time(7, 0)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@dataclass(frozen=True)
class Case:
    name: str
    now: datetime
    timezone: str
    period: str | None  # expected period due, None = nothing due
    scheduled: datetime | None = None  # expected UTC moment of that delivery
    delivery_time: time = SEVEN
    frequency: str = "daily"
    catch_up: timedelta = SIX_HOURS


CASES = [
    Case("utc, on the minute", utc(2026, 11, 27, 7, 0), "UTC", "2026-11-27", utc(2026, 11, 27, 7, 0)),
    Case("utc, a minute early", utc(2026, 11, 27, 6, 59), "UTC", None),
    Case(
        "berlin in winter is utc+1",
        utc(2026, 11, 27, 6, 0),
        "Europe/Berlin",
        "2026-11-27",
        utc(2026, 11, 27, 6),
    ),
    Case("berlin, 5:59 utc is too early", utc(2026, 11, 27, 5, 59), "Europe/Berlin", None),
    Case(
        "new york in winter is utc-5",
        utc(2026, 11, 27, 12),
        "America/New_York",
        "2026-11-27",
        utc(2026, 11, 27, 12),
    ),
    Case(
        "kolkata is utc+5:30",
        utc(2026, 11, 27, 1, 30),
        "Asia/Kolkata",
        "2026-11-27",
        utc(2026, 11, 27, 1, 30),
    ),
    Case("kolkata, 1:29 utc is too early", utc(2026, 11, 27, 1, 29), "Asia/Kolkata", None),
    Case(
        "auckland's 27th starts on the 26th in utc",
        utc(2026, 11, 26, 18),
        "Pacific/Auckland",
        "2026-11-27",
        utc(2026, 11, 26, 18),
    ),
    # DST: 07:00 local is a different UTC hour on each side of the change.
    Case(
        "new york, day before spring forward",
        utc(2026, 3, 7, 12),
        "America/New_York",
        "2026-03-07",
        utc(2026, 3, 7, 12),
    ),
    Case(
        "new york, spring forward day",
        utc(2026, 3, 8, 11),
        "America/New_York",
        "2026-03-08",
        utc(2026, 3, 8, 11),
    ),
    Case("new york, spring forward, 10:59 utc", utc(2026, 3, 8, 10, 59), "America/New_York", None),
    Case(
        "new york, day before fall back",
        utc(2026, 10, 31, 11),
        "America/New_York",
        "2026-10-31",
        utc(2026, 10, 31, 11),
    ),
    Case("new york, fall back day, 11:00 utc", utc(2026, 11, 1, 11), "America/New_York", None),
    Case(
        "new york, fall back day",
        utc(2026, 11, 1, 12),
        "America/New_York",
        "2026-11-01",
        utc(2026, 11, 1, 12),
    ),
    Case(
        "berlin, day before spring forward",
        utc(2026, 3, 28, 6),
        "Europe/Berlin",
        "2026-03-28",
        utc(2026, 3, 28, 6),
    ),
    Case(
        "berlin, spring forward day", utc(2026, 3, 29, 5), "Europe/Berlin", "2026-03-29", utc(2026, 3, 29, 5)
    ),
    Case("berlin, spring forward, 4:59 utc", utc(2026, 3, 29, 4, 59), "Europe/Berlin", None),
    Case(
        "berlin, day before fall back",
        utc(2026, 10, 24, 5),
        "Europe/Berlin",
        "2026-10-24",
        utc(2026, 10, 24, 5),
    ),
    Case("berlin, fall back day, 5:00 utc", utc(2026, 10, 25, 5), "Europe/Berlin", None),
    Case("berlin, fall back day", utc(2026, 10, 25, 6), "Europe/Berlin", "2026-10-25", utc(2026, 10, 25, 6)),
    Case(
        "auckland, fall back day (nzst, +12)",
        utc(2026, 4, 4, 19),
        "Pacific/Auckland",
        "2026-04-05",
        utc(2026, 4, 4, 19),
    ),
    Case(
        "auckland, spring forward day (nzdt, +13)",
        utc(2026, 9, 26, 18),
        "Pacific/Auckland",
        "2026-09-27",
        utc(2026, 9, 26, 18),
    ),
    # Local times that do not exist shift forward; those that happen twice take the first.
    Case(
        "new york 02:30 does not exist on 8 march: 03:30 edt",
        utc(2026, 3, 8, 7, 30),
        "America/New_York",
        "2026-03-08",
        utc(2026, 3, 8, 7, 30),
        delivery_time=time(2, 30),
    ),
    Case(
        "new york 02:30 on 8 march: not yet at 03:29 edt",
        utc(2026, 3, 8, 7, 29),
        "America/New_York",
        None,
        delivery_time=time(2, 30),
    ),
    Case(
        "berlin 02:30 does not exist on 29 march: 03:30 cest",
        utc(2026, 3, 29, 1, 30),
        "Europe/Berlin",
        "2026-03-29",
        utc(2026, 3, 29, 1, 30),
        delivery_time=time(2, 30),
    ),
    Case(
        "new york 01:30 happens twice on 1 november: the first (edt)",
        utc(2026, 11, 1, 5, 30),
        "America/New_York",
        "2026-11-01",
        utc(2026, 11, 1, 5, 30),
        delivery_time=time(1, 30),
    ),
    Case(
        "berlin 02:30 happens twice on 25 october: the first (cest)",
        utc(2026, 10, 25, 0, 30),
        "Europe/Berlin",
        "2026-10-25",
        utc(2026, 10, 25, 0, 30),
        delivery_time=time(2, 30),
    ),
    # Catch-up: a missed digest goes out late within the window, older ones never.
    Case(
        "12:00 local catches up the 07:00 digest",
        utc(2026, 11, 27, 11),
        "Europe/Berlin",
        "2026-11-27",
        utc(2026, 11, 27, 6),
    ),
    Case(
        "13:00 local is the edge of a 6 h window",
        utc(2026, 11, 27, 12),
        "Europe/Berlin",
        "2026-11-27",
        utc(2026, 11, 27, 6),
    ),
    Case("13:30 local is too late", utc(2026, 11, 27, 12, 30), "Europe/Berlin", None),
    Case("06:00 local never sends yesterday's", utc(2026, 11, 27, 5), "Europe/Berlin", None),
    Case(
        "nor 06:59 with a 23 h window",
        utc(2026, 11, 27, 5, 59),
        "Europe/Berlin",
        None,
        catch_up=timedelta(hours=23),
    ),
    Case("no catch-up: only on time", utc(2026, 11, 27, 6, 1), "Europe/Berlin", None, catch_up=timedelta(0)),
    Case(
        "a late delivery time is caught up after midnight",
        utc(2026, 11, 28, 0, 30),
        "Europe/Berlin",
        "2026-11-27",
        utc(2026, 11, 27, 22, 30),
        delivery_time=time(23, 30),
    ),
    # Weekdays and weekly.
    Case(
        "weekdays on friday",
        utc(2026, 11, 27, 7),
        "UTC",
        "2026-11-27",
        utc(2026, 11, 27, 7),
        frequency="weekdays",
    ),
    Case("weekdays skip saturday", utc(2026, 11, 28, 7), "UTC", None, frequency="weekdays"),
    Case("weekdays skip sunday", utc(2026, 11, 29, 12), "UTC", None, frequency="weekdays"),
    Case(
        "weekdays on monday",
        utc(2026, 11, 30, 8),
        "UTC",
        "2026-11-30",
        utc(2026, 11, 30, 7),
        frequency="weekdays",
    ),
    Case(
        "weekly on its monday",
        utc(2026, 11, 23, 7),
        "UTC",
        "2026-W48",
        utc(2026, 11, 23, 7),
        frequency="weekly:mon",
    ),
    Case("weekly, not on tuesday", utc(2026, 11, 24, 7), "UTC", None, frequency="weekly:mon"),
    Case(
        "weekly on sunday",
        utc(2026, 11, 29, 9),
        "UTC",
        "2026-W48",
        utc(2026, 11, 29, 7),
        frequency="weekly:sun",
    ),
    Case(
        "weekly in auckland: sunday there is saturday in utc",
        utc(2026, 11, 28, 18),
        "Pacific/Auckland",
        "2026-W48",
        utc(2026, 11, 28, 18),
        frequency="weekly:sun",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_due_period(case: Case) -> None:
    due = due_period(
        now=case.now,
        timezone=case.timezone,
        delivery_time=case.delivery_time,
        frequency=case.frequency,
        catch_up=case.catch_up,
    )
    if case.period is None:
        assert due is None
    else:
        assert due is not None
        assert (due.period, due.scheduled_at) == (case.period, case.scheduled)
        assert due.window_end == due.scheduled_at


@pytest.mark.parametrize(
    ("timezone", "first_day", "first_utc_hour", "second_utc_hour", "window_hours"),
    [
        ("America/New_York", date(2026, 3, 7), 12, 11, 23),  # spring forward: EST → EDT
        ("America/New_York", date(2026, 10, 31), 11, 12, 25),  # fall back: EDT → EST
        ("Europe/Berlin", date(2026, 3, 28), 6, 5, 23),
        ("Europe/Berlin", date(2026, 10, 24), 5, 6, 25),
    ],
)
def test_a_clock_moved_across_a_dst_change_sends_each_day_once_at_seven_local(
    timezone: str, first_day: date, first_utc_hour: int, second_utc_hour: int, window_hours: int
) -> None:
    """A daemon ticking every 5 minutes over two days, keeping a ledger of periods sent."""
    clock = datetime.combine(first_day, time(0), tzinfo=UTC)
    sent: dict[str, DuePeriod] = {}
    first_due_at: dict[str, datetime] = {}
    while clock < datetime.combine(first_day + timedelta(days=2), time(0), tzinfo=UTC):
        due = due_period(
            now=clock, timezone=timezone, delivery_time=SEVEN, frequency="daily", catch_up=SIX_HOURS
        )
        if due is not None and due.period not in sent:
            sent[due.period] = due
            first_due_at[due.period] = clock
        clock += timedelta(minutes=5)

    before, after = first_day.isoformat(), (first_day + timedelta(days=1)).isoformat()
    assert list(sent) == [before, after]
    assert first_due_at[before] == datetime.combine(first_day, time(first_utc_hour), tzinfo=UTC)
    assert first_due_at[after] == datetime.combine(
        first_day + timedelta(days=1), time(second_utc_hour), tzinfo=UTC
    )
    # The second digest covers exactly since the first one: 23 or 25 hours, no gap, no overlap.
    assert sent[after].window_start == sent[before].scheduled_at
    assert sent[after].window_end - sent[after].window_start == timedelta(hours=window_hours)


def test_a_daemon_down_all_morning_sends_today_late_but_never_yesterday() -> None:
    """Down from Thursday 06:00 to Friday 12:00 Berlin: only Friday's digest goes out, at 12:00."""
    clock = utc(2026, 11, 27, 11)  # Friday 12:00 in Berlin, the daemon starts
    sent = []
    while clock < utc(2026, 11, 27, 20):
        due = due_period(
            now=clock, timezone="Europe/Berlin", delivery_time=SEVEN, frequency="daily", catch_up=SIX_HOURS
        )
        if due is not None and due.period not in sent:
            sent.append(due.period)
        clock += timedelta(minutes=10)
    assert sent == ["2026-11-27"]


def test_windows_cover_since_the_previous_delivery() -> None:
    daily = due_period(
        now=utc(2026, 11, 27, 7), timezone="UTC", delivery_time=SEVEN, frequency="daily", catch_up=SIX_HOURS
    )
    monday = due_period(
        now=utc(2026, 11, 30, 7),
        timezone="UTC",
        delivery_time=SEVEN,
        frequency="weekdays",
        catch_up=SIX_HOURS,
    )
    weekly = due_period(
        now=utc(2026, 11, 23, 7),
        timezone="UTC",
        delivery_time=SEVEN,
        frequency="weekly:mon",
        catch_up=SIX_HOURS,
    )
    assert daily is not None and monday is not None and weekly is not None
    assert daily.window_start == utc(2026, 11, 26, 7)
    assert monday.window_start == utc(2026, 11, 27, 7)  # since Friday's delivery
    assert weekly.window_start == utc(2026, 11, 16, 7)
    assert weekly.window_end == utc(2026, 11, 23, 7)


@pytest.mark.parametrize(
    ("frequency", "day", "expected"),
    [
        ("daily", date(2026, 11, 27), "2026-11-27"),
        ("daily", date(2026, 11, 28), "2026-11-28"),
        ("weekdays", date(2026, 11, 27), "2026-11-27"),
        ("weekdays", date(2026, 11, 28), None),
        ("weekdays", date(2026, 11, 29), None),
        ("weekly:fri", date(2026, 11, 27), "2026-W48"),
        ("weekly:fri", date(2026, 11, 26), None),
        ("weekly:mon", date(2026, 12, 28), "2026-W53"),  # 2026 has 53 ISO weeks
        ("weekly:fri", date(2027, 1, 1), "2026-W53"),  # the ISO year, not the calendar year
        ("weekly:mon", date(2027, 1, 4), "2027-W01"),
    ],
)
def test_period_for(frequency: str, day: date, expected: str | None) -> None:
    assert period_for(frequency, day) == expected


@pytest.mark.parametrize(
    ("now", "timezone", "frequency", "expected"),
    [
        (utc(2026, 11, 27, 6, 59), "UTC", "daily", utc(2026, 11, 27, 7)),
        (utc(2026, 11, 27, 7), "UTC", "daily", utc(2026, 11, 28, 7)),  # strictly after now
        (utc(2026, 11, 27, 8), "UTC", "weekdays", utc(2026, 11, 30, 7)),  # Friday → Monday
        (utc(2026, 11, 24, 8), "UTC", "weekly:mon", utc(2026, 11, 30, 7)),
        (utc(2026, 3, 7, 13), "America/New_York", "daily", utc(2026, 3, 8, 11)),  # across the change
        (utc(2026, 11, 27, 2), "Asia/Kolkata", "daily", utc(2026, 11, 28, 1, 30)),
        (utc(2026, 11, 26, 17), "Pacific/Auckland", "daily", utc(2026, 11, 26, 18)),
    ],
)
def test_next_delivery_at(now: datetime, timezone: str, frequency: str, expected: datetime) -> None:
    assert next_delivery_at(now=now, timezone=timezone, delivery_time=SEVEN, frequency=frequency) == expected


def test_scheduled_at_resolves_gaps_forward_and_repeats_to_the_first() -> None:
    assert scheduled_at(date(2026, 3, 29), timezone="Europe/Berlin", delivery_time=time(2, 30)) == utc(
        2026, 3, 29, 1, 30
    )
    assert scheduled_at(date(2026, 10, 25), timezone="Europe/Berlin", delivery_time=time(2, 30)) == utc(
        2026, 10, 25, 0, 30
    )


def test_naive_clocks_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_period(
            now=datetime(2026, 11, 27, 7),
            timezone="UTC",
            delivery_time=SEVEN,
            frequency="daily",
            catch_up=SIX_HOURS,
        )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("daily", "daily"),
        (" Weekdays ", "weekdays"),
        ("weekly:Mon", "weekly:mon"),
        ("weekly:sunday", "weekly:sun"),
    ],
)
def test_frequencies_are_normalised(given: str, expected: str) -> None:
    assert normalize_frequency(given) == expected


@pytest.mark.parametrize(
    ("given", "message"), [("weekly", "weekly:mon"), ("hourly", "daily, weekdays"), ("weekly:xyz", "got")]
)
def test_bad_frequencies_say_what_is_expected(given: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_frequency(given)


@pytest.mark.parametrize(
    ("given", "expected"), [("07:00", time(7)), ("7:05", time(7, 5)), ("23:59", time(23, 59))]
)
def test_delivery_times(given: str, expected: time) -> None:
    assert parse_delivery_time(given) == expected


@pytest.mark.parametrize("given", ["24:00", "7", "07:60", "seven", "07:00:30"])
def test_bad_delivery_times(given: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_delivery_time(given)


# -- the one answer every message gives -----------------------------------------------------------


def test_a_reader_added_after_todays_time_is_due_now_not_tomorrow() -> None:
    # Added at 13:45 with 13:30: `run` sends today's at once (catch-up), so the message says so.
    now = utc(2026, 12, 4, 13, 45)
    found = next_delivery(
        now=now, timezone="UTC", delivery_time=time(13, 30), frequency="daily", catch_up=SIX_HOURS
    )
    assert (found.period, found.scheduled_at, found.due_now) == ("2026-12-04", utc(2026, 12, 4, 13, 30), True)
    planned = due_period(
        now=now, timezone="UTC", delivery_time=time(13, 30), frequency="daily", catch_up=SIX_HOURS
    )
    assert planned is not None and planned.period == found.period  # what run plans


def test_a_weekdays_reader_on_friday_afternoon_gets_friday_not_monday() -> None:
    friday = utc(2026, 12, 4, 13, 45)  # a Friday
    kwargs = dict(
        timezone="Europe/Berlin", delivery_time=time(14, 30), frequency="weekdays", catch_up=SIX_HOURS
    )
    found = next_delivery(now=friday, **kwargs)  # type: ignore[arg-type]
    assert (found.period, found.due_now) == ("2026-12-04", True)
    # Once the ledger settled Friday's, the next is Monday's.
    after = next_delivery(now=friday, settled={"2026-12-04"}, **kwargs)  # type: ignore[arg-type]
    assert (after.period, after.scheduled_at, after.due_now) == (
        "2026-12-07",
        utc(2026, 12, 7, 13, 30),
        False,
    )


def test_beyond_the_catch_up_window_the_next_is_the_next_scheduled() -> None:
    late = utc(2026, 12, 4, 20, 0)
    found = next_delivery(
        now=late, timezone="UTC", delivery_time=time(13, 30), frequency="daily", catch_up=SIX_HOURS
    )
    assert (found.period, found.due_now) == ("2026-12-05", False)
    assert found.scheduled_at == next_delivery_at(
        now=late, timezone="UTC", delivery_time=time(13, 30), frequency="daily"
    )
