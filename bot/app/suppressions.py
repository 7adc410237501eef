"""The verbs of suppressions: the addresses no digest goes to, for every door.

An unsubscribe (the web's POST /u/…, the `unsubscribe` verb) and a hard bounce suppress the
address, independent of subscriber rows and syncs. The operator lists and removes them (`flarestart
subscribers suppressions …`); the reader lifts their own through the web: the unsubscribe page's
"subscribe again" mails a re-opt-in link (`request_reoptin`), and only a POST on that link lifts
the suppression (`reoptin`), as double opt-in does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.app.base import AppBase
from bot.errors import NotFoundError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bot.app.types import Subscriber, SuppressedEntry
    from bot.store.suppressions import SuppressionRecord, SuppressionStore
    from bot.subscribers.files import SubscriberSpec
    from bot.subscribers.sync import SyncReport

# At most one "subscribe again" mail per address in this time, however often the button is pressed.
REOPTIN_INTERVAL = timedelta(minutes=10)
# A link made this long before a suppression is for an earlier one (ids may be reused); the slack
# covers clocks of other hosts, as the web's STALE_SLACK does for subscriber rows.
LINK_SLACK = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class RemovedSuppression:
    suppression: SuppressionRecord
    subscriber_status: str | None  # the address's subscriber row now (None: there is none)


@dataclass(frozen=True, slots=True)
class ReoptinRequest:
    """What "subscribe again" did: "sent" (a mail with the link), "throttled" (one went out
    lately; nothing sent), or "failed" (the mail could not be sent now; `detail` says why)."""

    outcome: str
    address: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Reoptin:
    """What a re-opt-in link's POST did: "subscribed" (lifted), or "nothing" (not suppressed,
    or by a newer suppression this link was not made for)."""

    outcome: str
    address: str | None
    reactivated: bool = False  # a subscriber row went from unsubscribed/bouncing to active


class SuppressionVerbs(AppBase):
    @property
    def suppressions(self) -> SuppressionStore:
        from bot.store.suppressions import SuppressionStore

        return SuppressionStore(self.store.engine)

    def list_suppressions(self) -> list[SuppressionRecord]:
        """Every suppressed address, by address."""
        return self.suppressions.list()

    def suppression(self, address: str) -> SuppressionRecord | None:
        return self.suppressions.get(address)

    def remove_suppression(self, address: str) -> RemovedSuppression:
        """The operator lifts a suppression (NotFoundError when the address has none). A subscriber
        row keeps its status: an unsubscribed one stays so until the reader opts in again."""
        from bot.store.suppressions import normalise_address

        removed = self.suppressions.remove(address)
        if removed is None:
            raise NotFoundError(
                f"{normalise_address(address)!r} is not suppressed (see `flarestart subscribers "
                "suppressions list`)"
            )
        row = self._row_for(removed.address)
        return RemovedSuppression(removed, row.status if row is not None else None)

    def status_for_new(self, address: str, wanted: str) -> str:
        """The status a new subscriber of `address` gets: `wanted`, unless the address is
        suppressed (then unsubscribed, or bouncing after a hard bounce): no door re-subscribes it."""
        found = self.suppressions.get(address)
        if found is None:
            return wanted
        return "bouncing" if found.reason == "hard_bounce" else "unsubscribed"

    def refuse_suppressed(self, address: str, *, what: str) -> None:
        """ConfigError when `address` is suppressed: `what` (a test digest, say) is not sent to it."""
        from bot.errors import ConfigError

        found = self.suppressions.get(address)
        if found is not None:
            raise ConfigError(
                f"{found.address} is suppressed ({found.reason}): {what} is not sent to it; see "
                "`flarestart subscribers suppressions list`"
            )

    def suppress_unsubscribed(self, subscriber: Subscriber, *, source: str) -> bool:
        """The reader asked to stop: their address is suppressed (True when newly)."""
        if not subscriber.email:
            return False
        return self.suppressions.add(
            subscriber.email, "unsubscribed", now=self.now(), source=source, subscriber_id=subscriber.id
        )

    def suppression_for_link(self, subscriber_id: int, issued_at: datetime) -> SuppressionRecord | None:
        """The suppression an old unsubscribe link is about when its subscriber row was deleted or
        made anew since (a sync removed and re-added it): recorded for that row after the link."""
        return self.suppressions.for_old_link(subscriber_id, issued_at - LINK_SLACK)

    def lift_on_confirm(self, address: str, issued_at: datetime) -> bool:
        """Double opt-in from the sign-up form is the web flow a suppressed reader comes back by:
        a confirmation link made after their address was suppressed lifts it (an older link is
        not an answer to this suppression). True when lifted."""
        found = self.suppressions.get(address)
        if found is None or found.created_at > issued_at + LINK_SLACK:
            return False
        return self.suppressions.lift(found.id, made_before=issued_at + LINK_SLACK)

    def reoptin_suppression(self, suppression_id: int, issued_at: datetime) -> SuppressionRecord | None:
        """The suppression a re-opt-in link lifts, if it still stands (None: lifted already)."""
        found = self.suppressions.get_by_id(suppression_id)
        if found is None or found.created_at > issued_at + LINK_SLACK:
            return None  # gone, or a newer suppression that reuses the id: not this link's
        return found

    async def request_reoptin(self, suppression: SuppressionRecord) -> ReoptinRequest:
        """Mail the suppressed address a link that lifts its suppression (double opt-in): at most
        one per REOPTIN_INTERVAL, so the button cannot be used to flood an inbox."""
        import asyncio
        import logging

        from bot.channels.base import OutgoingDigest
        from bot.channels.email import make_message_id, message_id_domain
        from bot.digest.render import DigestRenderer
        from bot.digest.view import ConfirmView
        from bot.errors import DeliveryPermanentError, DeliveryTransientError
        from bot.links.secret import resolve_secret
        from bot.links.tokens import CONFIRM_MAX_AGE, again_url
        from bot.store.models import Subscriber

        log = logging.getLogger(__name__)
        now = self.now()
        turn = await asyncio.to_thread(
            self.suppressions.take_reoptin_turn, suppression.id, now=now, every=REOPTIN_INTERVAL
        )
        who = {"subscriber": suppression.address, "suppression": suppression.id}
        if not turn:
            log.info("subscribe-again mail not sent: one went out lately", extra=who)
            return ReoptinRequest("throttled", suppression.address)
        settings, secret = self.settings, resolve_secret(self.settings)
        reader = Subscriber(
            id=suppression.subscriber_id or suppression.id,
            email=suppression.address,
            address=suppression.address,
        )
        row = await asyncio.to_thread(self._row_for, suppression.address)
        view = ConfirmView(
            subscriber_name=row.name if row is not None else "",
            subscriber_email=suppression.address,
            confirm_url=again_url(settings.web.base_url, secret, suppression.id, issued_at=now),
            expires_hours=int(CONFIRM_MAX_AGE.total_seconds() // 3600),
            now=now,
        )
        period = f"again-{now:%Y%m%dT%H%M%S}"
        outgoing = OutgoingDigest(
            to_name=view.subscriber_name,
            to_address=suppression.address,
            rendered=DigestRenderer(settings.email, base_url=settings.web.base_url).render_confirm(view),
            message_id=make_message_id(
                suppression.id, period, message_id_domain(settings.email), key=secret, kind="again"
            ),
            unsubscribe_url="",  # not list mail
            period=period,
        )
        registry = self._channels()
        channel = registry.for_subscriber(reader)
        try:
            await channel.send(outgoing)
        except (DeliveryTransientError, DeliveryPermanentError) as exc:
            log.warning("subscribe-again mail failed: %s", exc, extra={**who, "channel": channel.name})
            await asyncio.to_thread(self.suppressions.give_back_reoptin_turn, suppression.id, taken_at=now)
            return ReoptinRequest("failed", suppression.address, str(exc))
        finally:
            await registry.aclose()
        log.info("subscribe-again mail sent", extra={**who, "channel": channel.name})
        return ReoptinRequest("sent", suppression.address)

    def reoptin(self, suppression_id: int, issued_at: datetime) -> Reoptin:
        """The re-opt-in link's POST: the suppression is lifted and the address's subscriber row,
        if unsubscribed or bouncing, is active again. Idempotent: a second POST finds nothing."""
        found = self.reoptin_suppression(suppression_id, issued_at)
        if found is None or not self.suppressions.lift(found.id, made_before=issued_at + LINK_SLACK):
            return Reoptin("nothing", found.address if found is not None else None)
        row = self._row_for(found.address)
        reactivated = False
        if row is not None and row.id is not None and row.status in ("unsubscribed", "bouncing"):
            from bot.errors import StatusChangedError

            try:
                self.subscribers.set_status(row.id, "active", now=self.now(), expect=(row.status,))
                reactivated = True
            except StatusChangedError:  # changed meanwhile (paused, say): theirs to keep
                pass
        return Reoptin("subscribed", found.address, reactivated)

    def suppressed_entries(
        self, specs: Sequence[SubscriberSpec], report: SyncReport
    ) -> tuple[SuppressedEntry, ...]:
        """The synced entries whose address is suppressed, each with its file:line, logged."""
        import logging

        from bot.app.types import SuppressedEntry

        log = logging.getLogger(__name__)
        found = []
        for spec in specs:
            if spec.email is None:  # a chat destination: suppressions are of email addresses
                continue
            reason = report.suppressed.get(spec.email)
            if reason is None:
                continue
            entry = SuppressedEntry(spec.email, _entry_place(spec.origin, spec.email), reason)
            log.warning(
                "subscriber file entry is suppressed; nothing is sent to it",
                extra={"subscriber": entry.email, "where": entry.where, "reason": reason},
            )
            found.append(entry)
        return tuple(found)

    def _row_for(self, address: str) -> Subscriber | None:
        try:
            return self.subscribers.get(address)
        except NotFoundError:
            return None


def _entry_place(origin: str, email: str) -> str:
    """`path:line` of a file subscriber's entry: the first line naming its address (tomllib keeps
    no line numbers); the path alone when the file cannot be read or names it otherwise."""
    from pathlib import Path

    path = origin.removeprefix("file:")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return path
    for number, line in enumerate(text.splitlines(), start=1):
        if email in line.lower():
            return f"{path}:{number}"
    return path
