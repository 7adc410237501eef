"""Plain values that cross the steps of ingestion: fetch → parse → store.

`ParsedEntry`, what the store accepts, lives in `bot/types.py`; it is imported here for the
pipeline's callers.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, overload

from bot.types import ParsedEntry as ParsedEntry  # its home: the store accepts it

FetchOutcome = Literal["ok", "not_modified", "gone", "error"]


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one conditional GET of a feed URL gave."""

    url: str  # the URL that was asked for
    outcome: FetchOutcome
    status: int = 0  # final HTTP status; 0 when no response arrived
    final_url: str | None = None  # where the body came from after any redirects
    moved_to: str | None = None  # new permanent URL (301/308 chain) to store instead of `url`
    body: bytes = b""
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    max_age: float | None = None  # seconds the server says the body stays fresh
    retry_after: float | None = None  # seconds the server asks us to wait (429/503)
    error: str | None = None  # one line for people: what went wrong
    elapsed: float = 0.0


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    format: str  # "rss2", "rss1", "atom", "json", or feedparser's version string
    title: str | None
    site_url: str | None
    ttl_minutes: int | None = None  # RSS <ttl>
    entries: tuple[ParsedEntry, ...] = ()
    warning: str | None = None  # e.g. a recovered bozo feed's reason
    parser: str = "fast"  # "fast" (lxml/json) or "feedparser" (fallback)
    extra: dict[str, str] = field(default_factory=dict)


class PackedEntries(Sequence[ParsedEntry]):
    """A feed's entries as one pickled blob, unpacked whenever they are read.

    The parse pool hands entries to ingest this way: while they wait for the store they are a
    single bytes object, and they become objects only in the writer, for as long as writing
    them takes. (Waiting as objects, thousands of them lived long enough to reach the oldest
    garbage-collector generation, and every full collection then walked them all.)
    """

    __slots__ = ("_blob", "_count")

    def __init__(self, entries: Sequence[ParsedEntry] = ()) -> None:
        self._blob = pickle.dumps(tuple(entries), protocol=pickle.HIGHEST_PROTOCOL)
        self._count = len(entries)

    def unpack(self) -> tuple[ParsedEntry, ...]:
        entries: tuple[ParsedEntry, ...] = pickle.loads(self._blob)  # our own parser processes' output
        return entries

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[ParsedEntry]:
        return iter(self.unpack())

    @overload
    def __getitem__(self, index: int) -> ParsedEntry: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[ParsedEntry, ...]: ...

    def __getitem__(self, index: int | slice) -> ParsedEntry | tuple[ParsedEntry, ...]:
        return self.unpack()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedEntries):
            return self._blob == other._blob or self.unpack() == other.unpack()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PackedEntries({self._count} entries, {len(self._blob)} bytes)"

    def __reduce__(self) -> tuple[Callable[..., PackedEntries], tuple[bytes, int]]:
        return _packed, (self._blob, self._count)


def _packed(blob: bytes, count: int) -> PackedEntries:
    packed = PackedEntries.__new__(PackedEntries)
    packed._blob, packed._count = blob, count
    return packed
