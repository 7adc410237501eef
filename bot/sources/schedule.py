"""When to fetch a source next: a pure function of what the last fetch gave.

`error_count` is the number of errors in a row INCLUDING the fetch just finished: the caller
increments it on "error" (and on "gone", if it keeps the source at all) and resets it to 0 on
"ok" and "not_modified". So the first error waits one interval, the second two, the third four,
and so on up to `max_backoff`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from bot.sources.types import FetchOutcome

DEFAULT_MAX_FEED_DELAY = timedelta(hours=24)


def next_fetch_at(
    *,
    now: datetime,
    outcome: FetchOutcome,
    error_count: int,
    interval: timedelta,
    max_backoff: timedelta,
    max_age: float | None = None,
    retry_after: float | None = None,
    ttl_minutes: int | None = None,
    max_feed_delay: timedelta = DEFAULT_MAX_FEED_DELAY,
    jitter: float = 0.0,
) -> datetime:
    """The moment the next fetch of a source is due.

    - "ok" / "not_modified": after our `interval`, or later when the feed asks for it
      (Cache-Control max-age / Expires as `max_age` seconds, RSS `<ttl>` as `ttl_minutes`); what
      a feed asks for is capped at `max_feed_delay` so one header cannot park a source for weeks.
    - "error": exponential backoff, `interval × 2^(error_count-1)` capped at `max_backoff` (but
      never below `interval`), and
      never sooner than the server's Retry-After (itself capped at `max_feed_delay`).
    - "gone": the caller disables the source; if it keeps it anyway, look again after
      `max_backoff`.

    `jitter` (seconds, ≥ 0) is added as given, so results stay deterministic; `stable_jitter`
    derives one per source that spreads sources without randomness.
    """
    if interval <= timedelta(0):
        raise ValueError(f"interval must be positive, got {interval}")
    if jitter < 0:
        raise ValueError(f"jitter must not be negative, got {jitter}")
    base = interval.total_seconds()
    if outcome in ("ok", "not_modified"):
        asked = max(max_age or 0.0, (ttl_minutes or 0) * 60.0)
        wait = max(base, min(asked, max_feed_delay.total_seconds()))
    elif outcome == "gone":
        wait = max(base, max_backoff.total_seconds())
    else:
        # Past ~2^60 the float is far beyond any cap; stop growing it before it overflows.
        exponent = min(max(error_count, 1) - 1, 60)
        backoff = min(base * 2.0**exponent, max(base, max_backoff.total_seconds()))
        asked = min(retry_after or 0.0, max_feed_delay.total_seconds())
        wait = max(backoff, asked)
    return now + timedelta(seconds=wait + jitter)


def stable_jitter(key: str, spread: timedelta) -> float:
    """Seconds in [0, spread) derived from `key` (e.g. a source URL): the same key, the same
    jitter, while many sources added at once still drift apart."""
    seconds = spread.total_seconds()
    if seconds <= 0:
        return 0.0
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return fraction * seconds
