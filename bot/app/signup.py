"""Readers sign themselves up: the sign-up form's choices, the pending subscriber, the opt-in mail.

Every door that lets a stranger ask for the digest (the web page, the embeddable form) comes
here. What the door answers never depends on whether the address is known: a new address becomes
a pending subscriber, a known one is left as it is (or, when it had unsubscribed, made pending
again with the new choices), and either way the answer is "check your inbox" and the mail goes
to the address. Nothing is active before its owner presses the button in that mail (double
opt-in); an unsubscribed address comes back only that way.

The database half (`sign_up`) is quick and synchronous; the mail (`send_confirmation`) is sent
after the door has answered. Mails go through the delivery ledger (one row per confirmation),
so none is sent twice; one lost to a crash is sent by the daemon's planner, which mails every
pending subscriber who has not had theirs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.app.preferences import PreferencesForm, TopicGroup, first
from bot.errors import StatusChangedError

if TYPE_CHECKING:
    from bot.app.core import FlareStart
    from bot.delivery.service import DigestService

log = logging.getLogger(__name__)

ORIGIN = "web"
# The mail of a known address, or of a reader who signs up again: a ledger period of its own each
# time (the first one is the planner's, "confirm"); at most 20 characters like every period.
AGAIN_PREFIX = "confirm-"
MAX_TOPICS = 60
# Fields of the form as labels show them, for messages that name the field.
LABELS = {
    "email": "Email address",
    "topics": "Topics",
    "delivery_time": "Delivery time",
    "timezone": "Time zone",
}


@dataclass(frozen=True, slots=True)
class SignupForm:
    """The form's values as text: as the page shows them first, or as submitted."""

    email: str = ""
    topics: tuple[str, ...] = ()
    delivery_time: str = "07:00"
    timezone: str = "UTC"

    @classmethod
    def submitted(cls, fields: Mapping[str, list[str]]) -> SignupForm:
        topics = tuple(dict.fromkeys(v.strip() for v in fields.get("topics", ()) if v.strip()))
        return cls(
            email=first(fields, "email").strip()[:320],
            topics=topics[: MAX_TOPICS + 1],
            delivery_time=first(fields, "delivery_time").strip()[:16] or "07:00",
            timezone=first(fields, "timezone").strip()[:64] or "UTC",
        )


@dataclass(frozen=True, slots=True)
class Accepted:
    """The door answers "check your inbox"; `mail` is whom to mail and why (None: nobody)."""

    mail: PendingMail | None


@dataclass(frozen=True, slots=True)
class PendingMail:
    subscriber_id: int
    reason: str  # new | pending-again | back | known (the log's words, never the page's)


@dataclass(frozen=True, slots=True)
class Rejected:
    """The form again with a message per field (400): nothing was stored, nobody mailed."""

    form: SignupForm
    errors: Mapping[str, str] = field(default_factory=dict)


SignupOutcome = Accepted | Rejected


