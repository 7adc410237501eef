"""The preferences page (`/p/{token}`, the digest footer's "Choose your topics and time"): the form,
what a POST asks for, and what the page shows. No HTTP and no store here; `bot.web.app` does both.

Validation is the subscribers' own (`bot.subscribers.files.parse_preferences`, which files and the
CLI use too), so the page accepts exactly what a subscriber file would.

Who may change what:
- topics, mutes, time, frequency and size: active or paused subscribers who did not come from a
  subscribers file. A file subscriber's preferences are the file's (the next `subscribers sync`
  would overwrite an edit made here), so their page shows them read-only and names the file.
- pause and resume: everyone, file subscribers too: status is the subscriber's own and a sync
  never changes it. Resume only undoes a pause: a bouncing, pending or unsubscribed subscriber is
  never made active from here (that needs a fixed address or a new confirmation).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qs

from bot.errors import ConfigError
from bot.ranking.topics import Taxonomy, UnknownTopicError
from bot.store.models import Subscriber
from bot.subscribers.files import PREFERENCE_FIELDS, parse_preferences
from bot.subscribers.schedule import WEEKDAYS

# Following and muting every topic (about 3 kB) and twenty 40-character keywords of emoji (12
# bytes a character once percent-encoded: 10 kB) fit with room to spare.
MAX_BODY_BYTES = 32 * 1024
MAX_FORM_FIELDS = 1000
FILE_ORIGIN = "file:"
EDITABLE_STATUSES = ("active", "paused")
# The columns this page writes; the rest (email, name, muted sources, source weights) stay as
# they are.
EDITED_COLUMNS = tuple(f for f in PREFERENCE_FIELDS if f not in ("muted_sources", "source_weights"))
LABELS = {
    "topics": "Topics you follow",
    "muted_topics": "Muted topics",
    "muted_keywords": "Muted keywords",
    "delivery_time": "Delivery time",
    "timezone": "Time zone",
    "frequency": "How often",
    "max_items": "Stories per digest",
}
# The validator's keys (as subscriber files spell them) → the form's fields.
_FIELD_OF_KEY = {
    "timezone": "timezone",
    "delivery_time": "delivery_time",
    "frequency": "frequency",
    "max_items": "max_items",
    "topics": "topics",
    "mute.topics": "muted_topics",
    "mute.keywords": "muted_keywords",
}
NOTICES = {
    "confirmed": "Confirmed: you're subscribed. Choose your topics and time here whenever you like.",
    "saved": "Saved. Your next digest follows these preferences.",
    "paused": "Paused. We send you nothing until you resume.",
    "resumed": "Resumed. Your digests are on again.",
}
_AREAS = frozenset(
    (
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
    )
)
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FREQUENCIES = ("daily", "weekdays", "weekly")
_STATE_REFUSALS = {
    "unsubscribed": "This address is unsubscribed, so there is nothing to change here.",
    "bouncing": (
        "We stopped sending because mail to this address bounced, so there is nothing to change "
        "here until the address works again."
    ),
    "pending": (
        "This subscription is waiting for you to confirm it with the link in our confirmation "
        "email; there is nothing to change here before that."
    ),
}


class FormError(Exception):
    """The body is not a form this page can read: bad encoding, too many fields, unknown action."""


@dataclass(frozen=True, slots=True)
class PreferencesForm:
    """The form's values as text, as stored or as submitted: what the page puts in its fields."""

    topics: tuple[str, ...]
    muted_topics: tuple[str, ...]
    muted_keywords: str  # comma separated
    delivery_time: str  # HH:MM
    timezone: str
    frequency: str  # daily | weekdays | weekly
    weekly_day: str  # mon … sun, for weekly
    max_items: str

    @classmethod
    def of(cls, subscriber: Subscriber) -> PreferencesForm:
        kind, _, day = subscriber.frequency.partition(":")
        return cls(
            topics=tuple(subscriber.topics),
            muted_topics=tuple(subscriber.muted_topics),
            muted_keywords=", ".join(subscriber.muted_keywords),
            delivery_time=subscriber.delivery_time,
            timezone=subscriber.timezone,
            frequency=kind,
            weekly_day=day or WEEKDAYS[0],
            max_items=str(subscriber.max_items),
        )

    @classmethod
    def submitted(cls, fields: Mapping[str, list[str]]) -> PreferencesForm:
        return cls(
            topics=_values(fields, "topics"),
            muted_topics=_values(fields, "muted_topics"),
            muted_keywords=first(fields, "muted_keywords"),
            delivery_time=first(fields, "delivery_time"),
            timezone=first(fields, "timezone"),
            frequency=first(fields, "frequency"),
            weekly_day=first(fields, "weekly_day"),
            max_items=first(fields, "max_items"),
        )

    @property
    def keywords(self) -> list[str]:
        return [keyword.strip() for keyword in self.muted_keywords.split(",") if keyword.strip()]

    @property
    def frequency_value(self) -> str:
        """'weekly' and a day → 'weekly:mon'; a weekly form without a day stays 'weekly', so the
        validator's message asks for the day."""
        if self.frequency.strip().lower() == "weekly" and self.weekly_day.strip():
            return f"weekly:{self.weekly_day.strip()}"
        return self.frequency


