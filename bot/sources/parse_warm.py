"""Imported by the parse pool's forkserver only (the last of PARSE_PRELOAD), never by a parser's
owner: it builds, once and before the parser processes are forked from it, what each would
otherwise build for its first feed, the shipped taxonomy (topics.toml read and parsed) and the
tagger over it: 20-45 ms of CPU a process, as ingest starts. Settings with topics of their own
make a tagger of their own in each process, over the shipped taxonomy read here.

It also makes the forkserver's own end quick (`exit_without_teardown`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from multiprocessing import forkserver
from types import FrameType

from bot.errors import ConfigError
from bot.ranking.setup import tagger_for

# A broken topics.toml (a packaging bug) must not stop the forkserver: the first feed's job
# raises the same ConfigError again, where ingest reports it with the feed.
with contextlib.suppress(ConfigError):
    tagger_for(())


def exit_without_teardown() -> None:
    """The forkserver's exit, once its owner has gone (multiprocessing raises SystemExit there):
    what is left to do is the interpreter's teardown of the parser and tagger it preloaded, which
    frees memory the process gives back anyway. Skipped, since the forkserver holds the owner's
    stdout and stderr: whoever reads the command's output waited ~12 ms longer for their end."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


def _preloaded_by_the_forkserver() -> bool:
    """True when this import runs inside multiprocessing's forkserver loop, not in a process that
    merely imports this module (a test): the exit above ignores the exit code it was given."""
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


if _preloaded_by_the_forkserver():
    atexit.register(exit_without_teardown)
