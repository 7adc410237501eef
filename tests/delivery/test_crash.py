"""The crash test: `flarestart run` sending 500 digests is SIGKILLed mid-way and restarted, and the
SMTP server receives every digest, each subscriber exactly one Message-ID.

What is guaranteed, and what this test holds the code to:
- every due subscriber gets their digest (500 distinct Message-IDs, one per subscriber, the same
  ones the deliveries table records as sent);
- a duplicate is possible only for a send the kill caught between the server's 250 to DATA and
  the `mark_sent` commit. Such a row is still 'sending' after the kill, so duplicates ≤ rows left
  'sending' ≤ delivery.workers. A duplicate carries the same Message-ID as the first copy
  (receivers collapse it). No protocol lets us ask an SMTP server whether it already took a
  message, so "at most the in-flight sends, with identical Message-IDs" is the honest bound.

The kill is aimed at that window rather than left to chance: the server sends SIGKILL from inside
its DATA handler when the 166th message is stored, before its 250 goes out. So at least one
duplicate always happens, and the test checks it is resent with the same Message-ID and counted
within the bound.

The daemon runs as a real process (`python -m bot run`) against a real aiosmtpd server (in this
process, in a thread) and a loopback feed host; the only knob turned is a short job lease, so the
jobs the kill orphaned are taken over within seconds instead of two minutes.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import IO, Any

import pytest

from bot.config import load_settings
from bot.store import Store
from bot.store.subscribers import SubscriberStore
from bot.testing.httpserver import FixtureServer, static
from tests.channels.smtp_server import Received, SmtpServer

SUBSCRIBERS = 500
KILL_AT = SUBSCRIBERS // 3
WORKERS = 4  # delivery.workers: jobs one process runs at once, so at most this many in flight
LEASE_SECONDS = 6  # orphaned jobs are taken over this long after the kill (a live job renews every 2 s)
START_TIMEOUT = 90.0  # generous: a loaded 2-core machine imports, migrates and fetches slowly
FINISH_TIMEOUT = 120.0
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)

# Ten articles per feed, three feeds: a python reader's digest has up to 2 per source (6 items).
ARTICLES = {
    "Py Weekly": [
        ("Python 3.14 ships a free-threaded build you can try today", "Python"),
        ("Django 6.0 released with async ORM improvements", "Python"),
        ("pytest 9 brings faster collection for large test suites", "Python"),
        ("FastAPI and pydantic: validating requests without the boilerplate", "Python"),
        ("The uv package manager now manages Python versions too", "Python"),
        ("pandas 3.0 makes copy-on-write the default", "Python"),
        ("A tour of asyncio task groups in Python", "Python"),
        ("Jupyter notebooks in CI: run them like tests", "Python"),
        ("Rust extensions for Python with PyO3, step by step", "Rust"),
        ("NumPy 2.3 speeds up sorting on ARM", "Python"),
    ],
    "AI Daily": [
        ("A new open-weights LLM tops the coding leaderboard", "AI"),
        ("Fine-tuning a small language model on a laptop with Python", "AI"),
        ("Why retrieval-augmented generation still hallucinates", "AI"),
        ("Machine learning teams move inference to the edge", "AI"),
        ("Training data licensing deals reshape the AI market", "AI"),
        ("Evaluating LLM agents: benchmarks that measure real work", "AI"),
        ("PyTorch 3 preview: compiled graphs by default", "Python"),
        ("Speech recognition models get cheaper to run", "AI"),
        ("Vector databases compared for AI search", "AI"),
        ("Prompt injection defenses that actually work", "AI"),
    ],
    "Rustacean News": [
        ("Rust 1.90 stabilizes async closures", "Rust"),
        ("The borrow checker explained with pictures", "Rust"),
        ("Tokio 2.0 roadmap published", "Rust"),
        ("Writing a memory-safe parser in Rust", "Rust"),
        ("Cargo learns to build Python wheels", "Python"),
        ("Rust in the Linux kernel: a year of drivers", "Rust"),
        ("Embedded Rust on a five-dollar board", "Rust"),
        ("From Python to Rust: porting a data pipeline", "Python"),
        ("crates.io adds trusted publishing", "Rust"),
        ("The Rust Foundation funds compiler performance work", "Rust"),
    ],
}


def _feed(source: str, now: datetime) -> bytes:
    slug = source.lower().replace(" ", "-")
    items = []
    for n, (title, category) in enumerate(ARTICLES[source]):
        published = format_datetime(now - timedelta(minutes=20 + 23 * n))
        items.append(
            f"<item><title>{title}</title><link>https://{slug}.example/{n}</link><guid>{slug}-{n}</guid>"
            f"<category>{category}</category><pubDate>{published}</pubDate>"
            f"<description>{title}. What changed, why it matters and how to try it.</description></item>"
        )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{source}</title>'
        f"<link>https://{slug}.example/</link>{''.join(items)}</channel></rss>"
    ).encode()


def _message_ids(server: SmtpServer) -> list[tuple[str, str]]:
    """(Message-ID, recipient) of every message the server accepted, in order."""
    with server.lock:
        received = list(server.messages)
    found = []
    for message in received:
        match = _MESSAGE_ID.search(message.data[: message.data.find(b"\r\n\r\n")])
        assert match is not None, "a message without a Message-ID"
        found.append((match.group(1).decode(), ",".join(message.rcpt_tos)))
    return found


class _KillAtMessage(list[Received]):
    """The server's message list, armed to SIGKILL the daemon the moment message `at` is stored.

    `append` runs inside the server's DATA handler, after the message is kept and before the
    250 reply is written: the daemon dies with that digest accepted but never acknowledged, the
    one window where a duplicate is possible. The test aims at it instead of hoping to hit it.
    """

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.pid: int | None = None
        self.fired = threading.Event()

    def append(self, message: Received) -> None:
        super().append(message)
        if len(self) == self.at and self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            self.fired.set()


def _delivery_counts(database: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as conn:
            return dict(conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}


def _wait_for(check: Callable[[], bool], process: subprocess.Popen[Any], log: Path, timeout: float) -> None:
    """Poll `check` until it holds; fail early (with the log) when the daemon exits before it does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process.poll() is not None:
            if check():  # it holds now: the exit was the point (the kill) or came just after
                return
            pytest.fail(f"the daemon exited with {process.returncode}:\n{_tail(log)}")
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:g}s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def test_a_daemon_killed_mid_send_delivers_every_digest_once_after_restart(
    tmp_path: Path, feed_server: FixtureServer, smtp: SmtpServer, record_property: Callable[[str, Any], None]
) -> None:
    started = time.monotonic()
    now = datetime.now(UTC)
    sources = "".join(
        f'[[sources]]\nname = "{name}"\nurl = "{feed_server.add(f"/{n}.xml", static(_feed(name, now)))}"\n'
        for n, name in enumerate(ARTICLES)
    )
    readers = tmp_path / "subscribers"  # empty: the subscribers below are the only ones
    readers.mkdir()
    config = tmp_path / "flarestart.toml"
    config.write_text(
        f'subscribers_dir = "{readers}"\n'
        f"[delivery]\nlease_seconds = {LEASE_SECONDS}\nworkers = {WORKERS}\n"
        f"{sources}",
        encoding="utf-8",
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLARESTART_")},
        "FLARESTART_CONFIG": str(config),
        "FLARESTART_DATA_DIR": str(tmp_path / "data"),
        "SMTP_URL": smtp.url(),
        "FLARESTART_EMAIL_ALLOW_PLAIN": "1",
    }
    env.pop("DATABASE_URL", None)
    settings = load_settings(env)
    due = (now - timedelta(minutes=2)).strftime("%H:%M")
    store = Store.open(settings)
    try:
        subscribers = SubscriberStore(store.engine)
        emails = [f"reader{n:03d}@example.com" for n in range(SUBSCRIBERS)]
        for email in emails:
            subscribers.add(
                {"email": email, "timezone": "UTC", "delivery_time": due, "topics": {"python": 1.0}}
            )
    finally:
        store.close()
    database = settings.database_path

    def start(log: Path) -> tuple[subprocess.Popen[Any], IO[bytes]]:
        handle = log.open("wb")  # a file, not a pipe: 500 log lines would fill a pipe and block
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"], env=env, stdout=handle, stderr=subprocess.STDOUT
        )
        return process, handle

    # -- first life: killed a third of the way through, inside the window ----------------------
    switch = _KillAtMessage(KILL_AT)
    smtp.messages = switch
    first_log = tmp_path / "first.log"
    first, first_handle = start(first_log)
    switch.pid = first.pid
    try:
        _wait_for(switch.fired.is_set, first, first_log, START_TIMEOUT)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        first_handle.close()
    assert first.returncode == -signal.SIGKILL
    received_at_kill = _message_ids(smtp)
    with sqlite3.connect(database) as conn:
        in_flight = {
            email
            for (email,) in conn.execute(
                "SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
                " WHERE d.status = 'sending'"
            )
        }
    at_kill = _delivery_counts(database)
    caught_mid, caught_to = received_at_kill[KILL_AT - 1]  # accepted, never acknowledged
    assert caught_to in in_flight
    assert len(in_flight) <= WORKERS

    # -- second life: takes over the orphaned jobs, sends the rest, stops cleanly ---------------
    second_log = tmp_path / "second.log"
    second, second_handle = start(second_log)
    try:
        _wait_for(
            lambda: (
                len({mid for mid, _ in _message_ids(smtp)}) >= SUBSCRIBERS
                and _delivery_counts(database).get("sent", 0) >= SUBSCRIBERS
            ),
            second,
            second_log,
            FINISH_TIMEOUT,
        )
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    finally:
        if second.poll() is None:
            second.kill()
        second_handle.close()
    log = second_log.read_text(errors="replace")
    assert second.returncode == 0, _tail(second_log)
    assert "Traceback" not in log, log

    # -- every digest exactly once, duplicates bounded by what was in flight ---------------------
    received = _message_ids(smtp)
    copies = Counter(mid for mid, _ in received)
    per_reader: dict[str, set[str]] = defaultdict(set)
    for mid, to in received:
        per_reader[to].add(mid)
    duplicates = len(received) - len(copies)
    assert len(copies) == SUBSCRIBERS
    assert sorted(per_reader) == sorted(emails)
    assert all(len(ids) == 1 for ids in per_reader.values()), "a reader got two different digests"
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT status, message_id FROM deliveries").fetchall()
        jobs = dict(
            conn.execute(
                "SELECT status, count(*) FROM jobs WHERE task = 'send_digest' GROUP BY status"
            ).fetchall()
        )
    assert Counter(status for status, _ in rows) == {"sent": SUBSCRIBERS}
    assert {mid for _, mid in rows} == set(copies), "the ledger's Message-IDs are the ones received"
    assert jobs == {"done": SUBSCRIBERS}
    # A duplicate needs a send the kill caught after the server took the message and before
    # mark_sent committed: such a row was left 'sending', and there are at most `workers` of them.
    # The one the kill was aimed at is always among them, resent with the same Message-ID.
    duplicated = {mid for mid, count in copies.items() if count > 1}
    assert caught_mid in duplicated
    assert {to for mid, to in received if mid in duplicated} <= in_flight
    assert 1 <= duplicates <= len(in_flight) <= WORKERS
    assert all(count <= 2 for count in copies.values())

    elapsed = time.monotonic() - started
    summary = {
        "received_at_kill": len(received_at_kill),
        "deliveries_at_kill": at_kill,
        "duplicates": duplicates,
        "duplicate_ids": sorted(duplicated),
        "messages_received": len(received),
        "seconds": round(elapsed, 1),
    }
    for key, value in summary.items():
        record_property(key, value)
    print(f"\ncrash test: {summary}")
