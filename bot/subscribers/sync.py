"""Make the stored file subscribers match the files: add, change and delete, in one transaction.

Only subscribers whose origin starts with the prefix ("file:") are the files' to manage: those
who joined from the CLI, the web or chat are never changed or removed by a sync. Given the folder
it read, a sync removes only subscribers whose file was in that folder: `subscribers sync
OTHER_DIR` leaves the default folder's subscribers alone. Status is the
subscriber's own: a sync never resumes someone paused, bouncing or unsubscribed, it only keeps
their preferences in step with the file. A file subscriber no longer in any file is deleted
(with their delivery history). An entry whose address is suppressed (bot/store/suppressions.py:
an unsubscribe or a hard bounce, kept by address) is added unsubscribed or bouncing, never
active, and the report names it: deleting and re-adding a row never undoes the reader's word.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.subscribers.files import SubscriberSpec
from bot.types import subscriber_ref

if TYPE_CHECKING:
    from bot.store.subscribers import SubscriberStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncReport:
    # Subscribers by ref: the email address, or "slack:C0123ABCD" for a chat destination.
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # deleted from the store
    unchanged: int = 0
    # ref → the fields that differed, for each changed subscriber
    changes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # refs in a file that belong to a CLI/web/chat subscriber, left as they are
    skipped: list[str] = field(default_factory=list)
    dry_run: bool = False
    # emails in a file whose address is suppressed → the reason: added or kept, never mailed
    suppressed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "changes": {ref: list(fields) for ref, fields in self.changes.items()},
            "skipped": self.skipped,
            "dry_run": self.dry_run,
            "suppressed": self.suppressed,
        }


def sync_subscribers(
    store: SubscriberStore,
    specs: Sequence[SubscriberSpec],
    *,
    origin_prefix: str = "file:",
    folder: Path | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> SyncReport:
    """Idempotent: a second sync of the same specs reports everything unchanged.

    `folder` is where the specs were read: only file subscribers from there are removed when no
    longer in any file (without it, every file subscriber not in `specs` is). With `dry_run` the
    report says what would happen and nothing is written.
    """
    refs = [spec.ref for spec in specs]
    if len(set(refs)) != len(refs):
        twice = sorted({r for r in refs if refs.count(r) > 1})
        raise ValueError(f"the same destination is given twice: {', '.join(twice)}")
    added: list[str] = []
    changed: list[str] = []
    changes: dict[str, tuple[str, ...]] = {}
    skipped: list[str] = []
    unchanged = 0
    with store.batch(now=now) as batch:
        rows = batch.find(destinations=[spec.destination for spec in specs], origin_prefix=origin_prefix)
        by_ref = {subscriber_ref(row): row for row in rows}
        emails = [spec.email for spec in specs if spec.email is not None]
        suppressed = {email: found.reason for email, found in batch.suppressions(emails).items()}
        for spec in specs:
            values = spec.column_values()
            row = by_ref.get(spec.ref)
            if row is None:
                added.append(spec.ref)
                if not dry_run:
                    status = _status_when_added(suppressed.get(spec.email) if spec.email else None)
                    batch.insert(values, status=status)
                continue
            if not row.origin.startswith(origin_prefix):
                skipped.append(spec.ref)
                continue
            differ = {key: value for key, value in values.items() if getattr(row, key) != value}
            if not differ:
                unchanged += 1
                continue
            changed.append(spec.ref)
            changes[spec.ref] = tuple(differ)
            if not dry_run:
                assert row.id is not None
                batch.update(row.id, differ)
        wanted = set(refs)
        gone = [
            row
            for row in rows
            if row.origin.startswith(origin_prefix)
            and subscriber_ref(row) not in wanted
            and (folder is None or _from_folder(row.origin, origin_prefix, folder))
        ]
        if not dry_run:
            batch.delete([row.id for row in gone if row.id is not None])
    report = SyncReport(
        added=added,
        changed=changed,
        removed=[subscriber_ref(row) for row in gone],
        unchanged=unchanged,
        changes=changes,
        skipped=skipped,
        dry_run=dry_run,
        suppressed={email: suppressed[email] for email in emails if email in suppressed},
    )
    log.info(
        "subscribers synced",
        extra={
            "added": len(added),
            "changed": len(changed),
            "removed": len(report.removed),
            "unchanged": unchanged,
            "skipped": len(skipped),
            "suppressed": len(report.suppressed),
            "dry_run": dry_run,
        },
    )
    return report


def _status_when_added(suppression: str | None) -> str:
    """A file entry whose address is suppressed is added, but never active: the reader's word
    (or the bounce) stands until they opt in again through the web."""
    if suppression is None:
        return "active"
    return "bouncing" if suppression == "hard_bounce" else "unsubscribed"


def _from_folder(origin: str, prefix: str, folder: Path) -> bool:
    """Whether a `file:…` origin names a file directly in `folder`. A relative origin is read
    from the working directory, as it was written (see files._origin); one that resolves
    elsewhere is another folder's, and is left alone."""
    path = Path(origin.removeprefix(prefix))
    try:
        return path.resolve().parent == folder.resolve()
    except (OSError, RuntimeError):
        return False
