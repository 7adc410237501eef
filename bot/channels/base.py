"""One delivery interface for every channel: send a rendered digest, get a receipt or an error.

Email, the outbox, Slack and Discord are peers behind `Channel`. A channel raises
`DeliveryTransientError` when trying again later may work (timeouts, 4xx, disconnects, 429) and
`DeliveryPermanentError` when this delivery can never work as it stands (a 5xx for the recipient,
a deleted webhook). Anything else it raises is a bug. A remote that says how long to wait (a
429's Retry-After) goes into the transient error's `retry_after`, in seconds: the job is not tried
again sooner (within a cap of a day).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.digest.view import DigestView, RenderedDigest


@dataclass(frozen=True, slots=True)
class OutgoingDigest:
    """A rendered digest addressed to one destination for one period."""

    to_name: str
    to_address: str
    rendered: RenderedDigest
    message_id: str  # deterministic per (subscriber, period): resends look like the same mail
    unsubscribe_url: str  # one-click https link; "" for mails that are not list mail (confirm)
    period: str
    # The message as the channel puts it on the wire, when it was made ahead (the drafting process
    # does, so the sender's event loop only sends); None: the channel makes it at send time.
    wire: bytes | None = None
    # The digest as values, for channels that render it their own way (Slack's Block Kit);
    # None for mails that are not digests (the confirmation).
    view: DigestView | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a channel says after handing a digest over."""

    channel: str  # "email", "outbox", "slack", "discord"
    destination: str  # the address, folder or channel it went to
    message_id: str | None
    detail: str = ""  # the server's answer, in its words ("250 2.0.0 queued as 4F2A1")


class Channel(Protocol):
    name: str

    async def send(self, message: OutgoingDigest) -> Receipt:
        """Deliver one digest. Raises DeliveryTransientError or DeliveryPermanentError."""
        ...

    async def aclose(self) -> None:
        """Release connections; the channel is not used afterwards."""
        ...
