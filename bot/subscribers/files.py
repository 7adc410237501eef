"""Subscribers as code: `[[subscriber]]` tables in TOML files, validated into SubscriberSpecs.

A folder holds any number of *.toml files and a file any number of subscribers; the shape is
documented in subscribers/example.toml. tomllib reports no line numbers for values, so problems
are placed by scanning the text: the line of the offending key inside its `[[subscriber]]` table,
or of the table header itself. Every problem in every file is collected and reported at once.

`parse_preferences` is the one validator of what a subscriber wants (time zone, time, frequency,
topics, mutes, max items): files, `make_spec` (CLI, demo) and the web preferences page use it.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import tomllib
import unicodedata
import zoneinfo
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import time
from pathlib import Path
from typing import Any

from bot.errors import ConfigError
from bot.subscribers.destinations import (
    DEFAULT_CHAT_TOPICS,
    DESTINATION_KEYS,
    destination_entry,
    normalize_email,
    parse_destination,
)
from bot.subscribers.schedule import (
    DEFAULT_DELIVERY_TIME,
    format_delivery_time,
    normalize_frequency,
    parse_delivery_time,
)
from bot.types import Destination

__all__ = [
    "DEFAULT_CHAT_TOPICS",
    "PreferenceSpec",
    "Problem",
    "SubscriberFileError",
    "SubscriberSpec",
    "load_subscriber_files",
    "make_spec",
    "normalize_email",
    "parse_preferences",
]

TopicValidator = Callable[[Iterable[str]], None]
# The source names a subscriber may mute or weigh (`flarestart sources list`); None: not checked.
KnownSources = Collection[str]

DEFAULT_MAX_ITEMS = 10
MAX_ITEMS_RANGE = (1, 50)
MAX_MUTED_KEYWORDS, MAX_KEYWORD_CHARS = 20, 40
MAX_NAME, MAX_ORIGIN = 200, 500
TABLE = "subscriber"
EXAMPLE_PREFIX = "example"  # subscribers/example.toml documents the format; it is never synced
KEYS = (
    *DESTINATION_KEYS,
    "name",
    "timezone",
    "delivery_time",
    "frequency",
    "topics",
    "mute",
    "source_weights",
    "max_items",
)
MUTE_KEYS = ("topics", "keywords", "sources")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


@dataclass(frozen=True, slots=True)
class PreferenceSpec:
    """What a subscriber wants, and when: validated and normalised (see `parse_preferences`)."""

    timezone: str = "UTC"
    delivery_time: time = DEFAULT_DELIVERY_TIME
    frequency: str = "daily"
    topics: dict[str, float] = field(default_factory=dict)  # slug → weight (1.0 = normal)
    muted_topics: tuple[str, ...] = ()
    muted_keywords: tuple[str, ...] = ()
    muted_sources: tuple[str, ...] = ()  # source names
    source_weights: dict[str, float] = field(default_factory=dict)  # source name → weight
    max_items: int = DEFAULT_MAX_ITEMS

    def column_values(self) -> dict[str, Any]:
        """The values of the subscribers table these preferences set."""
        return {
            "timezone": self.timezone,
            "delivery_time": format_delivery_time(self.delivery_time),
            "frequency": self.frequency,
            "topics": dict(self.topics),
            "muted_topics": list(self.muted_topics),
            "muted_keywords": list(self.muted_keywords),
            "muted_sources": list(self.muted_sources),
            "source_weights": dict(self.source_weights),
            "max_items": self.max_items,
        }


PREFERENCE_FIELDS = tuple(f.name for f in fields(PreferenceSpec))


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberSpec(PreferenceSpec):
    """A subscriber as a file (or the CLI) describes them: where their digests go, who, where
    from, and their preferences (the fields it inherits). Validated and normalised."""

    destination: Destination
    name: str = ""
    origin: str = "cli"  # "file:subscribers/team.toml", "cli", "web", "chat"

    @property
    def ref(self) -> str:
        """How the subscriber is named everywhere: the email address, or "slack:C0123ABCD"."""
        return str(self.destination)

    @property
    def email(self) -> str | None:
        return self.destination.address if self.destination.kind == "email" else None

    @property
    def preferences(self) -> PreferenceSpec:
        return PreferenceSpec(**{name: getattr(self, name) for name in PREFERENCE_FIELDS})

    def column_values(self) -> dict[str, Any]:
        """The values of the subscribers table this spec sets (never status or timestamps)."""
        # (Not super(): slots=True makes a new class, which zero-argument super() does not know.)
        return {
            "email": self.email,
            "destination_kind": self.destination.kind,
            "address": self.destination.address,
            "name": self.name,
            **PreferenceSpec.column_values(self),
            "origin": self.origin,
        }


@dataclass(frozen=True, slots=True)
class Problem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class SubscriberFileError(ConfigError):
    """Subscriber files hold problems; each names its file and line. Nothing was loaded."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))


