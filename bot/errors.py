"""One small error hierarchy. The CLI turns these into one-line messages; anything else is a bug."""


class FlareStartError(Exception):
    """Base of every error the service expects and can explain to a user."""

    exit_code = 1


class ConfigError(FlareStartError):
    """A setting is missing or invalid; the message names the key and where it came from."""

    exit_code = 2


class NotFoundError(FlareStartError):
    """Something asked for by name or id does not exist."""

    exit_code = 3


class SourceError(FlareStartError):
    """A feed source could not be fetched, parsed or added."""


class FeedParseError(SourceError):
    """The bytes are not a feed we can read (or are hostile)."""


class UnsafeURLError(SourceError):
    """The URL is not http(s) or points at a private, loopback or link-local address."""


class OPMLError(FlareStartError):
    """An OPML file is malformed or holds invalid outlines."""


class DeliveryTransientError(FlareStartError):
    """Delivery failed but may work later (timeouts, 4xx SMTP, 429).

    `retry_after`: seconds the remote asked us to wait (a 429's Retry-After), or None. The retry
    is scheduled no sooner than that, within a cap (`bot.jobs.queue.honour_retry_after`).
    """

    def __init__(self, *args: object, retry_after: float | None = None) -> None:
        super().__init__(*args)
        # An attribute, not an argument: exceptions pickle their args and their __dict__.
        self.retry_after = retry_after


class DeliveryBusyError(DeliveryTransientError):
    """Another sender holds this delivery (it is being sent right now): nothing was sent.

    `retry_after`: seconds until that sender's lease ends. A job is put back for then without
    counting an attempt (the digest is never dropped for it); a person is told it is already
    being sent.
    """


class DeliveryPermanentError(FlareStartError):
    """Delivery can never work as configured (5xx for the recipient, 404 webhook).

    `pauses`: the destination itself cannot take digests until someone acts (a Slack channel
    archived, the app removed from it): the subscriber is paused with the message as the reason,
    rather than counted towards bouncing.
    """

    pauses: bool = False


class SubscriberError(FlareStartError):
    """A subscriber cannot be added or changed as asked."""


class StatusChangedError(SubscriberError):
    """The subscriber's status is not one the change was meant for (another change came first)."""
