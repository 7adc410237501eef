"""Imported by the parse pool's forkserver only (the last of PARSE_PRELOAD), never by a parser's
owner: it builds, once and before the parser processes are forked from it, what each would
otherwise build for its first feed, the shipped taxonomy (topics.toml read and parsed) and the
tagger over it: 20-45 ms of CPU a process, as ingest starts. Settings with topics of their own
make a tagger of their own in each process, over the shipped taxonomy read here.
"""

from __future__ import annotations

import contextlib

from bot.errors import ConfigError
from bot.ranking.setup import tagger_for

# A broken topics.toml (a packaging bug) must not stop the forkserver: the first feed's job
# raises the same ConfigError again, where ingest reports it with the feed.
with contextlib.suppress(ConfigError):
    tagger_for(())
