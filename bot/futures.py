"""Answering waiters in bulk: a writer that commits many requests in one go hands each its result."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TypeVar

_T = TypeVar("_T")


def settle(futures: Iterable[asyncio.Future[_T]], outcomes: Iterable[_T | BaseException]) -> None:
    """Give each future its outcome (a result, or an exception to raise); a future already done
    (its waiter was cancelled) is left alone."""
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
