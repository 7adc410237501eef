"""From due periods to digests in inboxes: plan the sends, then send each one exactly once.

`plan_due` runs on the clock: for each active subscriber whose local delivery moment has passed
(within the catch-up window) it enqueues one `send_digest` job, deduplicated by a unique key, so
any number of workers planning at once still create one job. `send_digest` runs on a worker:
ledger row → compose → render → channel → ledger. A retried job finds the ledger row and resumes;
a sent row is never sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.channels.base import Channel, OutgoingDigest, Receipt
from bot.channels.email import SmtpChannel, make_message_id, message_id_domain
from bot.channels.outbox import OutboxChannel
from bot.config import Settings
from bot.delivery.ledger import DeliveryLedger
from bot.digest.compose import Composer, DigestPlan, PlannedItem
from bot.digest.render import DigestRenderer
from bot.digest.view import ConfirmView, DigestItemView, DigestView
from bot.errors import DeliveryPermanentError, DeliveryTransientError
from bot.jobs.queue import ClaimedJob, JobQueue
from bot.ranking.setup import taxonomy_for
from bot.ranking.topics import Taxonomy
from bot.store import Store
from bot.store.models import Subscriber
from bot.store.subscribers import SubscriberStore
from bot.store.types import utcnow
from bot.subscribers.schedule import DuePeriod, due_period, parse_delivery_time
from bot.web.secret import resolve_secret
from bot.web.tokens import CONFIRM_MAX_AGE, confirm_url, unsubscribe_url

log = logging.getLogger(__name__)

PLAN_TASK = "plan_digests"
SEND_TASK = "send_digest"
CONFIRM_TASK = "send_confirmation"
CONFIRM_PERIOD = "confirm"  # the ledger period of the one double opt-in mail
COMPOSER_TTL = 300.0  # seconds one candidate pool serves before it is rebuilt with new articles


def make_channel(settings: Settings) -> Channel:
    """SMTP when SMTP_URL is set; otherwise the outbox in the data folder, so digests are real files."""
    if settings.email.smtp_url:
        return SmtpChannel(settings.email)
    return OutboxChannel(settings.outbox_dir, settings=settings.email)


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
        channel: Channel,
        *,
        clock: Callable[[], datetime] = utcnow,
        taxonomy: Taxonomy | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.channel = channel
        self.clock = clock
        self.subscribers = SubscriberStore(store.engine)
        self.ledger = DeliveryLedger(store.engine)
        self.queue = JobQueue(store.engine)
        self.taxonomy = taxonomy or taxonomy_for(settings)
        self.renderer = DigestRenderer(settings.email, base_url=settings.web.base_url)
        self.secret = resolve_secret(settings)
        self.domain = message_id_domain(settings.email)
        self._composer: Composer | None = None
        self._composer_built = 0.0
        self._composer_lock = asyncio.Lock()
        # Set by the daemon once its first fetch cycle is done: planning before it would compose
        # digests from yesterday's store and skip today's as quiet.
        self.sources_ready = asyncio.Event()
        self.sources_ready.set()

    # -- planning ----------------------------------------------------------------------------

    def due(self, subscriber: Subscriber, now: datetime) -> DuePeriod | None:
        return due_period(
            now=now,
            timezone=subscriber.timezone,
            delivery_time=parse_delivery_time(subscriber.delivery_time),
            frequency=subscriber.frequency,
            catch_up=timedelta(hours=self.settings.delivery.catch_up_hours),
        )

    def plan_due(self) -> int:
        """Enqueue this period's send for every active subscriber who is due, and the confirmation
        mail for every pending one; returns how many jobs are new."""
        now = self.clock()
        created = 0
        for subscriber in self.subscribers.active():
            if not subscriber.email or subscriber.id is None:
                continue
            due = self.due(subscriber, now)
            if due is None:
                continue
            job = self.queue.enqueue(
                SEND_TASK,
                {
                    "subscriber_id": subscriber.id,
                    "period": due.period,
                    "window_start": due.window_start.isoformat(),
                    "window_end": due.window_end.isoformat(),
                },
                unique_key=f"{SEND_TASK}:{subscriber.id}:{due.period}:{self.channel.name}",
                max_attempts=self.settings.delivery.max_attempts,
            )
            created += job is not None
        for subscriber in self.subscribers.list(status="pending"):
            if subscriber.email and subscriber.id is not None:
                job = self.queue.enqueue(
                    CONFIRM_TASK,
                    {"subscriber_id": subscriber.id},
                    unique_key=f"{CONFIRM_TASK}:{subscriber.id}:{self.channel.name}",
                    max_attempts=self.settings.delivery.max_attempts,
                )
                created += job is not None
        if created:
            log.info("digests planned", extra={"count": created, "channel": self.channel.name})
        return created

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
            if self._composer is None or time.monotonic() - self._composer_built > COMPOSER_TTL:
                self._composer = await asyncio.to_thread(
                    Composer, self.store, self.settings, self.taxonomy, now=self.clock()
                )
                self._composer_built = time.monotonic()
            return self._composer

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
        subscriber = await asyncio.to_thread(self.subscribers.get, subscriber_id)
        assert subscriber.id is not None
        who = subscriber.email or str(subscriber.id)
        extra = {"subscriber": who, "period": period, "channel": self.channel.name}
        if subscriber.status != "active" or not subscriber.email:
            log.info("not sending: subscriber is %s", subscriber.status, extra=extra)
            return SendResult("skipped", who, period, 0, f"subscriber is {subscriber.status}")
        delivery = (
            await asyncio.to_thread(
                self.ledger.open, subscriber.id, period, self.channel.name, article_ids=[]
            )
            if not dry_run
            else None
        )
        if delivery is not None:
            assert delivery.id is not None
            if not await asyncio.to_thread(self.ledger.begin_send, delivery.id, now=self.clock()):
                return SendResult("already-sent", who, period, 0, f"delivery is {delivery.status}")
        composer = await self.composer()
        delivered = await asyncio.to_thread(self.ledger.sent_article_ids, subscriber.id)
        plan = composer.plan(composer.preferences_of(subscriber, window=window), delivered=delivered)
        if not plan.items and self.settings.email.quiet_day == "skip":
            reason = plan.empty_reason or "nothing new matched"
            if delivery is not None and delivery.id is not None:
                await asyncio.to_thread(
                    self.ledger.mark_skipped, delivery.id, reason=reason, now=self.clock()
                )
            log.info("quiet period, nothing sent: %s", reason, extra=extra)
            return SendResult("skipped", who, period, 0, reason)
        outgoing = self.outgoing(subscriber, period, plan)
        if dry_run:
            return SendResult("dry-run", who, period, len(plan.items), outgoing.rendered.subject)
        assert delivery is not None and delivery.id is not None
        article_ids = [item.article.id for item in plan.items]
        receipt = await self._deliver(
            delivery.id, subscriber, outgoing, article_ids, last_attempt=last_attempt
        )
        log.info("digest sent", extra={**extra, "items": len(article_ids), "message_id": outgoing.message_id})
        return SendResult("sent", who, period, len(article_ids), receipt.detail, receipt)

    async def _deliver(
        self,
        delivery_id: int,
        subscriber: Subscriber,
        outgoing: OutgoingDigest,
        article_ids: list[int],
        *,
        last_attempt: bool,
    ) -> Receipt:
        """Hand one message to the channel and move its ledger row; errors are recorded, then raised."""
        assert subscriber.id is not None
        extra = {"subscriber": subscriber.email, "period": outgoing.period, "channel": self.channel.name}
        try:
            receipt = await self.channel.send(outgoing)
        except DeliveryPermanentError as exc:
            await asyncio.to_thread(self._permanent_failure, delivery_id, subscriber, str(exc))
            log.warning("delivery failed for good: %s", exc, extra=extra)
            raise
        except DeliveryTransientError as exc:
            await asyncio.to_thread(
                self.ledger.mark_failed, delivery_id, error=str(exc), permanent=last_attempt, now=self.clock()
            )
            log.info("delivery will be retried: %s", exc, extra=extra)
            raise
        await asyncio.to_thread(
            self.ledger.mark_sent,
            delivery_id,
            message_id=outgoing.message_id,
            article_ids=article_ids,
            now=self.clock(),
        )
        if subscriber.consecutive_bounces:
            await asyncio.to_thread(self.subscribers.reset_bounces, subscriber.id)
        return receipt

    # -- double opt-in -----------------------------------------------------------------------

    async def handle_confirm(self, job: ClaimedJob) -> None:
        await self.send_confirmation(int(job.payload["subscriber_id"]), last_attempt=job.last_attempt)

    async def send_confirmation(self, subscriber_id: int, *, last_attempt: bool = True) -> bool:
        """Mail a pending subscriber the link that activates them, once (a ledger row of its own)."""
        subscriber = await asyncio.to_thread(self.subscribers.get, subscriber_id)
        if subscriber.status != "pending" or not subscriber.email or subscriber.id is None:
            return False
        delivery = await asyncio.to_thread(
            self.ledger.open, subscriber.id, CONFIRM_PERIOD, self.channel.name, article_ids=[]
        )
        assert delivery.id is not None
        if not await asyncio.to_thread(self.ledger.begin_send, delivery.id, now=self.clock()):
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
            message_id=make_message_id(
                subscriber.id, CONFIRM_PERIOD, self.domain, key=self.secret, kind="confirm"
            ),
            unsubscribe_url="",  # not list mail: no List-Unsubscribe headers
            period=CONFIRM_PERIOD,
        )
        await self._deliver(delivery.id, subscriber, outgoing, [], last_attempt=last_attempt)
        log.info("confirmation sent", extra={"subscriber": subscriber.email, "channel": self.channel.name})
        return True

    def _permanent_failure(self, delivery_id: int, subscriber: Subscriber, error: str) -> None:
        assert subscriber.id is not None
        self.ledger.mark_failed(delivery_id, error=error, permanent=True, now=self.clock())
        if self.subscribers.record_bounce(subscriber.id, limit=self.settings.delivery.bounce_limit):
            log.warning("subscriber is bouncing; no more sends", extra={"subscriber": subscriber.email})

    # -- rendering ---------------------------------------------------------------------------

    def view(self, subscriber: Subscriber, period: str, plan: DigestPlan) -> DigestView:
        assert subscriber.id is not None
        now = self.clock()
        link = unsubscribe_url(self.settings.web.base_url, self.secret, subscriber.id)
        return DigestView(
            subscriber_name=subscriber.name or "",
            subscriber_email=subscriber.email or "",
            period=period,
            date=now.astimezone(_zone(subscriber.timezone)).date(),
            items=tuple(self._item_view(item) for item in plan.items),
            preferences_url=link,
            unsubscribe_url=link,
            quiet=not plan.items,
            now=now,
        )

    def outgoing(self, subscriber: Subscriber, period: str, plan: DigestPlan) -> OutgoingDigest:
        assert subscriber.id is not None
        view = self.view(subscriber, period, plan)
        return OutgoingDigest(
            to_name=subscriber.name or "",
            to_address=subscriber.email or "",
            rendered=self.renderer.render(view),
            message_id=make_message_id(subscriber.id, period, self.domain, key=self.secret),
            unsubscribe_url=view.unsubscribe_url,
            period=period,
        )

    def _item_view(self, item: PlannedItem) -> DigestItemView:
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


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
