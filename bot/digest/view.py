"""What a digest template is given: plain frozen values, built by compose and read by render.

The views carry feed text exactly as stored (untrusted). Rendering cleans and escapes it; nothing
here is ever marked safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime


@dataclass(frozen=True, slots=True)
class DigestItemView:
    """One picked article as a reader sees it in the digest."""

    title: str
    url: str
    source: str  # "The Verge"
    author: str | None
    published: datetime
    excerpt: str
    chip: str  # the article kind or its main topic, as shown: "How-To", "Python"
    reason: str  # "because you follow Python and AI"
    also_covered_by: tuple[tuple[str, str], ...] = ()  # (source name, article url) of the same story
    image_url: str | None = None


@dataclass(frozen=True, slots=True)
class DigestView:
    """One subscriber's digest for one period (the unit a delivery sends)."""

    subscriber_name: str
    subscriber_email: str
    period: str  # "2024-05-07" for a daily digest; also part of the Message-ID
    date: date
    items: tuple[DigestItemView, ...]
    preferences_url: str
    unsubscribe_url: str
    quiet: bool = False  # compose found nothing: render the short "quiet day" note
    now: datetime = field(kw_only=True)  # the render clock, for "3h ago"
    view_url: str = field(default="", kw_only=True)  # "View in browser" (/d/{token}); "" = none

    @property
    def is_empty(self) -> bool:
        return self.quiet or not self.items


@dataclass(frozen=True, slots=True)
class ConfirmView:
    """The double opt-in mail: one link that confirms the subscription."""

    subscriber_name: str
    subscriber_email: str
    confirm_url: str
    topics: tuple[str, ...] = ()  # display names of the topics asked for, shown as a reminder
    expires_hours: int | None = None  # how long the link works, if it expires
    now: datetime = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class RenderedDigest:
    """A digest (or confirm mail) ready for a channel: subject, HTML with inlined CSS, plain text."""

    subject: str
    html: str
    text: str
    preheader: str


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def humanize_age(published: datetime, now: datetime) -> str:
    """How long ago, the way people say it: "just now", "12m ago", "3h ago", "2d ago", "3 May"."""
    seconds = (_aware(now) - _aware(published)).total_seconds()
    if seconds < 60:  # includes small clock skew into the future
        return "just now"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m ago"
    hours = minutes // 60
    if hours < 24:
        return f"{hours}h ago"
    days = hours // 24
    if days < 7:
        return f"{days}d ago"
    moment = _aware(published)
    label = f"{moment.day} {moment:%b}"
    return label if moment.year == _aware(now).year else f"{label} {moment.year}"
