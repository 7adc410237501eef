"""Subscribers: kept as code in TOML files (files), synced to the store (sync), scheduled (schedule)."""

from bot.subscribers.files import (
    PreferenceSpec,
    Problem,
    SubscriberFileError,
    SubscriberSpec,
    load_subscriber_files,
    make_spec,
    parse_preferences,
)
from bot.subscribers.schedule import (
    DuePeriod,
    NextDelivery,
    due_period,
    next_delivery,
    next_delivery_at,
    period_for,
)
from bot.subscribers.sync import SyncReport, sync_subscribers

__all__ = [
    "DuePeriod",
    "NextDelivery",
    "PreferenceSpec",
    "Problem",
    "SubscriberFileError",
    "SubscriberSpec",
    "SyncReport",
    "due_period",
    "load_subscriber_files",
    "make_spec",
    "next_delivery",
    "next_delivery_at",
    "parse_preferences",
    "period_for",
    "sync_subscribers",
]
