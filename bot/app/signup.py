"""Readers sign themselves up: the sign-up form's choices, the pending subscriber, the opt-in mail.

Every door that lets a stranger ask for the digest (the web page, the embeddable form) comes
here. What the door answers never depends on whether the address is known: a new address becomes
a pending subscriber, a known one is left as it is (or, when it had unsubscribed, made pending
again with the new choices), and either way the answer is "check your inbox" and the mail goes
to the address. Nothing is active before its owner presses the button in that mail (double
opt-in); an unsubscribed address comes back only that way.

`sign_up` stores the pending subscriber and, in the same transaction, the job that sends the
opt-in mail (bot.delivery.confirmations): the door answers "check your inbox" only once the mail
is owed, and the mail itself (rendering, the ledger, the channel) is a worker's, outside the web
process: `flarestart run`, or `flarestart serve` itself when no worker takes it in time (see
bot.web.public). The delivery ledger keeps it to one mail (one row per confirmation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot.app.preferences import PreferencesForm, TopicGroup, first
from bot.delivery.confirmations import CONFIRM_TASK, KNOWN_STATUSES, again_job, confirm_job
from bot.errors import StatusChangedError
from bot.jobs.queue import JobQueue
from bot.jobs.worker import Worker
from bot.store.grouped_writes import GroupedWriter

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from bot.app.core import FlareStart

log = logging.getLogger(__name__)

ORIGIN = "web"
MAILER_STOP_SECONDS = 10.0  # how long the stand-in's sends under way may take at the stop
# Sends the sign-up mails in the web process (`run(stop)`, `wake()`): see `stand_in_mailer`.
SignupMailer = Worker
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
    """The door answers "check your inbox"; `mail`: whom the committed job mails, and why (None:
    nobody, the address's rate limit said no)."""

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
        # The mail's job: in the queue the workers read, keyed per channel as the planner keys it.
        self.queue = JobQueue(app.store.engine, clock=app.now)
        self.channel = app.channels.name_for("email")
        self.attempts = app.settings.delivery.max_attempts
        # What `check` compares the form with. A model instance costs ~0.3 ms to build (pydantic
        # inspects every default factory), so one serves every sign-up; it is only read.
        from bot.store.models import Subscriber

        self._blank = Subscriber()
        # SQLite has one writer: new sign-ups go in groups, one transaction each, through one
        # thread that goes before the worker's writes (bot/store/grouped_writes.py). PostgreSQL
        # takes them side by side, one transaction each.
        self._grouped: GroupedWriter[tuple[Any, bool], int | None] | None = None
        if app.store.engine.dialect.name == "sqlite":
            self._grouped = GroupedWriter(app.store.engine, self._add_new, name="sign-up writer")
            self._grouped.start()

    def stand_in_mailer(self) -> SignupMailer:
        """The stand-in for `flarestart run`'s worker in the web process: it sends the sign-up
        mails no worker claimed within web.signup_mail_wait seconds (0: all of them, at once)."""
        from bot.delivery.service import DigestService

        app = self.app
        service = DigestService(app.store, app.settings, app.channels, clock=app.now, taxonomy=app.taxonomy)
        wait = app.settings.web.signup_mail_wait
        return Worker(
            service.queue,
            {CONFIRM_TASK: service.handle_confirm},
            settings=app.settings.delivery,
            clock=app.now,
            poll_interval=min(1.0, wait) if wait else 1.0,
            waits_for_others=timedelta(seconds=wait),
            drain_seconds=MAILER_STOP_SECONDS,
        )

    def close(self) -> None:
        """The sign-ups under way are written; then the writer stops."""
        if self._grouped is not None:
            self._grouped.close()

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
        columns, problems = self.editor.check(wanted, self._blank)
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

    async def sign_up(
        self, form: SignupForm, *, may_mail: Callable[[str], bool] | None = None
    ) -> SignupOutcome:
        """Store what the form asks for, and the job that mails the address (a worker sends it):
        when the outcome is Accepted, both are committed. `may_mail(email)` False (a rate limit):
        stored, not mailed."""
        values, errors = self.check(form)
        if errors:
            return Rejected(form, errors)
        spec, email = values["spec"], values["email"]
        mail = may_mail is None or may_mail(email)
        if self._grouped is not None:
            new_id = await self._grouped.submit((spec, mail))
        else:
            new_id = await asyncio.to_thread(self._add_new_alone, spec, mail)
        if new_id is None:  # a known address (seldom): a few transactions of its own
            return await asyncio.to_thread(self._known, email, spec, mail)
        log.info("signed up: pending until confirmed", extra={"subscriber": email, "origin": ORIGIN})
        return Accepted(PendingMail(new_id, "new") if mail else None)

    def _add_new_alone(self, spec: Any, mail: bool) -> int | None:
        with self.app.store.engine.begin() as conn:
            return self._add_new(conn, (spec, mail))

    def _add_new(self, conn: Connection, signup: tuple[Any, bool]) -> int | None:
        """A new address: its pending row and its mail's job, in the caller's transaction; None
        (nothing written) when the address is known."""
        spec, mail = signup
        now = self.app.now()
        new_id = self.app.subscribers.add_new(spec, status="pending", now=now, connection=conn)
        if new_id is not None and mail:
            job = confirm_job(new_id, channel=self.channel, max_attempts=self.attempts)
            if self.queue.enqueue_one(job, connection=conn) is None and job.unique_key:
                # The key is a finished job's of an earlier subscriber with this id (SQLite reuses
                # the highest id after a delete): run it again, for this one.
                self.queue.requeue(job.unique_key, now=now, connection=conn)
        return new_id

    def _known(self, email: str, spec: Any, mail: bool) -> SignupOutcome:
        known = self.app.subscribers.get(email)
        assert known.id is not None
        reason = self._again(known, spec)
        if not mail:
            return Accepted(None)
        # After the changes, before the answer: a crash between the two leaves a page unanswered
        # (the reader sends it again), never a "check your inbox" without a mail owed.
        statuses = KNOWN_STATUSES if reason == "known" else ("pending",)
        job = again_job(
            known.id, channel=self.channel, now=self.app.now(), statuses=statuses, max_attempts=self.attempts
        )
        self.queue.enqueue_one(job)
        return Accepted(PendingMail(known.id, reason))

    def _again(self, known: Any, spec: Any) -> str:
        """A known address signs up: its new choices when it is not theirs yet; why it is mailed."""
        email = known.email
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
                return "back"
            log.info("signed up again while pending", extra={"subscriber": email})
            return "pending-again"
        # Active, paused or bouncing: nothing changes; the mail leads them to their page.
        log.info(
            "sign-up of a known address: mailed, nothing changed",
            extra={"subscriber": email, "status": known.status},
        )
        return "known"


def _changed(known: Any, changes: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in changes.items() if getattr(known, key) != value}
