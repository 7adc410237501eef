"""Shared fixtures: a loopback feed host, settings in a temporary data folder, stores on SQLite
and (when FLARESTART_TEST_POSTGRES_URL is given) PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from bot.config import Settings, load_settings
from bot.store.engine import make_engine, normalize_database_url
from bot.store.migrate import upgrade
from bot.testing.httpserver import FixtureServer

POSTGRES_URL = os.environ.get("FLARESTART_TEST_POSTGRES_URL")


@pytest.fixture
def feed_server() -> Iterator[FixtureServer]:
    with FixtureServer() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: data in tmp_path, loopback allowed (tests opt in explicitly)."""
    return load_settings(
        {"FLARESTART_DATA_DIR": str(tmp_path / "data"), "FLARESTART_ALLOW_PRIVATE_URLS": "1"}
    )


def _postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the test PostgreSQL, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not configured: set FLARESTART_TEST_POSTGRES_URL to run these")
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = make_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # unreachable server on a laptop: say so and skip
        admin.dispose()
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} not reachable: {exc.__class__.__name__}")
    url = normalize_database_url(POSTGRES_URL)
    sep = "&" if "?" in url else "?"
    yield f"{url}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated database (SQLite, and PostgreSQL when configured) for code below the Store."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
    else:
        yield from _postgres_schema_url()