# -- single values ------------------------------------------------------------------------------


# Files that sit in the zoneinfo folder beside the zones, and load like them, but name no place:
# the machine's own zone, tzdata's placeholder, the POSIX fallback rules, and the copies of the
# database with and without leap seconds.
_NOT_PLACES = frozenset({"localtime", "Factory", "posixrules"})
_NOT_PLACE_FOLDERS = ("posix/", "right/")


@functools.cache
def iana_zones() -> frozenset[str]:
    """The time zone names a subscriber may use: the IANA database's zones and its links
    ("US/Eastern"), not the other files of the zoneinfo folder."""
    return frozenset(
        zone
        for zone in zoneinfo.available_timezones()
        if zone not in _NOT_PLACES and not zone.startswith(_NOT_PLACE_FOLDERS)
    )


def check_timezone(name: str) -> str:
    """An IANA time zone name; ValueError with the closest names otherwise."""
    zones = iana_zones()
    if name not in zones:
        lowered = {zone.lower(): zone for zone in zones}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        hint = (
            f"did you mean {lowered[close[0]]!r}?" if close else "like 'Europe/Berlin' or 'America/New_York'"
        )
        raise ValueError(f"time zone {name!r} is not an IANA time zone name ({hint})")
    return name


def make_spec(
    *,
    email: str | None = None,
    destination: Destination | None = None,
    name: str = "",
    timezone: str = "UTC",
    delivery_time: str | time = DEFAULT_DELIVERY_TIME,
    frequency: str = "daily",
    topics: Iterable[str] | Mapping[str, float] = (),
    muted_topics: Iterable[str] = (),
    muted_keywords: Iterable[str] = (),
    muted_sources: Iterable[str] = (),
    source_weights: Mapping[str, float] | None = None,
    max_items: int = DEFAULT_MAX_ITEMS,
    origin: str = "cli",
    validate_topics: TopicValidator | None = None,
    known_sources: KnownSources | None = None,
) -> SubscriberSpec:
    """Validate values given outside a file (CLI, web, chat); ConfigError lists every problem.
    The destination is `destination`, or the address `email`."""
    if (email is None) == (destination is None):
        raise ValueError("make_spec takes an email or a destination, exactly one")
    target = destination if destination is not None else Destination.email(email or "")
    data: dict[str, Any] = {
        **destination_entry(target),
        "name": name,
        "timezone": timezone,
        "delivery_time": delivery_time,
        "frequency": frequency,
        "topics": dict(topics) if isinstance(topics, Mapping) else list(topics),
        "mute": {
            "topics": list(muted_topics),
            "keywords": list(muted_keywords),
            "sources": list(muted_sources),
        },
        "source_weights": dict(source_weights or {}),
        "max_items": max_items,
    }
    spec, problems = _parse_subscriber(
        data,
        origin=origin,
        validate_topics=validate_topics,
        known_sources=known_sources,
    )
    if problems or spec is None:
        raise ConfigError("; ".join(message for _, message in problems))
    return spec