class Signups:
    """The sign-up desk of one FlareStart (opened by the door)."""

    def __init__(self, app: FlareStart) -> None:
        self.app = app
        self.editor = app.preferences_editor()
        self.groups: tuple[TopicGroup, ...] = self.editor.groups
        self.zones: tuple[str, ...] = self.editor.zones
        known = {choice.slug for group in self.groups for choice in group.topics}
        self.preselected = tuple(s for s in app.settings.web.signup_topics if s in known)
        self._service: DigestService | None = None
        # SQLite has one writer, and a writer that finds it busy sleeps in SQLite's back-off steps
        # (up to 100 ms each): under a burst, sign-ups queue here instead and each goes the moment
        # the one before is done. PostgreSQL takes them side by side.
        self._one_writer = threading.Lock() if app.store.engine.dialect.name == "sqlite" else None

    def blank_form(self) -> SignupForm:
        return SignupForm(topics=self.preselected)

    def page_context(self, form: SignupForm, errors: Mapping[str, str] | None = None) -> dict[str, Any]:
        return {
            "form": form,
            "errors": dict(errors or {}),
            "labels": LABELS,
            "groups": self.groups,
            "zones": self.zones,
        }

    # -- the database half ---------------------------------------------------------------------

    def check(self, form: SignupForm) -> tuple[dict[str, Any], dict[str, str]]:
        """The subscriber's columns, or a message per field that is wrong (every field at once,
        in the words of the preferences page, whose validator this is)."""
        from bot.store.models import Subscriber
        from bot.subscribers.files import DEFAULT_MAX_ITEMS, make_spec, normalize_email
        from bot.subscribers.schedule import WEEKDAYS

        errors: dict[str, str] = {}
        try:
            email = normalize_email(form.email)
        except ValueError:
            email = ""
            errors["email"] = "Enter an email address like name@example.com."
        if len(form.topics) > MAX_TOPICS:
            errors["topics"] = f"Choose at most {MAX_TOPICS} topics."
            return {}, errors
        wanted = PreferencesForm(
            topics=form.topics,
            muted_topics=(),
            muted_keywords="",
            delivery_time=form.delivery_time,
            timezone=form.timezone,
            frequency="daily",
            weekly_day=WEEKDAYS[0],
            max_items=str(DEFAULT_MAX_ITEMS),
        )
        columns, problems = self.editor.check(wanted, Subscriber())
        errors.update(problems)
        if errors:
            return {}, errors
        spec = make_spec(
            email=email,
            timezone=columns["timezone"],
            delivery_time=columns["delivery_time"],
            topics=columns["topics"],
            origin=ORIGIN,
        )
        return {"spec": spec, "email": email}, {}

    def sign_up(self, form: SignupForm) -> SignupOutcome:
        """Store what the form asks for; the mail to send is the caller's to send (after it answered)."""
        values, errors = self.check(form)
        if errors:
            return Rejected(form, errors)
        if self._one_writer is None:
            return self._store(values)
        with self._one_writer:
            return self._store(values)

    def _store(self, values: Mapping[str, Any]) -> SignupOutcome:
        from bot.store.subscribers import DuplicateSubscriberError

        spec, email = values["spec"], values["email"]
        subscribers = self.app.subscribers
        try:
            row = subscribers.add(spec, status="pending", now=self.app.now())
            assert row.id is not None
            log.info("signed up: pending until confirmed", extra={"subscriber": email, "origin": ORIGIN})
            return Accepted(PendingMail(row.id, "new"))
        except DuplicateSubscriberError:
            pass  # known: below
        known = subscribers.get(email)
        assert known.id is not None
        if known.status in ("pending", "unsubscribed"):
            # Not theirs yet (pending) or given up (unsubscribed): the new choices count, and
            # nothing is sent but the mail that asks them to confirm.
            columns = spec.column_values()
            changes = {key: columns[key] for key in ("topics", "timezone", "delivery_time")}
            self.app.lifecycle.update(known.id, now=self.app.now(), **_changed(known, changes))
            if known.status == "unsubscribed":
                # A concurrent sign-up may have made it pending first: one mail is enough.
                with contextlib.suppress(StatusChangedError):
                    self.app.lifecycle.set_status(
                        known.id, "pending", now=self.app.now(), expect=("unsubscribed",)
                    )
                log.info(
                    "signed up again after unsubscribing: pending until confirmed",
                    extra={"subscriber": email},
                )
                return Accepted(PendingMail(known.id, "back"))
            log.info("signed up again while pending", extra={"subscriber": email})
            return Accepted(PendingMail(known.id, "pending-again"))
        # Active, paused or bouncing: nothing changes; the mail leads them to their page.
        log.info(
            "sign-up of a known address: mailed, nothing changed",
            extra={"subscriber": email, "status": known.status},
        )
        return Accepted(PendingMail(known.id, "known"))

    # -- the mail --------------------------------------------------------------------------------

    @property
    def service(self) -> DigestService:
        if self._service is None:
            from bot.delivery.service import DigestService

            self._service = DigestService(
                self.app.store, self.app.settings, self.app.channels, taxonomy=self.app.taxonomy
            )
        return self._service

    async def send_confirmation(self, mail: PendingMail) -> bool:
        """The opt-in mail: the planner's first one if it was not sent yet, else one of its own."""
        from bot.delivery.service import CONFIRM_PERIOD

        statuses = ("pending",) if mail.reason != "known" else ("active", "paused", "bouncing", "pending")
        service = self.service
        # Not the last attempt: a row that failed now stays open for the planner's job to retry.
        if await service.send_confirmation(
            mail.subscriber_id, period=CONFIRM_PERIOD, statuses=statuses, last_attempt=False
        ):
            return True
        stamp = f"{int(self.app.now().timestamp()):x}"
        return await service.send_confirmation(
            mail.subscriber_id, period=AGAIN_PREFIX + stamp, statuses=statuses, last_attempt=False
        )

    async def aclose(self) -> None:
        if self._service is not None:
            await self.app.channels.aclose()


def _changed(known: Any, changes: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in changes.items() if getattr(known, key) != value}
