"""Values that cross layers: the pipeline makes them, the store accepts them.

They live here, below both, so the store learns the shapes it saves without importing the pipeline
(sources, ranking, subscribers), and this module imports nothing of FlareStart's: the parser
processes load it without the store's SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class TopicMatch:
    slug: str
    weight: float  # 0 < weight ≤ 1: how strongly the article is about the topic
    terms: tuple[str, ...]  # what matched: feed tags and phrases, as found


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One feed entry, normalized: plain text, absolute canonical link, UTC dates."""

    key: str  # identity inside its source: "guid:…", else "link:…", else "hash:…"
    guid: str | None
    url: str | None
    title: str
    excerpt: str
    author: str | None
    published: datetime | None  # aware UTC: published, else updated; None when the feed has neither
    tags: tuple[str, ...] = ()
    image_url: str | None = None
    content_hash: str = ""
    topics: tuple[TopicMatch, ...] = ()  # filled by the tagger on ingest

    def __reduce__(self) -> tuple[Callable[..., ParsedEntry], tuple[object, ...]]:
        # Entries cross from the parse pool to ingest by the thousand, each with a dozen topics.
        # A dataclass pickles field by field, looking its fields up again for every object;
        # plain tuples, rebuilt through the constructors, cost a fraction of that.
        topics = tuple((t.slug, t.weight, t.terms) for t in self.topics)
        return _unpickle_entry, (
            self.key,
            self.guid,
            self.url,
            self.title,
            self.excerpt,
            self.author,
            self.published,
            self.tags,
            self.image_url,
            self.content_hash,
            topics,
        )


def _unpickle_entry(
    key: str,
    guid: str | None,
    url: str | None,
    title: str,
    excerpt: str,
    author: str | None,
    published: datetime | None,
    tags: tuple[str, ...],
    image_url: str | None,
    content_hash: str,
    topics: tuple[tuple[str, float, tuple[str, ...]], ...],
) -> ParsedEntry:
    matches = tuple(TopicMatch(slug, weight, terms) for slug, weight, terms in topics)
    return ParsedEntry(
        key, guid, url, title, excerpt, author, published, tags, image_url, content_hash, matches
    )


class SubscriberColumns(Protocol):
    """What the subscriber store accepts besides a mapping: a validated spec (`SubscriberSpec`)."""

    def column_values(self) -> dict[str, Any]:
        """The subscribers table's columns it sets (never status or timestamps)."""
        ...


DestinationKind = Literal["email", "slack", "discord"]
DESTINATION_KINDS: tuple[DestinationKind, ...] = ("email", "slack", "discord")
CHAT_KINDS: tuple[DestinationKind, ...] = ("slack", "discord")
# A chat address naming an environment variable that holds a webhook URL, or a Discord user (a
# direct message); other chat addresses are channel ids.
WEBHOOK_PREFIX = "webhook_env:"
USER_PREFIX = "user:"
# Topics a chat channel subscribed without any gets: a team channel wants a broad morning read,
# not "everything" (which is what an email reader with no topics gets).
DEFAULT_CHAT_TOPICS: tuple[str, ...] = ("programming", "ai", "security", "devops", "web-development")


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one subscriber's digests go: a kind and an address.

    The address is what the kind's channel needs and no secret: an email address; a Slack channel
    id ("C0123ABCD") or "webhook_env:NAME" (the environment variable holding the webhook URL); a
    Discord channel id, "webhook_env:NAME" or "user:ID" (a direct message).
    """

    kind: DestinationKind
    address: str

    def __str__(self) -> str:
        return self.address if self.kind == "email" else f"{self.kind}:{self.address}"

    @property
    def is_chat(self) -> bool:
        return self.kind in CHAT_KINDS

    @classmethod
    def email(cls, address: str) -> Destination:
        return cls("email", address)

    @classmethod
    def from_ref(cls, ref: str) -> Destination:
        """The destination a reference names: "slack:C0123ABCD", "discord:user:42", or an email
        address (anything without a chat kind's prefix). Not validated: see
        bot.subscribers.destinations for that."""
        kind, colon, rest = ref.strip().partition(":")
        lowered = kind.lower()
        if colon and lowered in CHAT_KINDS:
            return cls("slack" if lowered == "slack" else "discord", rest.strip())
        return cls("email", ref.strip().lower())


class HasDestination(Protocol):
    """A subscriber as a row, a record or a view of one: what names its destination."""

    @property
    def id(self) -> int | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def destination_kind(self) -> str: ...
    @property
    def address(self) -> str: ...


def destination_of(subscriber: HasDestination) -> Destination:
    """Where `subscriber`'s digests go. A row written before destinations (no address yet) is an
    email subscriber."""
    kind = subscriber.destination_kind or "email"
    if kind == "email":
        return Destination("email", subscriber.address or subscriber.email or "")
    return Destination("slack" if kind == "slack" else "discord", subscriber.address)


def subscriber_ref(subscriber: HasDestination) -> str:
    """How a subscriber is named in messages, reports and commands: the email address, or
    "slack:C0123ABCD"; "#7" for one without any address."""
    ref = str(destination_of(subscriber))
    return ref or f"#{subscriber.id}"