# -- files --------------------------------------------------------------------------------------


def load_subscriber_files(
    folder: Path,
    *,
    validate_topics: TopicValidator | None = None,
    known_sources: KnownSources | None = None,
    include_examples: bool = False,
) -> list[SubscriberSpec]:
    """Every subscriber in every *.toml file of `folder`, in file order.

    Files named example*.toml (the shipped documentation) are skipped unless `include_examples`.
    With `known_sources`, a source name in `mute.sources` or `source_weights` that is not one of
    them is a problem (with the closest names), not a digest that fails at every send.

    Raises SubscriberFileError (a ConfigError) naming file and line for each problem found,
    including the same destination in two places.
    """
    if not folder.is_dir():
        raise ConfigError(f"subscribers folder {folder} does not exist (or is not a folder)")
    specs: list[SubscriberSpec] = []
    problems: list[Problem] = []
    seen: dict[str, tuple[Path, int]] = {}
    for path in sorted(folder.glob("*.toml")):
        if path.name.startswith(EXAMPLE_PREFIX) and not include_examples:
            continue
        for ref, spec, line in _load_file(path, problems, validate_topics, known_sources):
            if ref is None:
                continue
            if ref in seen:
                first_path, first_line = seen[ref]
                where = f"line {first_line}" if first_path == path else f"{first_path}:{first_line}"
                problems.append(Problem(path, line, f"{ref} is already a subscriber at {where}"))
                continue
            seen[ref] = (path, line)
            if spec is not None:
                specs.append(spec)
    if problems:
        raise SubscriberFileError(sorted(problems, key=lambda problem: (problem.path, problem.line)))
    return specs


def _origin(path: Path) -> str:
    try:
        shown = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = path.resolve()
    return f"file:{shown.as_posix()}"[:MAX_ORIGIN]


