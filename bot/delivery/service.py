"""From due periods to digests in inboxes: plan the sends, then send each one exactly once.

`plan_due` runs on the clock: for each active subscriber whose local delivery moment has passed
(within the catch-up window) it enqueues one `send_digest` job, deduplicated by a unique key, so
any number of workers planning at once still create one job. `send_digest` runs on a worker:
ledger row → compose → render → channel → ledger. A retried job finds the ledger row and resumes;
a sent row is never sent again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from bot.channels.base import Channel, OutgoingDigest, Receipt
from bot.channels.email import make_message_id, message_id_domain
from bot.channels.registry import ChannelRegistry
from bot.config import EmailSettings, Settings
from bot.delivery.confirmations import CONFIRM_PERIOD, confirm_job
from bot.delivery.ledger import SUPPRESSED, DeliveryLedger, Opened
from bot.digest.compose import Composer, DigestPlan, PlannedItem, SubscriberPreferences, window_for
from bot.digest.render import DigestRenderer
from bot.digest.view import ConfirmView, DigestItemView, DigestView
from bot.errors import ConfigError, DeliveryBusyError, DeliveryPermanentError, DeliveryTransientError
from bot.jobs.queue import ClaimedJob, JobQueue, NewJob
from bot.links.secret import resolve_secret
from bot.links.tokens import CONFIRM_MAX_AGE, confirm_url, preferences_url, unsubscribe_url, view_url
from bot.ranking.setup import taxonomy_for
from bot.ranking.topics import Taxonomy
from bot.store import Store
from bot.store.models import Subscriber
from bot.store.store import StoredArticle
from bot.store.subscribers import Schedule, SubscriberStore
from bot.store.suppressions import SuppressionStore
from bot.store.types import utcnow
from bot.subscribers.schedule import DuePeriod, due_period, next_delivery_at, parse_delivery_time
from bot.types import subscriber_ref

log = logging.getLogger(__name__)

PLAN_TASK = "plan_digests"
SEND_TASK = "send_digest"
COMPOSER_TTL = 300.0  # seconds one candidate pool serves before it is rebuilt with new articles
ITEM_VIEWS_LIMIT = 50_000  # cached item views before the cache starts afresh


class Reader(SubscriberPreferences, Protocol):
    """What sending reads of a subscriber: a `Subscriber` row or a `SubscriberRecord`."""

    @property
    def id(self) -> int | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def destination_kind(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def consecutive_bounces(self) -> int: ...


TEST_SUBJECT_PREFIX = "[test] "
TEST_READER_ID = 1  # links need an id; the caller's throwaway key keeps them from working


def placeholders(settings: Settings) -> list[str]:
    """Settings still at the shipped placeholders that a real mail must not carry, each with what
    to set instead (`flarestart run` warns with these when SMTP is set)."""
    email, web = settings.email, settings.web
    found = []
    defaults = EmailSettings.model_fields
    if email.from_address == defaults["from_address"].default or email.from_address.endswith(".localhost>"):
        found.append(
            f"email.from_address is the placeholder {email.from_address!r}: set an address of your "
            "own domain (FLARESTART_EMAIL_FROM_ADDRESS), or receiving servers will refuse or junk it"
        )
    if "example street" in email.postal_address.lower():
        found.append(
            f"email.postal_address is the placeholder {email.postal_address!r}: bulk mail must carry "
            "your real postal address (FLARESTART_EMAIL_POSTAL_ADDRESS)"
        )
    host = (urlsplit(web.base_url).hostname or "").lower()
    if host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost"):
        found.append(
            f"web.base_url is {web.base_url!r}: unsubscribe and preferences links will not work from "
            "a reader's mail client; set the public URL of `flarestart serve` (FLARESTART_WEB_BASE_URL)"
        )
    return found


@dataclass(frozen=True, slots=True)
class SampleDigest:
    """What `send_test` sent (or, dry, would send)."""

    outgoing: OutgoingDigest
    items: int
    receipt: Receipt | None


@dataclass(frozen=True, slots=True)
class SendResult:
    status: str  # sent | skipped | already-sent | dry-run
    subscriber: str
    period: str
    items: int
    detail: str = ""
    receipt: Receipt | None = None


class DigestService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        channels: ChannelRegistry | Channel,
        *,
        clock: Callable[[], datetime] = utcnow,
        taxonomy: Taxonomy | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        # Which channel serves each subscriber's destination; one channel given serves email.
        self.channels = (
            channels if isinstance(channels, ChannelRegistry) else ChannelRegistry.serving(channels)
        )
        self.clock = clock
        self.subscribers = SubscriberStore(store.engine)
        self.ledger = DeliveryLedger(store.engine)
        # How long a sender holds a delivery row it began: as long as a job's lease.
        self.lease = timedelta(seconds=settings.delivery.lease_seconds)
        self.queue = JobQueue(store.engine, clock=clock)
        self.taxonomy = taxonomy or taxonomy_for(settings)
        self.renderer = DigestRenderer(settings.email, base_url=settings.web.base_url)
        self.secret = resolve_secret(settings)
        self.domain = message_id_domain(settings.email)
        self._composer: Composer | None = None
        self._composer_built = 0.0
        self._composer_articles: int | None = None  # the newest article id when the pool was built
        self._composer_lock = asyncio.Lock()
        # An article's item view is the same in every digest that picks it for the same reasons.
        self._item_views: dict[
            tuple[int, tuple[str, ...], tuple[int, ...]], tuple[StoredArticle, DigestItemView]
        ]
        self._item_views = {}
        # Set by the daemon once its first fetch cycle is done: planning before it would compose
        # digests from yesterday's store and skip today's as quiet.
        self.sources_ready = asyncio.Event()
        self.sources_ready.set()

    # -- planning ----------------------------------------------------------------------------

    def due(
        self, subscriber: Subscriber, now: datetime, *, catch_up: timedelta | None = None
    ) -> DuePeriod | None:
        """The period due at `now`, within the settings' catch-up window unless `catch_up` is given."""
        return due_period(
            now=now,
            timezone=subscriber.timezone,
            delivery_time=parse_delivery_time(subscriber.delivery_time),
            frequency=subscriber.frequency,
            catch_up=timedelta(hours=self.settings.delivery.catch_up_hours) if catch_up is None else catch_up,
        )

    def plan_due(self) -> int:
        """Enqueue this period's send for every active subscriber who is due, and the confirmation
        mail for every pending one whose mail is still owed; returns how many jobs are new.

        One query reads the schedule columns of every subscriber, each distinct schedule (time
        zone, time, frequency) is worked out once, and every job goes in with one transaction;
        jobs that exist already (an earlier run planned them) are skipped by their unique keys.
        """
        # a pending reader whose opt-in mail went (or failed for good) needs no job each minute
        schedules = self.subscribers.schedules(("active", "pending"), settled_mail=CONFIRM_PERIOD)
        created = self.queue.enqueue_many(self._due_jobs(schedules, self.clock()))
        if created:
            log.info(
                "digests planned",
                extra={"count": created, "channels": ",".join(self.channels.names().values())},
            )
        return created

    def _due_jobs(self, schedules: Sequence[Schedule], now: datetime) -> Iterator[NewJob]:
        attempts = self.settings.delivery.max_attempts
        catch_up = timedelta(hours=self.settings.delivery.catch_up_hours)
        periods: dict[tuple[str, str, str], dict[str, str] | None] = {}
        for row in schedules:
            channel = self.channels.name_for_subscriber(row)
            if row.status == "pending":
                yield confirm_job(row.id, channel=channel, max_attempts=attempts)
                continue
            key = (row.timezone, row.delivery_time, row.frequency)
            if key not in periods:
                due = due_period(
                    now=now,
                    timezone=row.timezone,
                    delivery_time=parse_delivery_time(row.delivery_time),
                    frequency=row.frequency,
                    catch_up=catch_up,
                )
                periods[key] = None if due is None else _period_payload(due)
            period = periods[key]
            if period is not None:
                yield send_job(row.id, period, channel=channel, max_attempts=attempts)

    def send_job_for(self, subscriber: Subscriber, period: str, *, around: datetime) -> NewJob | None:
        """The job `plan_due` made for `subscriber`'s `period`, worked out again from a moment
        within that period (when its delivery row was created), for an operator's retry after the
        finished job was pruned. None when the subscriber's schedule no longer puts `period` there."""
        assert subscriber.id is not None
        due = self.due(subscriber, around, catch_up=timedelta.max)
        if due is None or due.period != period:
            # `send --now` before the delivery time sends the period whose delivery comes next
            following = next_delivery_at(
                now=around,
                timezone=subscriber.timezone,
                delivery_time=parse_delivery_time(subscriber.delivery_time),
                frequency=subscriber.frequency,
            )
            due = self.due(subscriber, following, catch_up=timedelta.max)
        if due is None or due.period != period:
            return None
        return send_job(
            subscriber.id,
            _period_payload(due),
            channel=self.channels.name_for_subscriber(subscriber),
            max_attempts=self.settings.delivery.max_attempts,
        )

    async def handle_plan(self, job: ClaimedJob) -> None:
        await self.sources_ready.wait()
        await asyncio.to_thread(self.plan_due)

    # -- sending -----------------------------------------------------------------------------

    async def handle_send(self, job: ClaimedJob) -> None:
        payload: dict[str, Any] = dict(job.payload)
        window = datetime.fromisoformat(payload["window_end"]) - datetime.fromisoformat(
            payload["window_start"]
        )
        await self.send(
            int(payload["subscriber_id"]),
            str(payload["period"]),
            window=window,
            last_attempt=job.last_attempt,
        )

    async def composer(self) -> Composer:
        """The shared candidate pool, rebuilt when older than COMPOSER_TTL (new articles arrive)."""
        async with self._composer_lock:
            if self._composer_stale():
                await asyncio.to_thread(self._build_composer, self.clock())
            assert self._composer is not None
            return self._composer

    def current_composer(self, now: datetime | None = None) -> Composer:
        """`composer()` for code off the event loop (the drafting process), one thread at a time."""
        if self._composer_stale():
            return self._build_composer(now or self.clock())
        assert self._composer is not None
        return self._composer

    def _composer_stale(self) -> bool:
        if self._composer is None or time.monotonic() - self._composer_built > COMPOSER_TTL:
            return True
        # Articles stored since the pool was built (one max(id) lookup): the drafting process warms
        # its pool as `run` starts, before the first fetch has stored anything.
        return self.store.newest_article_id() != self._composer_articles

    def _build_composer(self, now: datetime) -> Composer:
        # read before the pool: an article stored while it builds makes the next check rebuild it
        newest = self.store.newest_article_id()
        composer = Composer(self.store, self.settings, self.taxonomy, now=now)
        self._composer, self._composer_built = composer, time.monotonic()
        self._composer_articles = newest
        return composer

    async def send(
        self,
        subscriber_id: int | str,
        period: str,
        *,
        window: timedelta | None = None,
        last_attempt: bool = True,
        dry_run: bool = False,
    ) -> SendResult:
        """Send one subscriber's digest for one period, at most once. Raises Delivery*Error."""
        subscriber, delivery, delivered = await asyncio.to_thread(self._start, subscriber_id, period, dry_run)
        assert subscriber.id is not None
        who = subscriber_ref(subscriber)
        extra = {
            "subscriber": who,
            "period": period,
            "channel": self.channels.name_for_subscriber(subscriber),
        }
        if subscriber.status != "active" or not subscriber.address:
            log.info("not sending: subscriber is %s", subscriber.status, extra=extra)
            return SendResult("skipped", who, period, 0, f"subscriber is {subscriber.status}")
        if delivery is not None and delivery.status == SUPPRESSED:
            log.info("not sending: the address is suppressed", extra=extra)
            return SendResult(
                "skipped", who, period, 0, "the address is suppressed (unsubscribed or bounced)"
            )
        if delivery is not None and delivery.busy:
            raise self.busy(who, period, delivery.lease_until)
        if delivery is not None and not delivery.began:
            return SendResult("already-sent", who, period, 0, f"delivery is {delivery.status}")
        try:
            composer = await self.composer()
            prefs = composer.preferences_of(subscriber, window=self.window(subscriber.frequency, window))
            plan = composer.plan(prefs, delivered=delivered)
            if not plan.items and self.settings.email.quiet_day == "skip":
                # Said fully (how old the newest article is, what was muted or sent before): one
                # reader's counts, and only for a quiet period.
                account = composer.account(prefs, plan, delivered=delivered)
                reason = account.reason or plan.empty_reason or "nothing new matched"
                if delivery is not None:
                    await asyncio.to_thread(
                        self.ledger.mark_skipped, delivery.id, reason=reason, now=self.clock()
                    )
                log.info("quiet period, nothing sent: %s", reason, extra=extra)
                return SendResult("skipped", who, period, 0, reason)
            await asyncio.sleep(0)  # ranking took the loop for a while: let other sends' replies in
            outgoing = self.outgoing(subscriber, period, plan)
        except Exception as exc:
            error = await self._composing_failed(delivery, exc, last_attempt=last_attempt, extra=extra)
            if error is None:
                raise
            raise error from exc
        if dry_run:
            return SendResult("dry-run", who, period, len(plan.items), outgoing.rendered.subject)
        assert delivery is not None
        article_ids = [item.article.id for item in plan.items]
        receipt = await self._deliver(
            delivery.id, subscriber, outgoing, article_ids, last_attempt=last_attempt
        )
        log.info("digest sent", extra={**extra, "items": len(article_ids), "message_id": outgoing.message_id})
        return SendResult("sent", who, period, len(article_ids), receipt.detail, receipt)

    def busy(self, who: str, period: str, lease_until: datetime | None) -> DeliveryBusyError:
        """The error for a delivery another sender holds: nothing sent; retry once its lease ends.
        Not logged here: the door says it (the CLI's one line, the worker's "postponed")."""
        wait = (lease_until - self.clock()).total_seconds() if lease_until is not None else 0.0
        return DeliveryBusyError(
            f"{who}'s digest for {period} is already being sent by another process; nothing was sent",
            retry_after=max(wait, 0.0),
        )

    def window(self, frequency: str, period_window: timedelta | None = None) -> timedelta:
        """How far back a digest looks: its period (since the previous delivery), and at least
        digest.window_hours (weekly: a week)."""
        least = window_for(frequency, self.settings)
        return least if period_window is None else max(period_window, least)

    async def _composing_failed(
        self, delivery: Opened | None, exc: Exception, *, last_attempt: bool, extra: dict[str, Any]
    ) -> DeliveryPermanentError | None:
        """A send that broke before the channel: its row is settled (never left 'sending'), and
        the error to raise instead (None: raise the original, the job retries). Preferences that name what does not exist (ConfigError) cannot work
        on a retry: the delivery fails for good at once, as a permanent error, not a crash loop."""
        permanent = isinstance(exc, ConfigError)
        reason = f"{type(exc).__name__}: {exc}"
        if delivery is not None:
            await asyncio.to_thread(
                self.ledger.mark_failed,
                delivery.id,
                error=f"could not compose the digest: {reason}",
                permanent=permanent or last_attempt,
                now=self.clock(),
            )
        if permanent:
            log.warning("digest cannot be composed: %s", exc, extra=extra)
            return DeliveryPermanentError(f"{extra['subscriber']}'s digest cannot be composed: {exc}")
        log.error("digest composition crashed: %s", reason, extra=extra)
        return None

    def _start(self, ref: int | str, period: str, dry_run: bool) -> tuple[Reader, Opened | None, set[int]]:
        """The database half of starting a send, on one connection: the subscriber, what they
        were sent before, and (unless a dry run) their delivery row begun (`DeliveryLedger.begin`).
        The row is not touched for a subscriber who is not active."""
        if not isinstance(ref, int):
            return self._start_by_ref(ref, period, dry_run)
        with self.store.engine.connect() as conn:
            subscriber = self.subscribers.record(ref, connection=conn)
            if subscriber.status != "active" or not subscriber.address:
                return subscriber, None, set()
            delivered = self.ledger.sent_article_ids(subscriber.id, connection=conn)
            if dry_run:
                return subscriber, None, delivered
            delivery = self.ledger.begin(
                subscriber.id,
                period,
                self.channels.name_for_subscriber(subscriber),
                now=self.clock(),
                lease=self.lease,
                connection=conn,
            )
            conn.commit()
        return subscriber, delivery, delivered

    def _start_by_ref(self, ref: str, period: str, dry_run: bool) -> tuple[Reader, Opened | None, set[int]]:
        subscriber = self.subscribers.get(ref)  # an email or an id as text (the CLI)
        assert subscriber.id is not None
        return self._start(subscriber.id, period, dry_run)

    async def _deliver(
        self,
        delivery_id: int,
        subscriber: Reader,
        outgoing: OutgoingDigest,
        article_ids: list[int],
        *,
        last_attempt: bool,
    ) -> Receipt:
        """Hand one message to the channel and move its ledger row; errors are recorded, then raised."""
        assert subscriber.id is not None
        channel = self.channels.for_subscriber(subscriber)
        extra = {"subscriber": subscriber_ref(subscriber), "period": outgoing.period, "channel": channel.name}
        try:
            receipt = await channel.send(outgoing)
        except DeliveryPermanentError as exc:
            await asyncio.to_thread(
                self.record_permanent_failure, delivery_id, subscriber, str(exc), pauses=exc.pauses
            )
            log.warning("delivery failed for good: %s", exc, extra=extra)
            raise
        except DeliveryTransientError as exc:
            await asyncio.to_thread(
                self.ledger.mark_failed, delivery_id, error=str(exc), permanent=last_attempt, now=self.clock()
            )
            log.info("delivery will be retried: %s", exc, extra=extra)
            raise
        except Exception as exc:  # a bug in a channel: the row is settled all the same, the job retries
            error = f"{type(exc).__name__}: {exc}"
            await asyncio.to_thread(
                self.ledger.mark_failed, delivery_id, error=error, permanent=last_attempt, now=self.clock()
            )
            log.error("send crashed: %s", error, extra=extra)
            raise
        await asyncio.to_thread(
            self._record_sent, delivery_id, subscriber, outgoing.message_id, article_ids, self.clock()
        )
        return receipt

    def _record_sent(
        self, delivery_id: int, subscriber: Reader, message_id: str, article_ids: list[int], now: datetime
    ) -> None:
        """Right after the server's 250: the ledger row sent (and the articles into the reader's
        ledger), in its own transaction; a bouncing count starts again from zero."""
        self.ledger.mark_sent(delivery_id, message_id=message_id, article_ids=article_ids, now=now)
        if subscriber.consecutive_bounces and subscriber.id is not None:
            self.subscribers.reset_bounces(subscriber.id)

    # -- a test digest -----------------------------------------------------------------------

    async def send_test(self, address: str, *, dry_run: bool = False) -> SampleDigest:
        """Today's sample digest to `address` through the channel: the day's best across every
        topic (as a reader with no topics gets it), the subject marked as a test. The ledger is
        not touched (no delivery row, no sent articles), so it neither counts as anyone's digest
        nor keeps those articles from a real one. Create the service with a throwaway
        `secret_key` so the links in it do nothing. Raises Delivery*Error as the channel does."""
        now = self.clock()
        reader = Subscriber(id=TEST_READER_ID, email=address, name="", timezone="UTC")
        composer = await self.composer()
        plan = composer.plan(composer.preferences(topics={}, window=self.window("daily")))
        period = f"test-{now:%Y%m%dT%H%M%S}"  # its own Message-ID: a test never collapses a real digest
        outgoing = self.outgoing(reader, period, plan, now=now)
        subject = TEST_SUBJECT_PREFIX + outgoing.rendered.subject
        outgoing = dataclasses.replace(
            outgoing, rendered=dataclasses.replace(outgoing.rendered, subject=subject)
        )
        if dry_run:
            return SampleDigest(outgoing, len(plan.items), None)
        channel = self.channels.for_subscriber(reader)
        receipt = await channel.send(outgoing)
        log.info(
            "test digest sent",
            extra={"to": address, "channel": channel.name, "items": len(plan.items)},
        )
        return SampleDigest(outgoing, len(plan.items), receipt)

    # -- double opt-in -----------------------------------------------------------------------

    async def handle_confirm(self, job: ClaimedJob) -> None:
        """A `send_confirmation` job (bot.delivery.confirmations): the planner's and a first
        sign-up's send the one opt-in mail; a sign-up again's (`again` in its payload) sends that
        one if it was never sent, else a mail of its own."""
        subscriber_id = int(job.payload["subscriber_id"])
        again = job.payload.get("again")
        if again is None:
            await self.send_confirmation(subscriber_id, last_attempt=job.last_attempt)
            return
        statuses = tuple(str(status) for status in job.payload.get("statuses") or ("pending",))
        if await self.send_confirmation(subscriber_id, statuses=statuses, last_attempt=job.last_attempt):
            return
        await self.send_confirmation(
            subscriber_id, period=str(again), statuses=statuses, last_attempt=job.last_attempt
        )

    async def send_confirmation(
        self,
        subscriber_id: int,
        *,
        last_attempt: bool = True,
        period: str = CONFIRM_PERIOD,
        statuses: tuple[str, ...] = ("pending",),
    ) -> bool:
        """Mail a pending subscriber the link that activates them, once (a ledger row of its own).

        A sign-up again's job asks with a `period` of its own ("confirm-…"), and for any
        `statuses` (a known address gets the mail, never a page saying so)."""
        subscriber = await asyncio.to_thread(self.subscribers.get, subscriber_id)
        if subscriber.status not in statuses or not subscriber.email or subscriber.id is None:
            return False
        delivery = await asyncio.to_thread(
            self.ledger.open,
            subscriber.id,
            period,
            self.channels.name_for_subscriber(subscriber),
            article_ids=[],
        )
        assert delivery.id is not None
        if not await asyncio.to_thread(
            self.ledger.begin_send, delivery.id, now=self.clock(), lease=self.lease
        ):
            row = await asyncio.to_thread(self.ledger.get, delivery.id)
            if row.status == "sending":  # another sender holds it: the job comes back after its lease
                raise self.busy(subscriber.email, period, row.lease_until)
            return False
        topics = tuple(
            self.taxonomy.get(slug).name if slug in self.taxonomy else slug for slug in subscriber.topics
        )
        view = ConfirmView(
            subscriber_name=subscriber.name or "",
            subscriber_email=subscriber.email,
            confirm_url=confirm_url(self.settings.web.base_url, self.secret, subscriber.id),
            topics=topics,
            expires_hours=int(CONFIRM_MAX_AGE.total_seconds() // 3600),
            now=self.clock(),
        )
        outgoing = OutgoingDigest(
            to_name=subscriber.name or "",
            to_address=subscriber.email,
            rendered=self.renderer.render_confirm(view),
            message_id=make_message_id(subscriber.id, period, self.domain, key=self.secret, kind="confirm"),
            unsubscribe_url="",  # not list mail: no List-Unsubscribe headers
            period=period,
        )
        await self._deliver(delivery.id, subscriber, outgoing, [], last_attempt=last_attempt)
        channel = self.channels.name_for_subscriber(subscriber)
        log.info("confirmation sent", extra={"subscriber": subscriber.email, "channel": channel})
        return True

    def record_permanent_failure(
        self, delivery_id: int, subscriber: Reader, error: str, *, pauses: bool = False
    ) -> None:
        """A send the server refused for good: the delivery failed, and one more bounce counted;
        or, when the destination itself cannot take digests (`pauses`), the subscriber paused
        with the error as the reason (`subscribers show` says it)."""
        assert subscriber.id is not None
        self.ledger.mark_failed(delivery_id, error=error, permanent=True, now=self.clock())
        if pauses:
            if self.subscribers.pause_for(subscriber.id, error, now=self.clock()):
                log.warning(
                    "subscriber paused: %s",
                    error,
                    extra={"subscriber": subscriber_ref(subscriber), "reason": error},
                )
            return
        if self.subscribers.record_bounce(subscriber.id, limit=self.settings.delivery.bounce_limit):
            log.warning(
                "subscriber is bouncing; no more sends", extra={"subscriber": subscriber_ref(subscriber)}
            )
            if subscriber.email:  # a hard bounce: the address stays suppressed whatever its row does
                SuppressionStore(self.store.engine).add(
                    subscriber.email,
                    "hard_bounce",
                    now=self.clock(),
                    source="delivery",
                    note=error,
                    subscriber_id=subscriber.id,
                )

    # -- rendering ---------------------------------------------------------------------------

    def view(
        self, subscriber: Reader, period: str, plan: DigestPlan, *, now: datetime | None = None
    ) -> DigestView:
        assert subscriber.id is not None
        now = now or self.clock()
        # The links are made "now" as the digest is: the same digest drafted anywhere is the same.
        link = unsubscribe_url(self.settings.web.base_url, self.secret, subscriber.id, issued_at=now)
        return DigestView(
            subscriber_name=subscriber.name or "",
            subscriber_email=subscriber.email or "",
            period=period,
            date=now.astimezone(_zone(subscriber.timezone)).date(),
            items=tuple(self._item_view(item) for item in plan.items),
            preferences_url=preferences_url(
                self.settings.web.base_url, self.secret, subscriber.id, issued_at=now
            ),
            unsubscribe_url=link,
            quiet=not plan.items,
            now=now,
            view_url=view_url(self.settings.web.base_url, self.secret, subscriber.id, period),
        )

    def outgoing(
        self, subscriber: Reader, period: str, plan: DigestPlan, *, now: datetime | None = None
    ) -> OutgoingDigest:
        assert subscriber.id is not None
        view = self.view(subscriber, period, plan, now=now)
        return OutgoingDigest(
            to_name=subscriber.name or "",
            to_address=subscriber.address or subscriber.email or "",
            rendered=self.renderer.render(view),
            message_id=make_message_id(subscriber.id, period, self.domain, key=self.secret),
            unsubscribe_url=view.unsubscribe_url,
            period=period,
            view=view,
        )

    def _item_view(self, item: PlannedItem) -> DigestItemView:
        article = item.article
        key = (
            article.id,
            tuple(match.slug for match in item.ranked.reason.topics),
            tuple(a.id for a in item.also),
        )
        cached = self._item_views.get(key)
        if cached is not None and cached[0] is article:  # the same pool's article, not a reloaded one
            return cached[1]
        if len(self._item_views) >= ITEM_VIEWS_LIMIT:
            self._item_views.clear()
        view = self._new_item_view(item)
        self._item_views[key] = (article, view)
        return view

    def _new_item_view(self, item: PlannedItem) -> DigestItemView:
        article, reason = item.article, item.ranked.reason
        names = [self.taxonomy.get(match.slug).name for match in reason.topics]
        kinds = [
            topic.name
            for topic in (self.taxonomy.get(m.slug) for m in article.topics if m.slug in self.taxonomy)
            if topic.kind == "kind"
        ]
        chip = kinds[0] if kinds else (names[0] if names else "News")
        return DigestItemView(
            title=article.title,
            url=article.url or "",
            source=article.source_name,
            author=article.author,
            published=article.published,
            excerpt=article.excerpt,
            chip=chip,
            reason=("because you follow " + " and ".join(names)) if names else "widely covered today",
            also_covered_by=tuple((a.source_name, a.url) for a in item.also if a.url),
            image_url=article.image_url,
        )


def send_job_key(subscriber_id: int, period: str, channel: str) -> str:
    """The unique key of a period's send job: one per subscriber, period and channel."""
    return f"{SEND_TASK}:{subscriber_id}:{period}:{channel}"


def send_job(subscriber_id: int, period: Mapping[str, str], *, channel: str, max_attempts: int) -> NewJob:
    """The `send_digest` job for one subscriber and one period (`_period_payload`)."""
    return NewJob(
        SEND_TASK,
        {"subscriber_id": subscriber_id, **period},
        unique_key=send_job_key(subscriber_id, period["period"], channel),
        max_attempts=max_attempts,
    )


def _period_payload(due: DuePeriod) -> dict[str, str]:
    return {
        "period": due.period,
        "window_start": due.window_start.isoformat(),
        "window_end": due.window_end.isoformat(),
    }


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)
