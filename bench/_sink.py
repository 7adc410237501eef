"""An SMTP sink for the email benchmark: aiosmtpd in its own process, counting what it accepts.

    python bench/_sink.py [--port 0] [--dump-at-exit ids.json] [--delay 0.05]

It prints one line, `{"port": PORT, "pid": PID}`, once it listens on 127.0.0.1, then reads
commands on stdin, one a line, and answers each with one JSON line on stdout:

    stats   {"cpu", "messages", "distinct", "missing_id", "bytes", "connections", "wall", "max_rss"}
            since the last reset (cpu: the sink's own user+sys seconds; wall: seconds)
    reset   the stats so far, then zeroes them (the Message-IDs seen are forgotten too)
    dump    the stats plus "ids": {message_id: copies}
    quit    the stats, then it exits (EOF on stdin does the same)

Every message is accepted (250) once its DATA has arrived; its Message-ID header is read from the
message head and counted, so a caller can check that N sends gave N distinct Message-IDs. The
server is aiosmtpd's own SMTP protocol class on the default asyncio loop, the same server the
tests use: it is as fast (or as slow) for every client the benchmark compares.
"""

from __future__ import annotations

import os
import sys

# Run as a script, bench/ comes first on sys.path, where bench/email.py would shadow the standard
# library's `email` package (aiosmtpd imports it). This script needs nothing from bench/.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import asyncio
import json
import re
import resource
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)
HEAD_LIMIT = 8192  # bytes of a message searched for its Message-ID (headers come first)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sink:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay  # seconds each DATA takes to be accepted, as a real server's do
        self.ids: Counter[str] = Counter()
        self.messages = 0
        self.bytes = 0
        self.connections = 0
        self.missing_id = 0
        self.started = time.perf_counter()
        self.cpu0 = _cpu()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode()
        self.messages += 1
        self.bytes += len(data)
        head = data[:HEAD_LIMIT].split(b"\r\n\r\n", 1)[0]
        match = _MESSAGE_ID.search(head)
        if match is None:
            self.missing_id += 1
        else:
            self.ids[match.group(1).decode("ascii", "replace")] += 1
        return "250 2.0.0 OK"

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "cpu": _cpu() - self.cpu0,
            "messages": self.messages,
            "distinct": len(self.ids),
            "missing_id": self.missing_id,
            "bytes": self.bytes,
            "connections": self.connections,
            "wall": time.perf_counter() - self.started,
            "max_rss": usage.ru_maxrss * 1024,
        }

    def reset(self) -> None:
        self.ids.clear()
        self.messages = self.bytes = self.connections = self.missing_id = 0
        self.started = time.perf_counter()
        self.cpu0 = _cpu()

    def command(self, line: str) -> tuple[dict[str, Any], bool]:
        word = line.strip().lower()
        answer = self.stats()
        if word == "reset":
            self.reset()
        elif word == "dump":
            answer["ids"] = dict(self.ids)
        elif word in ("quit", ""):
            return answer, True
        elif word != "stats":
            answer = {"error": f"unknown command {word!r}"}
        return answer, False


async def serve(port: int, dump_at_exit: Path | None, delay: float = 0.0) -> None:
    loop = asyncio.get_running_loop()
    sink = Sink(delay)
    done = asyncio.Event()

    def factory() -> SMTP:
        sink.connections += 1
        return SMTP(sink, hostname="sink.bench.localhost", data_size_limit=64 * 1024 * 1024)

    server = await loop.create_server(factory, host="127.0.0.1", port=port)
    bound = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": bound, "pid": os.getpid()}), flush=True)

    def on_line(line: str) -> None:  # runs on the loop: the counters are only touched here
        answer, stop = sink.command(line)
        print(json.dumps(answer), flush=True)
        if stop:
            done.set()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(on_line, line)
            if line.strip().lower() == "quit":
                return
        loop.call_soon_threadsafe(on_line, "")  # EOF: the caller is gone

    threading.Thread(target=read_stdin, name="sink-commands", daemon=True).start()
    await done.wait()
    server.close()
    if dump_at_exit is not None:
        dump_at_exit.write_text(json.dumps({**sink.stats(), "ids": dict(sink.ids)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (printed at start)")
    parser.add_argument("--dump-at-exit", type=Path, help="write the stats and Message-IDs here at exit")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each DATA is accepted")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.dump_at_exit, args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
