"""Delivery channels behind one interface: `Channel.send(OutgoingDigest) -> Receipt`."""

from bot.channels.base import Channel, OutgoingDigest, Receipt

__all__ = ["Channel", "OutgoingDigest", "Receipt"]
