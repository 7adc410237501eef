"""Shared fixtures: a loopback feed host, settings in a temporary data folder, stores on SQLite
and (when FLARESTART_TEST_POSTGRES_URL is given) PostgreSQL."""

from __future__ import annotations

import logging
import os
import select
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from bot.config import Settings, load_settings
from bot.store.engine import make_engine, normalize_database_url
from bot.store.migrate import upgrade
from bot.testing.httpserver import FixtureServer

POSTGRES_URL = os.environ.get("FLARESTART_TEST_POSTGRES_URL")

# aiosmtpd's server threads log every connection at INFO; a line logged after its test ended
# would print into the run's progress dots.
logging.getLogger("mail.log").setLevel(logging.WARNING)

if "faketime" in os.environ.get("LD_PRELOAD", ""):  # `make test-future`: the suite a year ahead
    # libfaketime 0.9.10 shifts CLOCK_MONOTONIC too unless told not to, and Python's timed waits
    # then hand the kernel deadlines a year away (they hang); with FAKETIME_DONT_FAKE_MONOTONIC
    # its clock_nanosleep still subtracts the shift from an absolute monotonic deadline, so
    # time.sleep fails with EINVAL. select's relative timeout goes through neither.
    def _relative_sleep(seconds: float) -> None:
        select.select([], [], [], seconds)

    time.sleep = _relative_sleep

    # With FAKETIME_DONT_FAKE_MONOTONIC, libfaketime calls getenv inside every clock read and
    # timed wait, and a thread waiting for the GIL makes those without holding it; a setenv that
    # grows the C environment meanwhile frees the array that getenv is reading (CI segfaulted in
    # a server thread while a fixture called monkeypatch.setenv). So while other threads run,
    # os.environ changes stay in Python, and child processes get os.environ explicitly.
    _putenv, _unsetenv, _popen_init = os.putenv, os.unsetenv, subprocess.Popen.__init__

    def _putenv_when_alone(key: Any, value: Any) -> None:
        if threading.active_count() == 1:
            _putenv(key, value)

    def _unsetenv_when_alone(key: Any) -> None:
        if threading.active_count() == 1:
            _unsetenv(key)

    def _popen_with_environ(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) <= 10 and kwargs.get("env") is None:  # env is Popen's 11th parameter
            kwargs["env"] = dict(os.environ)
        _popen_init(self, *args, **kwargs)

    os.putenv, os.unsetenv = _putenv_when_alone, _unsetenv_when_alone
    subprocess.Popen.__init__ = _popen_with_environ  # type: ignore[method-assign]


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Skips in one line per reason ("138 skipped: PostgreSQL not configured …"), not one line
    per test: without a PostgreSQL server the half that needs it would bury the result."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{count} skipped: {reason}")
