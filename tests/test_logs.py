"""Log lines go to the stderr of the moment, so a swapped and closed stream loses nothing."""

from __future__ import annotations

import io
import logging
import sys
import threading

import pytest

from bot.logs import setup_logging


@pytest.fixture(autouse=True)
def restore_root_logging() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_lines_follow_sys_stderr_even_after_the_old_one_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    setup_logging("INFO")
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.getLogger("bot.test").info("to the first", extra={"feed": "a"})
    first.close()  # what a test runner does with the stream it captured into
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)

    thread = threading.Thread(target=lambda: logging.getLogger("bot.test").warning("from a thread"))
    thread.start()
    thread.join()

    assert "from a thread" in second.getvalue() and "Logging error" not in second.getvalue()


def test_an_explicit_stream_is_kept() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    logging.getLogger("bot.test").info("kept", extra={"subscriber": "ada@example.com"})
    assert '"subscriber": "ada@example.com"' in stream.getvalue()
