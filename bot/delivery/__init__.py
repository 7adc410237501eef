"""Delivery: the ledger that makes each digest go out once and each article reach a reader once."""

from bot.delivery.ledger import DeliveryLedger

__all__ = ["DeliveryLedger"]
