"""The verbs of digests: preview (for preferences or a subscriber), send a period, send a test,
list and retry deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.app.suppressions import SuppressionVerbs
from bot.errors import ConfigError
from bot.types import subscriber_ref

if TYPE_CHECKING:
    from bot.app.delivery import SampleSend, SendOutcome
    from bot.app.types import (
        DeliveryListing,
        Preview,
        RenderedPreview,
        Subscriber,
    )
    from bot.channels.base import Channel, OutgoingDigest
    from bot.config import Settings
    from bot.delivery.retry import RetryOutcome
    from bot.delivery.service import SendResult


PREVIEW_ADDRESS = "preview@example.com"  # the stand-in reader of a preview of preferences
STAND_IN_ID = 1  # links need an id; a throwaway key (see render_preview) keeps them from working


class DigestVerbs(SuppressionVerbs):
    def preview_subscriber(self, ref: str | int, *, max_items: int | None = None) -> Preview:
        """The digest `ref` (email or id) would get now: their preferences, minus what they were sent."""
        from dataclasses import replace

        from bot.app.types import Preview
        from bot.delivery.ledger import DeliveryLedger
        from bot.digest.compose import Composer

        now = self.now()
        row = self.subscribers.get(ref)
        composer = Composer(self.store, self.settings, self.taxonomy, now=now)
        prefs = composer.preferences_of(row)
        if max_items:
            prefs = replace(prefs, max_items=max_items)
        delivered = DeliveryLedger(self.store.engine).sent_article_ids(row.id or 0)
        plan = composer.plan(prefs, delivered=delivered)
        account = composer.account(prefs, plan, delivered=delivered)
        upcoming = self.upcoming_deliveries([row]).get(row.id or 0)
        label = row.name or subscriber_ref(row)
        return Preview(label, row, False, plan, account, self.taxonomy, upcoming, now)

    def preview_preferences(
        self, topics: Sequence[str], *, mute: Sequence[str] = (), max_items: int | None = None
    ) -> Preview:
        """The digest a reader following `topics` would get now; `mute` takes known topics (muted
        as topics) and any other word (muted as a keyword)."""
        from bot.app.types import Preview
        from bot.digest.compose import Composer, window_for
        from bot.store.models import Subscriber

        if not topics:
            raise ConfigError("preview needs a SUBSCRIBER or --topics (e.g. --topics python,ai)")
        now = self.now()
        taxonomy = self.taxonomy
        composer = Composer(self.store, self.settings, taxonomy, now=now)
        muted_topics = [w for w in mute if w.casefold() in taxonomy]
        prefs = composer.preferences(
            topics={slug: 1.0 for slug in topics},
            muted_topics=muted_topics,
            muted_keywords=[w for w in mute if w not in muted_topics],
            max_items=max_items,
            window=window_for("daily", self.settings),
        )
        plan = composer.plan(prefs, delivered=set())
        account = composer.account(prefs, plan, delivered=set())
        reader = Subscriber(id=STAND_IN_ID, email=PREVIEW_ADDRESS)  # who its HTML is addressed to
        return Preview(", ".join(topics), reader, True, plan, account, taxonomy, None, now)

    def render_preview(self, preview: Preview) -> RenderedPreview:
        """The preview's email exactly as DigestService sends it. A stand-in's links are signed
        with a throwaway key, so its unsubscribe link never works for whoever is subscriber #1."""
        from bot.app.types import RenderedPreview

        rendered = self._preview_outgoing(preview).rendered
        return RenderedPreview(rendered.subject, rendered.html, len(preview.plan.items))

    def render_slack_preview(self, preview: Preview) -> list[dict[str, Any]]:
        """The preview as the Slack messages it is posted as (each `chat.postMessage`'s Block Kit
        payload, parts in order), with the slack.template_dir and slack.thread settings."""
        from bot.digest.slack import SlackRenderer

        view = self._preview_outgoing(preview).view
        assert view is not None
        renderer = SlackRenderer(
            template_dir=self.settings.slack.template_dir, thread=self.settings.slack.thread
        )
        return [message.payload() for message in renderer.render(view)]

    def render_discord_preview(self, preview: Preview) -> list[dict[str, Any]]:
        """The preview as the Discord messages it is posted as (bodies in order, before the poster
        adds its nonce and marker line), with the discord.template_dir setting."""
        from bot.digest.discord import DiscordRenderer

        view = self._preview_outgoing(preview).view
        assert view is not None
        renderer = DiscordRenderer(template_dir=self.settings.discord.template_dir)
        return [message.payload() for message in renderer.render(view)]

    def _preview_outgoing(self, preview: Preview) -> OutgoingDigest:
        import secrets
        from zoneinfo import ZoneInfo

        from bot.delivery.service import DigestService
        from bot.subscribers.schedule import current_period

        settings = self.settings
        if preview.stand_in:
            settings = settings.model_copy(update={"secret_key": secrets.token_hex(32)})
        # The registry's channel is never made: the service only renders here.
        service = DigestService(
            self.store, settings, self._channels(settings), clock=lambda: preview.now, taxonomy=self.taxonomy
        )
        reader = preview.reader
        due = None if preview.stand_in else service.due(reader, preview.now)
        today = preview.now.astimezone(ZoneInfo(reader.timezone)).date()
        period = due.period if due else current_period(reader.frequency, today) or today.isoformat()
        return service.outgoing(reader, period, preview.plan)

    def send(self, ref: str | int, *, force: bool = False, dry_run: bool = False) -> SendOutcome:
        """Send one active subscriber's digest for the period due now (with `force`, the current
        one), at most once; `dry_run` composes and renders only. Raises NothingToSendError when
        there is none to send, Delivery*Error as the channel does."""
        import asyncio

        from bot.app.delivery import send_one
        from bot.store.subscribers import SubscriberError

        row = self.subscribers.get(ref)
        who = subscriber_ref(row)
        if row.status != "active":
            hint = (
                "; `flarestart subscribers resume` sends to them again"
                if row.status != "unsubscribed"
                else ""
            )
            raise SubscriberError(f"{who} is {row.status}, so no digest goes to them{hint}")
        if not row.address:
            raise SubscriberError(f"subscriber #{row.id} has no destination to send to")
        return asyncio.run(send_one(self.store, self.settings, row, force=force, dry_run=dry_run))

    def placeholder_warnings(self) -> list[str]:
        """Settings still at the shipped placeholders that a real mail must not carry (SMTP only)."""
        from bot.delivery.service import placeholders

        return placeholders(self.settings) if self.settings.email.smtp_url else []

    def send_test(self, address: str, *, dry_run: bool = False) -> SampleSend:
        """Today's sample digest to `address` through the configured channel; records nothing.
        Its links are signed with a throwaway key: they must not work for whoever is subscriber #1."""
        import asyncio
        import secrets

        from bot.app.delivery import run_test

        address = self.test_address(address)
        throwaway = self.settings.model_copy(update={"secret_key": secrets.token_hex(32)})
        return asyncio.run(run_test(self.store, throwaway, address, dry_run=dry_run))

    def test_address(self, address: str) -> str:
        """`address` normalised for `send_test`, or a ConfigError saying what is wrong with it."""
        from bot.subscribers.files import normalize_email

        try:
            normalized = normalize_email(address)
        except ValueError as exc:
            raise ConfigError(f"--test: {exc}") from None
        self.refuse_suppressed(normalized, what="a test digest")
        return normalized

    def list_deliveries(
        self, *, status: str | None = None, subscriber: str | None = None, limit: int = 50
    ) -> DeliveryListing:
        """Ledger rows, newest first, with each subscriber's address and the counts of all rows."""
        from bot.app.types import DeliveryListing
        from bot.delivery.ledger import STATUSES, DeliveryLedger

        if status is not None and status not in STATUSES:
            raise ConfigError(f"--status {status!r}: expected one of {', '.join(STATUSES)}")
        subscribers = self.subscribers
        wanted = subscribers.get(subscriber).id if subscriber is not None else None
        ledger = DeliveryLedger(self.store.engine)
        rows = ledger.list(status=status, subscriber_id=wanted, limit=limit)
        emails = {s.id or 0: subscriber_ref(s) for s in subscribers.list()}
        return DeliveryListing(tuple(rows), emails, ledger.counts(), STATUSES)

    def retry_deliveries(
        self,
        *,
        since: timedelta,
        subscriber: str | None = None,
        period: str | None = None,
        channel: str | None = None,
        dry_run: bool = False,
    ) -> list[RetryOutcome]:
        """Put digests that failed for good within `since` back in the queue (`flarestart run`
        sends them); subscribers who are not active are skipped."""
        import asyncio

        from bot.delivery.retry import retry_failed
        from bot.delivery.service import DigestService

        cutoff = self.now() - since
        wanted = self.subscribers.get(subscriber).id if subscriber is not None else None
        channels = self._channels()
        try:
            service = DigestService(self.store, self.settings, channels)
            return retry_failed(
                service, since=cutoff, subscriber_id=wanted, period=period, channel=channel, dry_run=dry_run
            )
        finally:
            asyncio.run(channels.aclose())

    def current_period(self, subscriber: Subscriber, now: datetime | None = None) -> str:
        """The period `now` falls in for `subscriber` (a delivery day or not): what `send --now` sends."""
        from zoneinfo import ZoneInfo

        from bot.subscribers.schedule import current_period

        today = (now or self.now()).astimezone(ZoneInfo(subscriber.timezone)).date()
        return current_period(subscriber.frequency, today) or today.isoformat()

    async def deliver(
        self,
        subscriber_id: int,
        period: str,
        *,
        through: Channel | None = None,
        settings: Settings | None = None,
    ) -> SendResult:
        """Send one subscriber's digest for `period` through `through` (the demo's loopback SMTP)
        or, without it, the channel serving their destination, at most once, with `settings` in
        place of the layer's (the demo's SMTP server or Slack stand-in)."""
        from bot.delivery.service import DigestService

        channels = through if through is not None else self._channels(settings)
        service = DigestService(self.store, settings or self.settings, channels)
        try:
            return await service.send(subscriber_id, period)
        finally:
            if through is None:
                await service.channels.aclose()