def _load_file(
    path: Path,
    problems: list[Problem],
    validate_topics: TopicValidator | None,
    known_sources: KnownSources | None,
) -> list[tuple[str | None, SubscriberSpec | None, int]]:
    """(destination ref if valid, spec if valid, header line) per table; problems are appended."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problems.append(Problem(path, 1, "not UTF-8 text"))
        return []
    except OSError as exc:
        problems.append(Problem(path, 1, f"cannot read: {exc.strerror}"))
        return []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_LINE.search(message)
        line = int(found[1]) if found else 1
        problems.append(Problem(path, line, f"not valid TOML: {_TOML_LINE.sub('', message).strip()}"))
        return []
    lines = _Lines(text)
    for key in data:
        if key != TABLE:
            close = difflib.get_close_matches(key, [TABLE], n=1)
            hint = f" (did you mean [[{TABLE}]]?)" if close else f" (subscribers are [[{TABLE}]] tables)"
            problems.append(Problem(path, lines.top_level(key), f"unknown table or key {key!r}{hint}"))
    entries = data.get(TABLE, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.append(Problem(path, lines.top_level(TABLE), f"{TABLE} must be [[{TABLE}]] tables"))
        return []
    origin = _origin(path)
    loaded: list[tuple[str | None, SubscriberSpec | None, int]] = []
    for index, entry in enumerate(entries):
        block = lines.block(index, len(entries))
        spec, messages = _parse_subscriber(
            entry, origin=origin, validate_topics=validate_topics, known_sources=known_sources
        )
        for where, message in messages:
            problems.append(Problem(path, lines.key_line(block, where), message))
        loaded.append((_ref_of(entry), spec, block.start))
    return loaded


def _ref_of(entry: Mapping[str, Any]) -> str | None:
    """The destination of a table as a ref, even when other keys are wrong (to find duplicates)."""
    destination, problems = parse_destination(entry)
    return str(destination) if destination is not None and not problems else None


@dataclass(frozen=True, slots=True)
class _Block:
    start: int  # 1-based line of the [[subscriber]] header
    end: int  # 1-based line after the last line of the table (exclusive)


class _Lines:
    """Finds where things are in a TOML text, since tomllib keeps no positions."""

    _HEADER = re.compile(rf"^\s*\[\[\s*(?:{TABLE}|\"{TABLE}\"|'{TABLE}')\s*\]\]")
    _ANY_HEADER = re.compile(r"^\s*\[")
    _SUBTABLE = re.compile(rf"^\s*\[\s*{TABLE}\s*\.\s*\"?([A-Za-z0-9_-]+)\"?\s*\]")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers = [n for n, line in enumerate(self.lines, 1) if self._HEADER.match(line)]

    def top_level(self, key: str) -> int:
        pattern = re.compile(rf"^\s*\[*\s*[\"']?{re.escape(key)}[\"']?\s*[\].=]")
        for number, line in enumerate(self.lines, 1):
            if pattern.match(line):
                return number
        return 1

    def block(self, index: int, count: int) -> _Block:
        if len(self.headers) != count:  # inline tables (`subscriber = [{…}]`): only the key is known
            start = self.top_level(TABLE)
            return _Block(start, start + 1)
        start = self.headers[index]
        end = len(self.lines) + 1
        for number in range(start + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if self._ANY_HEADER.match(line) and not self._SUBTABLE.match(line):
                end = number
                break
        return _Block(start, end)

    def key_line(self, block: _Block, key: str | None) -> int:
        """The line of `key` ("timezone", or "mute.topics") in the block; the header if not found."""
        if key is None:
            return block.start
        head, _, sub = key.partition(".")
        # Keys of the table itself come before its first sub-table header.
        own_end = block.end
        for number in range(block.start + 1, block.end):
            if self._ANY_HEADER.match(self.lines[number - 1]):
                own_end = number
                break
        found = self._find(head, block.start + 1, own_end, anchored=True)
        if found is None:  # perhaps written as a sub-table: [subscriber.mute]
            for number in range(block.start + 1, block.end):
                match = self._SUBTABLE.match(self.lines[number - 1])
                if match and match[1] == head:
                    found = number
                    break
        if found is None:
            return block.start
        if not sub:
            return found
        dotted = re.compile(rf"^\s*{re.escape(head)}\s*\.\s*[\"']?{re.escape(sub)}[\"']?\s*=")
        for number in range(found, own_end):
            if dotted.match(self.lines[number - 1]):
                return number
        inner = self._find(sub, found, found + 1, anchored=False)
        if inner is None:
            inner = self._find(sub, found + 1, block.end, anchored=True)
        return inner or found

    def _find(self, key: str, start: int, end: int, *, anchored: bool) -> int | None:
        # `key =`, a dotted `key.sub =`, or (not anchored) `key =` inside an inline table.
        lead = r"^\s*" if anchored else r"(?:^|[{,.\s])"
        pattern = re.compile(rf"{lead}[\"']?{re.escape(key)}[\"']?\s*[.=]")
        for number in range(start, min(end, len(self.lines) + 1)):
            if pattern.search(self.lines[number - 1]):
                return number
        return None


# -- one subscriber -----------------------------------------------------------------------------

_Found = list[tuple[str | None, str]]  # (key or None for the whole table, message)


def _parse_subscriber(
    data: Mapping[str, Any],
    *,
    origin: str,
    validate_topics: TopicValidator | None,
    known_sources: KnownSources | None = None,
) -> tuple[SubscriberSpec | None, _Found]:
    """One subscriber: its destination (the entry's email, slack or discord key), name and
    preferences. A chat destination with no topics gets DEFAULT_CHAT_TOPICS."""
    found: _Found = []
    destination, destination_problems = parse_destination(data)
    found.extend(destination_problems)
    who = str(destination) if destination is not None else "subscriber"
    if destination is None:
        raw = next((data[key] for key in DESTINATION_KEYS if isinstance(data.get(key), str)), None)
        if raw is not None:
            who = f"subscriber {raw!r}"

    def problem(key: str | None, message: str) -> None:
        found.append((key, f"{who}: {message}"))

    for key in data:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(KEYS)})"
            problem(key, f"unknown key {key!r}{hint}")

    name = _string(data, "name", "", problem)
    if len(name) > MAX_NAME:
        problem("name", f"name is longer than {MAX_NAME} characters")
    preferences, preference_problems = parse_preferences(
        data, validate_topics=validate_topics, known_sources=known_sources
    )
    for key, message in preference_problems:
        problem(key, message)

    if found or preferences is None or destination is None:
        return None, found
    values = {key: getattr(preferences, key) for key in PREFERENCE_FIELDS}
    if destination.is_chat and not values["topics"]:
        values["topics"] = dict.fromkeys(DEFAULT_CHAT_TOPICS, 1.0)
    spec = SubscriberSpec(destination=destination, name=name.strip(), origin=origin[:MAX_ORIGIN], **values)
    return spec, found


def parse_preferences(
    data: Mapping[str, Any],
    *,
    validate_topics: TopicValidator | None = None,
    known_sources: KnownSources | None = None,
) -> tuple[PreferenceSpec | None, list[tuple[str, str]]]:
    """Validate the preference keys of a subscriber as a file spells them (`timezone`,
    `delivery_time`, `frequency`, `topics`, `mute = {topics, keywords, sources}`,
    `source_weights`, `max_items`; a missing key takes its default).

    Returns the preferences, or None and every problem as (key, message): the key as the file
    names it ("timezone", "mute.keywords"). Files, the CLI and the web page all validate here.
    """
    found: list[tuple[str, str]] = []

    def problem(key: str | None, message: str) -> None:
        found.append((key or "mute", message))

    timezone = _string(data, "timezone", "UTC", problem)
    try:
        check_timezone(timezone)
    except ValueError as exc:
        problem("timezone", str(exc))
    delivery_time = DEFAULT_DELIVERY_TIME
    raw_time = data.get("delivery_time", DEFAULT_DELIVERY_TIME)
    if not isinstance(raw_time, str | time):
        problem("delivery_time", f'delivery_time must be a string like "07:00", got {raw_time!r}')
    else:
        try:
            delivery_time = parse_delivery_time(raw_time)
        except ValueError as exc:
            problem("delivery_time", str(exc))
    frequency = _string(data, "frequency", "daily", problem)
    try:
        frequency = normalize_frequency(frequency)
    except ValueError as exc:
        problem("frequency", str(exc))
    max_items = data.get("max_items", DEFAULT_MAX_ITEMS)
    low, high = MAX_ITEMS_RANGE
    if isinstance(max_items, bool) or not isinstance(max_items, int) or not low <= max_items <= high:
        problem("max_items", f"max_items must be a whole number from {low} to {high}, got {max_items!r}")

    topics = _topics(data.get("topics", []), problem)
    mute = data.get("mute", {})
    if not isinstance(mute, Mapping):
        problem("mute", "mute must be a table: mute = { topics = […], keywords = […], sources = […] }")
        mute = {}
    for key in mute:
        if key not in MUTE_KEYS:
            close = difflib.get_close_matches(key, MUTE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(MUTE_KEYS)})"
            problem(f"mute.{key}", f"unknown key {key!r} in mute{hint}")
    muted_topics = tuple(s.lower() for s in _strings(mute, "topics", "mute.topics", problem))
    muted_keywords = _strings(mute, "keywords", "mute.keywords", problem)
    _check_keywords(muted_keywords, problem)
    muted_sources = _strings(mute, "sources", "mute.sources", problem)
    for key, slugs in (("topics", list(topics)), ("mute.topics", list(muted_topics))):
        bad = [slug for slug in slugs if not _SLUG.match(slug)]
        if bad:
            problem(key, f"{', '.join(map(repr, bad))} is not a topic slug (lowercase letters, digits, -)")
        elif slugs and validate_topics is not None:
            try:
                validate_topics(slugs)
            except ConfigError as exc:
                problem(key, str(exc))
    source_weights = _weights(data.get("source_weights", {}), "source_weights", problem, lower=False)
    if known_sources is not None:
        for key, names in (("mute.sources", muted_sources), ("source_weights", tuple(source_weights))):
            _check_sources(names, key, known_sources, problem)

    if found:
        return None, found
    preferences = PreferenceSpec(
        timezone=timezone,
        delivery_time=delivery_time,
        frequency=frequency,
        topics=topics,
        muted_topics=muted_topics,
        muted_keywords=muted_keywords,
        muted_sources=muted_sources,
        source_weights=source_weights,
        max_items=int(max_items),
    )
    return preferences, found


def _check_keywords(keywords: Sequence[str], problem: _Report) -> None:
    """Muted keywords are short words or phrases: a bounded number, each short, on one line."""
    if len(keywords) > MAX_MUTED_KEYWORDS:
        problem("mute.keywords", f"at most {MAX_MUTED_KEYWORDS} muted keywords, got {len(keywords)}")
    too_long = [keyword for keyword in keywords if len(keyword) > MAX_KEYWORD_CHARS]
    if too_long:
        shown = too_long[0] if len(too_long[0]) <= 60 else too_long[0][:57] + "…"
        problem(
            "mute.keywords",
            f"a muted keyword is at most {MAX_KEYWORD_CHARS} characters; {shown!r} has {len(too_long[0])}",
        )
    if any(unicodedata.category(char) == "Cc" for keyword in keywords for char in keyword):
        problem("mute.keywords", "muted keywords cannot hold control characters (tabs, line breaks)")


_Report = Callable[[str | None, str], None]


def _check_sources(names: Iterable[str], key: str, known: KnownSources, problem: _Report) -> None:
    """Source names as `sources list` shows them (case does not matter), or the closest ones."""
    by_case = {name.casefold(): name for name in known}
    for name in names:
        if name.casefold() in by_case:
            continue
        close = difflib.get_close_matches(name.casefold(), list(by_case), n=2, cutoff=0.5)
        if close:
            hint = "did you mean " + " or ".join(repr(by_case[c]) for c in close) + "?"
        elif by_case:
            hint = "`flarestart sources list` shows the names"
        else:
            hint = "there are no sources yet: add one with `flarestart sources add URL`"
        problem(key, f"{key}: unknown source {name!r} ({hint})")


def _string(data: Mapping[str, Any], key: str, default: str, problem: _Report) -> str:
    value = data.get(key, default)
    if isinstance(value, str):
        return value
    problem(key, f"{key} must be a string, got {value!r}")
    return default


def _strings(data: Mapping[str, Any], key: str, where: str, problem: _Report) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        problem(where, f"{where} must be a list of non-empty strings, got {value!r}")
        return ()
    return tuple(dict.fromkeys(item.strip() for item in value))


def _topics(value: Any, problem: _Report) -> dict[str, float]:
    """Either a list of slugs (weight 1.0 each) or a table {slug = weight}."""
    if isinstance(value, list):
        if not all(isinstance(item, str) and item.strip() for item in value):
            problem(
                "topics", f"topics must be a list of topic slugs or a table {{slug = weight}}, got {value!r}"
            )
            return {}
        return {item.strip().lower(): 1.0 for item in value}
    return _weights(value, "topics", problem, lower=True)


def _weights(value: Any, key: str, problem: _Report, *, lower: bool) -> dict[str, float]:
    if not isinstance(value, Mapping):
        problem(key, f"{key} must be a table {{name = weight}}, got {value!r}")
        return {}
    weights: dict[str, float] = {}
    for name, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight < math.inf:
            problem(key, f"{key}: the weight of {name!r} must be a number above 0, got {weight!r}")
            continue
        weights[name.strip().lower() if lower else name.strip()] = float(weight)
    return weights