@dataclass(frozen=True, slots=True)
class TopicChoice:
    slug: str
    name: str


@dataclass(frozen=True, slots=True)
class TopicGroup:
    title: str
    topics: tuple[TopicChoice, ...]


# What a POST asks for, decided against the subscriber as stored.


@dataclass(frozen=True, slots=True)
class Save:
    """Write these preference columns (only those that differ; none: nothing to write)."""

    values: Mapping[str, Any]
    done: str = "saved"


@dataclass(frozen=True, slots=True)
class SetStatus:
    """Pause or resume: `status`, if the subscriber's status is still `expect`."""

    status: str
    expect: str
    done: str


@dataclass(frozen=True, slots=True)
class Unchanged:
    """Already as asked (a second pause): show the page as if it had just been done."""

    done: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """The form again, as submitted, with a message per field (400); nothing is saved."""

    form: PreferencesForm
    errors: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Refused:
    """Not this subscriber's to change here (409), and why; nothing is saved."""

    reason: str


Decision = Save | SetStatus | Unchanged | Invalid | Refused


def read_form(body: bytes) -> dict[str, list[str]]:
    """An application/x-www-form-urlencoded body as {name: [values]}; FormError if unreadable."""
    try:
        return parse_qs(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError too; and more fields than allowed
        raise FormError(str(exc)) from None


def is_form(content_type: str | None) -> bool:
    media_type = (content_type or "").partition(";")[0].strip().lower()
    return media_type == "application/x-www-form-urlencoded"


def first(fields: Mapping[str, list[str]], name: str) -> str:
    values = fields.get(name)
    return values[0] if values else ""


def managed_file(subscriber: Subscriber) -> str | None:
    """The subscribers file that manages this subscriber (as their origin names it), or None.

    An absolute path is cut to the file's name: the page need not show the server's folders.
    """
    if not subscriber.origin.startswith(FILE_ORIGIN):
        return None
    path = PurePosixPath(subscriber.origin.removeprefix(FILE_ORIGIN))
    return path.name if path.is_absolute() or ".." in path.parts else str(path)


def state_refusal(status: str) -> str:
    return _STATE_REFUSALS.get(status, f"A {status} subscription cannot be changed here.")


def file_refusal(path: str) -> str:
    return (
        f"Your topics, schedule and digest size are managed in your team's subscribers file, "
        f"{path}: a change made here would be overwritten by the next sync. Ask whoever keeps that "
        "file to change them. You can still pause, resume or unsubscribe here."
    )


class PreferencesEditor:
    """Decides what a POST to the preferences page does, and what the page shows."""

    def __init__(self, taxonomy: Taxonomy, *, shipped: Collection[str]) -> None:
        self.taxonomy = taxonomy
        self.groups = topic_groups(taxonomy, shipped=shipped)
        self.zones = suggested_zones()

    # -- decisions ---------------------------------------------------------------------------

    def decide(self, subscriber: Subscriber, fields: Mapping[str, list[str]]) -> Decision:
        action = first(fields, "action") or "save"
        if action == "pause":
            return self._pause(subscriber)
        if action == "resume":
            return self._resume(subscriber)
        if action != "save":
            raise FormError(f"unknown action {action[:40]!r}")
        return self._save(subscriber, PreferencesForm.submitted(fields))

    def _save(self, subscriber: Subscriber, form: PreferencesForm) -> Decision:
        if subscriber.status not in EDITABLE_STATUSES:
            return Refused(state_refusal(subscriber.status))
        path = managed_file(subscriber)
        if path is not None:
            return Refused(file_refusal(path))
        values, errors = self.check(form, subscriber)
        if errors:
            return Invalid(form, errors)
        return Save({key: value for key, value in values.items() if getattr(subscriber, key) != value})

    def _pause(self, subscriber: Subscriber) -> Decision:
        if subscriber.status == "paused":
            return Unchanged("paused")
        if subscriber.status != "active":
            return Refused(state_refusal(subscriber.status))
        return SetStatus("paused", expect="active", done="paused")

    def _resume(self, subscriber: Subscriber) -> Decision:
        if subscriber.status == "active":
            return Unchanged("resumed")
        if subscriber.status != "paused":
            return Refused(state_refusal(subscriber.status))
        return SetStatus("active", expect="paused", done="resumed")

    def check(self, form: PreferencesForm, current: Subscriber) -> tuple[dict[str, Any], dict[str, str]]:
        """The columns the form sets, or a message per field that is wrong."""
        max_items: object = form.max_items.strip()
        if isinstance(max_items, str) and max_items.isascii() and max_items.isdigit() and len(max_items) < 6:
            max_items = int(max_items)
        data = {
            "timezone": form.timezone.strip(),
            "delivery_time": form.delivery_time,
            "frequency": form.frequency_value,
            # A topic kept keeps its weight (files and the CLI can weigh topics; the page cannot).
            "topics": {slug: current.topics.get(slug, 1.0) for slug in form.topics},
            "mute": {"topics": list(form.muted_topics), "keywords": form.keywords},
            "max_items": max_items,
        }
        preferences, problems = parse_preferences(data, validate_topics=self._validate_topics)
        errors: dict[str, str] = {}
        for key, message in problems:
            errors.setdefault(_FIELD_OF_KEY.get(key, "form"), message)
        if errors or preferences is None:
            return {}, errors
        columns = preferences.column_values()
        return {key: columns[key] for key in EDITED_COLUMNS}, {}

    def _validate_topics(self, slugs: Iterable[str]) -> None:
        try:
            self.taxonomy.resolve(slugs)
        except UnknownTopicError as exc:
            # The taxonomy's message is for operators (it names a CLI command); a reader gets
            # what they can act on here.
            raise ConfigError(reader_topic_message(exc)) from None

    # -- the page ----------------------------------------------------------------------------

    def context(
        self,
        subscriber: Subscriber,
        *,
        form: PreferencesForm | None = None,
        errors: Mapping[str, str] | None = None,
        notice: str | None = None,
        refusal: str | None = None,
    ) -> dict[str, Any]:
        """What preferences.html.j2 shows (the caller adds the address and the unsubscribe link)."""
        shown = form or PreferencesForm.of(subscriber)
        path = managed_file(subscriber)
        editable = subscriber.status in EDITABLE_STATUSES and path is None
        return {
            "name": subscriber.name,
            "status": subscriber.status,
            "editable": editable,
            "managed_file": path,
            "form": shown,
            "groups": self._groups_for(shown) if editable else (),
            "summary": self.summary(subscriber),
            "errors": dict(errors or {}),
            "labels": LABELS,
            "notice": notice,
            "refusal": refusal,
            "zones": self.zones if editable else (),
            "frequencies": FREQUENCIES,
            "weekdays": tuple(zip(WEEKDAYS, DAY_NAMES, strict=True)),
        }

    def summary(self, subscriber: Subscriber) -> dict[str, str]:
        """The preferences in words, for pages that show them without a form."""
        kind, _, day = subscriber.frequency.partition(":")
        how_often = {"daily": "Every day", "weekdays": "Weekdays (Monday to Friday)"}.get(kind)
        if how_often is None:
            how_often = f"Weekly, on {DAY_NAMES[WEEKDAYS.index(day)]}" if day in WEEKDAYS else kind
        return {
            "topics": ", ".join(self._name(slug) for slug in subscriber.topics) or "The best of every topic",
            "muted_topics": ", ".join(self._name(slug) for slug in subscriber.muted_topics) or "None",
            "muted_keywords": ", ".join(subscriber.muted_keywords) or "None",
            "frequency": how_often,
            "delivery_time": f"{subscriber.delivery_time} ({subscriber.timezone})",
            "max_items": str(subscriber.max_items),
        }

    def _name(self, slug: str) -> str:
        try:
            return self.taxonomy.get(slug).name
        except UnknownTopicError:
            return slug

    def _groups_for(self, form: PreferencesForm) -> tuple[TopicGroup, ...]:
        """The taxonomy's groups, and one more for chosen topics it does not offer (a user topic
        since removed from the settings, or whatever a hand-made request sent)."""
        offered = {topic.slug for group in self.groups for topic in group.topics}
        others = [slug for slug in dict.fromkeys((*form.topics, *form.muted_topics)) if slug not in offered]
        if not others:
            return self.groups
        extra = TopicGroup("Other topics you chose", tuple(TopicChoice(s, self._name(s)) for s in others))
        return (*self.groups, extra)


def reader_topic_message(exc: UnknownTopicError) -> str:
    """What a reader is told about topics the page does not offer: the closest ones, else the list."""
    parts = []
    for name in exc.unknown:
        close = exc.suggestions.get(name, ())
        hint = (
            f"did you mean {' or '.join(close)}?" if close else "choose from the topics listed on this page"
        )
        parts.append(f"there is no topic '{name}'; {hint}")
    return "; ".join(parts)


def topic_groups(taxonomy: Taxonomy, *, shipped: Collection[str]) -> tuple[TopicGroup, ...]:
    """The topics as the form lists them: each broad topic with the narrower ones under it
    (Programming: Python, Rust, …), then the topics that stand alone, the kinds of article, and
    the team's own topics from the settings."""
    roots: dict[str, list[TopicChoice]] = {}
    own: list[TopicChoice] = []
    kinds: list[TopicChoice] = []
    for topic in taxonomy:
        choice = TopicChoice(topic.slug, topic.name)
        if topic.kind == "kind":
            kinds.append(choice)
        elif topic.slug not in shipped:
            own.append(choice)
        else:
            roots.setdefault(_root(taxonomy, topic.slug), []).append(choice)
    groups: list[TopicGroup] = []
    alone: list[TopicChoice] = []
    for root, choices in roots.items():
        if len(choices) == 1:
            alone.extend(choices)
        else:
            choices.sort(key=lambda choice: choice.slug != root)  # the broad topic first
            groups.append(TopicGroup(taxonomy.get(root).name, tuple(choices)))
    for title, choices in (("More topics", alone), ("Kinds of article", kinds), ("Your team's topics", own)):
        if choices:
            groups.append(TopicGroup(title, tuple(choices)))
    return tuple(groups)


def suggested_zones() -> tuple[str, ...]:
    """The zones the time zone field suggests: "UTC" and the Area/Location names, not the legacy
    aliases ("US/Eastern", "GB") or Etc/ offsets; the validator accepts those too."""
    zones = (zone for zone in zoneinfo.available_timezones() if zone.partition("/")[0] in _AREAS)
    return ("UTC", *sorted(zones))


def _root(taxonomy: Taxonomy, slug: str) -> str:
    """The broadest topic above `slug`, following each topic's first broader one."""
    seen = {slug}
    while taxonomy.broader.get(slug):
        slug = taxonomy.broader[slug][0]
        if slug in seen:  # pragma: no cover - the taxonomy refuses loops
            break
        seen.add(slug)
    return slug


def _values(fields: Mapping[str, list[str]], name: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value.strip() for value in fields.get(name, ()) if value.strip()))
