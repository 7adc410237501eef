"""Rate limits of the public forms: so many events per key (a client address, an email address)
in a sliding window, kept in memory.

In memory and per process: a limit is a brake on abuse, not an account. Behind several server
processes each one brakes on its own (the limit a client meets is the setting times the number
of processes). Keys are bounded, so a flood of new keys cannot grow memory without end: when
MAX_KEYS are tracked, the oldest are dropped first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_KEYS = 100_000


class RateLimiter:
    """At most `limit` hits per key within `window` seconds."""

    def __init__(self, limit: int, window: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs a limit of 1 or more and a window above 0")
        self.limit = limit
        self.window = window
        self._monotonic = monotonic
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Count one hit; None when allowed, else the seconds until the next one would be."""
        now = self._monotonic()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
                while len(self._hits) > MAX_KEYS:
                    self._hits.popitem(last=False)
            else:
                self._hits.move_to_end(key)
            while hits and now - hits[0] >= self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(self.window - (now - hits[0]), 0.001)
            hits.append(now)
            return None
