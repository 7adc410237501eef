"""The verbs of subscribers: subscribe a destination, sync the files, list and show, pause,
resume, unsubscribe, confirm, update preferences, remove; each with their next digest."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bot.app.suppressions import SuppressionVerbs
from bot.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from bot.app.types import (
        StatusChange,
        Subscriber,
        SubscriberView,
        SyncOutcome,
    )
    from bot.subscribers.files import SubscriberSpec
    from bot.types import Destination


class SubscriberVerbs(SuppressionVerbs):
    def validate_topics(self, slugs: Iterable[str]) -> None:
        """Raise ConfigError naming unknown topic slugs (and the closest known ones)."""
        self.taxonomy.resolve(slugs)

    def load_subscriber_files(self, folder: Path) -> list[SubscriberSpec]:
        """The subscriber files of `folder`, checked against the taxonomy and the sources (raises
        SubscriberFileError naming file and line)."""
        from bot.sources.defaults import source_names
        from bot.subscribers.files import load_subscriber_files

        known = source_names(self.store, self.settings)
        return load_subscriber_files(folder, validate_topics=self.validate_topics, known_sources=known)

    def sync_subscribers(self, folder: Path | None = None, *, dry_run: bool = False) -> SyncOutcome:
        """Make the stored file subscribers match the files of `folder` (default: subscribers_dir).
        Raises SubscriberFileError (every problem of every file) before anything changes."""
        from bot.app.types import SyncOutcome
        from bot.subscribers.sync import sync_subscribers

        where = folder if folder is not None else self.settings.subscribers_dir
        specs = self.load_subscriber_files(where)
        report = sync_subscribers(self.subscribers, specs, folder=where, dry_run=dry_run)
        from bot.types import subscriber_ref

        added = set(report.added)
        rows = [s for s in self.subscribers.list() if subscriber_ref(s) in added]
        suppressed = self.suppressed_entries(specs, report)
        return SyncOutcome(report, str(where), tuple(self.with_next_delivery(rows)), suppressed)

    def sync_subscriber_files_at_start(self) -> tuple[str, ...]:
        """`run`'s start: sync the subscribers_dir when it exists. Broken files change nothing;
        their problems are returned for the door to show."""
        from bot.subscribers.files import SubscriberFileError
        from bot.subscribers.sync import sync_subscribers

        folder = self.settings.subscribers_dir
        if not folder.is_dir():
            return ()
        try:
            specs = self.load_subscriber_files(folder)
        except SubscriberFileError as exc:
            return tuple(str(problem) for problem in exc.problems)
        report = sync_subscribers(self.subscribers, specs, folder=folder)  # logs what changed
        self.suppressed_entries(specs, report)  # and logs each suppressed entry with its file:line
        return ()

    def subscribe(
        self,
        destination: Destination | str,
        *,
        name: str = "",
        topics: dict[str, float] | None = None,
        timezone: str = "UTC",
        delivery_time: str = "07:00",
        frequency: str = "daily",
        max_items: int = 10,
        origin: str = "cli",
        status: str = "active",
    ) -> SubscriberView:
        """Add a subscriber whose digests go to `destination` (a Destination, or a ref: an email
        address, "slack:C0123ABCD"). Doors an operator uses add them active; sign-ups from the web
        or chat add them pending. A chat destination without topics gets DEFAULT_CHAT_TOPICS."""
        from bot.subscribers.files import make_spec
        from bot.types import Destination

        target = Destination.from_ref(destination) if isinstance(destination, str) else destination
        spec = make_spec(
            destination=target,
            name=name,
            timezone=timezone,
            delivery_time=delivery_time,
            frequency=frequency,
            topics=topics or {},
            max_items=max_items,
            origin=origin,
            validate_topics=self.validate_topics,
        )
        if target.kind == "email":  # a suppressed address is added unsubscribed/bouncing, never active
            status = self.status_for_new(target.address, status)
        subscriber = self.subscribers.add(spec, status=status, now=self.now())
        [view] = self.with_next_delivery([subscriber])
        return view

    def list_subscribers(self, status: str | None = None) -> list[SubscriberView]:
        from bot.store.subscribers import STATUSES

        if status is not None and status not in STATUSES:
            raise ConfigError(f"--status {status!r}: expected one of {', '.join(STATUSES)}")
        return self.with_next_delivery(self.subscribers.list(status))

    def subscriber(self, ref: str | int) -> SubscriberView:
        """One subscriber by id, email or chat ref ("slack:C0123ABCD"); NotFoundError otherwise."""
        [view] = self.with_next_delivery([self.subscribers.get(ref)])
        return view

    def pause(self, ref: str | int) -> StatusChange:
        """Stop sending digests until `resume`."""
        return self._set_status(ref, "paused", refusal="{email} has unsubscribed; there is nothing to pause")

    def resume(self, ref: str | int) -> StatusChange:
        """Send digests again (also clears a bouncing state); an unsubscribe only they undo."""
        return self._set_status(
            ref, "active", refusal="{email} unsubscribed themselves; only they can subscribe again"
        )

    def _set_status(self, ref: str | int, status: str, *, refusal: str) -> StatusChange:
        """The operator's pause and resume: no change when already there, never over an
        unsubscribe (`refusal` says so, with the address)."""
        from bot.app.types import StatusChange, subscriber_label
        from bot.store.subscribers import SubscriberError

        found = self.subscribers.get(ref)
        if found.status == status:
            return StatusChange(found, status, changed=False)
        if found.status == "unsubscribed":
            raise SubscriberError(refusal.format(email=subscriber_label(found)))
        assert found.id is not None
        changed = self.subscribers.set_status(found.id, status, now=self.now())
        return StatusChange(changed, found.status, changed=True)

    def get_subscriber(self, ref: str | int) -> Subscriber:
        """One subscriber's row, through the lifecycle access (NotFoundError when there is none)."""
        return self.lifecycle.get(ref)

    def unsubscribe(self, subscriber_id: int, *, source: str = "web") -> StatusChange:
        """The subscriber asked to stop: unsubscribed from now on (again: nothing changes), and
        the address suppressed, so no sync or new row ever mails it before they opt in again."""
        from bot.app.types import StatusChange

        found = self.lifecycle.get(subscriber_id)
        self.suppress_unsubscribed(found, source=source)
        if found.status == "unsubscribed":
            return StatusChange(found, "unsubscribed", changed=False)
        changed = self.lifecycle.set_status(subscriber_id, "unsubscribed", now=self.now())
        return StatusChange(changed, found.status, changed=True)

    def confirm(self, subscriber_id: int) -> StatusChange:
        """Double opt-in: a pending subscriber becomes active; any other status is left as it is
        (an unsubscribe is never undone by an old confirmation link)."""
        from bot.app.types import StatusChange

        found = self.lifecycle.get(subscriber_id)
        if found.status != "pending":
            return StatusChange(found, found.status, changed=False)
        changed = self.lifecycle.set_status(subscriber_id, "active", now=self.now())
        return StatusChange(changed, "pending", changed=True)

    def change_status(self, subscriber_id: int, status: str, *, expect: str) -> Subscriber:
        """Pause or resume from the subscriber's own page: only from `expect`, checked inside the
        update (StatusChangedError when another change came first)."""
        return self.lifecycle.set_status(subscriber_id, status, now=self.now(), expect=(expect,))

    def update_preferences(self, subscriber_id: int, values: Mapping[str, Any]) -> Subscriber:
        """Store preferences validated by `parse_preferences` (the preferences form, chat)."""
        return self.lifecycle.update(subscriber_id, now=self.now(), **values)

    def remove_subscriber(self, ref: str | int) -> Subscriber:
        """Delete a subscriber and their delivery history."""
        return self.subscribers.remove(ref)

    def active_subscriber_count(self) -> int:
        return len(self.subscribers.active())
