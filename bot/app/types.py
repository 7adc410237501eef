"""What the application layer's verbs return: small frozen values for the doors to render.

Rows of the store (`Source`, `Subscriber`, `Delivery`, `Article`) appear inside them as read-only
snapshots; a door never writes through them. Importing this module is cheap: the row types are
named here for type checking only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.errors import OPMLError
from bot.types import DEFAULT_CHAT_TOPICS as DEFAULT_CHAT_TOPICS
from bot.types import (
    USER_PREFIX,
    WEBHOOK_PREFIX,
    Destination,
    HasDestination,
    destination_of,
    subscriber_ref,
)

if TYPE_CHECKING:  # names for the doors' annotations; the verbs import the modules they use
    from bot.app.delivery import SampleSend as SampleSend
    from bot.app.delivery import SendOutcome as SendOutcome
    from bot.delivery.retry import RetryOutcome as RetryOutcome
    from bot.delivery.service import SendResult as SendResult
    from bot.digest.compose import DigestAccount as DigestAccount
    from bot.digest.compose import DigestPlan as DigestPlan
    from bot.digest.compose import PlannedItem as PlannedItem
    from bot.ranking.topics import Taxonomy as Taxonomy
    from bot.sources.ingest import SourceReport as SourceReport
    from bot.store.listing import SourceListing as SourceListing
    from bot.store.models import Article as Article
    from bot.store.models import Delivery as Delivery
    from bot.store.models import Source as Source
    from bot.store.models import Subscriber as Subscriber
    from bot.store.suppressions import SuppressionRecord as SuppressionRecord
    from bot.subscribers.schedule import NextDelivery as NextDelivery
    from bot.subscribers.sync import SyncReport as SyncReport


@dataclass(frozen=True, slots=True)
class AddedSource:
    source: Source
    asked_url: str  # what the user gave: a feed, or a page that links to one
    feed_url: str
    entries: int  # entries in the feed now (stored on the next fetch)


@dataclass(frozen=True, slots=True)
class ImportedSources:
    imported: int
    present: int  # already stored, by URL
    problems: tuple[str, ...]  # invalid outlines skipped (with skip_invalid)


class OPMLImportRefused(OPMLError):
    """Some outlines are invalid and skip_invalid was not given: nothing was imported."""

    def __init__(self, message: str, problems: tuple[str, ...]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ExportedSources:
    opml: bytes
    count: int


@dataclass(frozen=True, slots=True)
class FetchRun:
    reports: tuple[SourceReport, ...]
    next_due: datetime | None  # when the next source is due, after this run


@dataclass(frozen=True, slots=True)
class StoredArticle:
    article: Article
    source: str  # the source's name


_KIND_NAMES = {"slack": "Slack", "discord": "Discord"}


def subscriber_label(subscriber: HasDestination) -> str:
    """A subscriber as every message names them: the email address, "Slack channel C0123ABCD",
    "Slack webhook $TEAM_SLACK_WEBHOOK", "Discord user 1122…"."""
    destination = destination_of(subscriber)
    if destination.kind == "email":
        return subscriber_ref(subscriber)
    kind, address = _KIND_NAMES[destination.kind], destination.address
    if address.startswith(WEBHOOK_PREFIX):
        return f"{kind} webhook ${address.removeprefix(WEBHOOK_PREFIX)}"
    if address.startswith(USER_PREFIX):
        return f"{kind} user {address.removeprefix(USER_PREFIX)}"
    return f"{kind} channel {address}"


@dataclass(frozen=True, slots=True)
class SubscriberView:
    """A subscriber and their next digest as `flarestart run` will send it (None: not active)."""

    subscriber: Subscriber
    next_delivery: NextDelivery | None

    @property
    def destination(self) -> Destination:
        return destination_of(self.subscriber)

    @property
    def ref(self) -> str:
        """What names the subscriber in a command: the email address, or "slack:C0123ABCD"."""
        return subscriber_ref(self.subscriber)

    @property
    def label(self) -> str:
        return subscriber_label(self.subscriber)

    @property
    def default_topics(self) -> bool:
        """True for a chat subscriber on the default topics (subscribed without choosing any)."""
        return self.destination.is_chat and set(self.subscriber.topics) == set(DEFAULT_CHAT_TOPICS)


@dataclass(frozen=True, slots=True)
class StatusChange:
    subscriber: Subscriber
    was: str
    changed: bool  # False: the subscriber already had the status asked for


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    report: SyncReport
    folder_name: str
    added: tuple[SubscriberView, ...]  # the added subscribers with their first digest
    # entries whose address is suppressed: never mailed until the reader opts in again
    suppressed: tuple[SuppressedEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class SuppressedEntry:
    """A subscriber file's entry whose address is suppressed, and where it is (file:line)."""

    email: str
    where: str
    reason: str


@dataclass(frozen=True, slots=True)
class Preview:
    """The digest that would be sent now, with the account of why it is as long as it is."""

    label: str  # whose it is: the subscriber's name or address, or the topics asked for
    reader: Subscriber  # who it is addressed to (a stand-in for a preview of preferences)
    stand_in: bool  # True: a preview of preferences, not of a stored subscriber
    plan: DigestPlan
    account: DigestAccount
    taxonomy: Taxonomy  # to name the matched topics
    next_delivery: NextDelivery | None  # a subscriber's next digest (None: not active, or stand-in)
    now: datetime


@dataclass(frozen=True, slots=True)
class RenderedPreview:
    subject: str
    html: str
    items: int


@dataclass(frozen=True, slots=True)
class DeliveryListing:
    rows: tuple[Delivery, ...]  # newest first
    addresses: dict[int, str]  # subscriber id → address (or "#id")
    counts: dict[str, int]  # every row of the ledger, by status
    statuses: tuple[str, ...]  # in the ledger's order
