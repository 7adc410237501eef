"""The feed text a digest shows, made safe and shaped once: control characters dropped, whitespace
collapsed, lengths capped, links kept only when absolute http(s); each item's parts (title, byline,
excerpt, why it was picked) and dates in words. Every renderer (email today, chat next) uses these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import quote, urljoin, urlsplit

from bot.digest.view import DigestItemView, DigestView, humanize_age

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_WHITESPACE = re.compile(r"\s+")
# Characters a URL may keep as they are; anything else (quotes, spaces, <, >, non-ASCII) is
# percent-encoded so a link can never break out of an attribute or a plain-text line.
_URL_SAFE = "/:?#[]@!$&'()*+,;=%~-._"
CACHE_LIMIT = 20_000  # entries of a per-article cache before it starts afresh
TITLE_MAX = 300
EXCERPT_MAX = 600
NAME_MAX = 80


def clean_text(value: str | None, limit: int) -> str:
    """One line of untrusted text: no control characters, whitespace collapsed, at most `limit`."""
    if not value:
        return ""
    text = _WHITESPACE.sub(" ", _CONTROL.sub("", value)).strip()
    return shorten(text, limit)


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-–—·") + "…"


def safe_link(url: str | None, *, base: str | None = None) -> str | None:
    """The URL if it is an absolute http(s) link (or a relative one joined to `base`), else None.

    Protocol-relative links get https; a user name and password are dropped. Unsafe characters are
    percent-encoded, so the result can
    go into an attribute or a text line as it is (HTML escaping still applies on top).
    """
    if not url:
        return None
    candidate = _CONTROL.sub("", url).strip()
    candidate = re.sub(r"\s", "%20", candidate)
    if candidate.startswith("//"):
        candidate = "https:" + candidate
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if not parts.scheme and base:
        if candidate.startswith(("\\", "/\\")):
            return None
        try:
            parts = urlsplit(urljoin(base, candidate))
        except ValueError:
            return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if "@" in parts.netloc:  # "https://trusted.example@evil.example/": keep only the real host
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    return quote(parts.geturl(), safe=_URL_SAFE)


# -- what the templates get -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkContext:
    name: str
    url: str | None


@dataclass(frozen=True, slots=True)
class ItemContext:
    """One item as the templates see it: cleaned text and safe links only."""

    number: int
    title: str
    url: str | None
    source: str
    author: str
    age: str
    published_iso: str
    byline: str  # "The Verge · Ada Lovelace · 3h ago"
    excerpt: str
    chip: str
    reason: str  # "Because you follow Python."
    also: tuple[LinkContext, ...]
    image_url: str | None
    image_alt: str


def _sentence(reason: str) -> str:
    text = clean_text(reason, 200)
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def item_context(number: int, item: DigestItemView, view: DigestView) -> ItemContext:
    return with_age(number, item_parts(item), item.published, view.now)


def item_parts(item: DigestItemView) -> ItemContext:
    """Everything of an item's context but its number and age: the same in every digest."""
    title = clean_text(item.title, TITLE_MAX) or "(untitled)"
    also = tuple(
        LinkContext(name=clean_text(name, NAME_MAX) or "another source", url=safe_link(url))
        for name, url in item.also_covered_by
    )
    return ItemContext(
        number=0,
        title=title,
        url=safe_link(item.url),
        source=clean_text(item.source, NAME_MAX) or "the source",
        author=clean_text(item.author, NAME_MAX),
        age="",
        published_iso=item.published.isoformat(),
        byline="",
        excerpt=clean_text(item.excerpt, EXCERPT_MAX),
        chip=clean_text(item.chip, 40),
        reason=_sentence(item.reason),
        also=also,
        image_url=safe_link(item.image_url),
        image_alt=title,
    )


def with_age(number: int, parts: ItemContext, published: datetime, now: datetime) -> ItemContext:
    """`parts` (see item_parts) numbered and aged for one digest."""
    age = humanize_age(published, now)
    return ItemContext(
        number=number,
        title=parts.title,
        url=parts.url,
        source=parts.source,
        author=parts.author,
        age=age,
        published_iso=parts.published_iso,
        byline=" · ".join(part for part in (parts.source, parts.author, age) if part),
        excerpt=parts.excerpt,
        chip=parts.chip,
        reason=parts.reason,
        also=parts.also,
        image_url=parts.image_url,
        image_alt=parts.image_alt,
    )


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def date_label(day: date) -> str:
    """The date as "Tuesday, 7 May 2024", spelt out here so the server's locale cannot change it."""
    return f"{WEEKDAYS[day.weekday()]}, {day.day} {MONTHS[day.month - 1]} {day.year}"


def short_date(day: date) -> str:
    """The date as "7 May", for subjects."""
    return f"{day.day} {MONTHS[day.month - 1]}"


# -- the renderer ---------------------------------------------------------------------------
