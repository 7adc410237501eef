"""A store method's connection: the caller's, when it passes one (so several stores' writes share
one transaction, as the delivery claim and the suppression check do), else one of its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine


@contextmanager
def transaction(engine: Engine, connection: Connection | None) -> Iterator[Connection]:
    """The caller's connection (its transaction goes on), or a transaction of our own."""
    if connection is not None:
        yield connection
    else:
        with engine.begin() as conn:
            yield conn


@contextmanager
def connected(engine: Engine, connection: Connection | None) -> Iterator[Connection]:
    """The caller's connection (its transaction goes on), or a new one for this read."""
    if connection is not None:
        yield connection
    else:
        with engine.connect() as conn:
            yield conn
