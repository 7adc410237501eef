"""Slack delivery at scale: digests for many channels against the fake Slack with its rate limit on.

    .venv/bin/python bench/slack.py                          # 200 channels, 4 parts each, 1 msg/s, 3 runs
    .venv/bin/python bench/slack.py --channels 50 --parts 3 --rate 2 --runs 1
    .venv/bin/python bench/slack.py --db-part-log              # parts recorded in SQLite, as in service

Each run starts a fresh fake Slack in its own process (`python -m bot.testing.fake_slack`, a token
bucket per channel: `--rate` messages a second, burst 1) and renders one digest of `--parts`
messages per channel (not timed). Timed: every channel's digest posted concurrently through one
SlackPoster (its per-channel pacer at 1.05 × the fake's interval). Then each channel's history is
read back through conversations.history with include_all_metadata, and every (delivery, part) is
counted: lost = expected but absent, duplicated = present more than once.

The floor is what the rate limit allows: a channel's parts cannot go faster than one per 1/rate
seconds after the first, so the whole run takes at least (parts − 1) / rate. Target: measured
within 20% of it, zero lost, zero duplicated. The peer, measured in the same run on a fresh fake:
plain slack-sdk (AsyncWebClient with its built-in AsyncRateLimitErrorRetryHandler, no pacer),
posting each channel's parts in order, the way a script without a pacer would; and the ceiling,
ours with the fake's rate limit off, which is what posting that many messages costs on this
machine (client, fake server and loopback together) whatever the limit.

With `--db-part-log`, ours (and the ceiling) record every posted part in a fresh migrated SQLite
database through `DatabasePartLog` (one committed transaction per part, plus the "begun" mark
SlackChannel writes before a delivery's first part), as `flarestart run` does; without it, in memory.
"""

from __future__ import annotations

import os
import sys

# bench/ holds benchmarks named like standard modules: keep this folder off the front of sys.path.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.parts import MemoryPartLog, PartLog
from bot.channels.slack import EVENT_TYPE, ChannelPacer, SlackDestination, SlackPoster
from bot.digest.slack import SlackMessage, SlackRenderer
from bot.digest.view import DigestItemView, DigestView
from bot.store.engine import make_engine
from bot.store.migrate import upgrade
from bot.store.parts import DatabasePartLog

TOKEN = "xoxb-flarestart-bench"
CEILING = "no rate limit (ceiling)"
UNLIMITED = 1_000_000.0  # the fake's rate for the ceiling: never limits
NOW = datetime(2026, 5, 7, 7, 0, tzinfo=UTC)


@dataclass
class Round:
    contender: str
    wall: float
    messages: int
    lost: int
    duplicated: int
    rate_limited: int


def digest(parts: int) -> tuple[SlackMessage, ...]:
    """A realistic digest that needs exactly `parts` messages (the fewest items that do)."""
    renderer = SlackRenderer()
    for count in range(1, 16 * parts + 1):
        items = tuple(
            DigestItemView(
                title=f"Story {n}: Python ships an experimental JIT and a better REPL",
                url=f"https://news.example.com/{n}",
                source="The Verge",
                author="Ada Lovelace",
                published=NOW - timedelta(hours=n % 20 + 1),
                excerpt="A free-threaded build, a better REPL and a JIT compiler. " * 4,
                chip="Python",
                reason="because you follow Python",
                also_covered_by=(("Hackernoon", f"https://hackernoon.example.com/{n}"),),
            )
            for n in range(count)
        )
        view = DigestView(
            subscriber_name="Team",
            subscriber_email="",
            period="2026-05-07",
            date=date(2026, 5, 7),
            items=items,
            preferences_url="https://flarestart.example.com/p/x",
            unsubscribe_url="https://flarestart.example.com/u/x",
            now=NOW,
        )
        messages = renderer.render(view)
        if len(messages) == parts:
            return messages
    raise SystemExit(f"no digest of {parts} parts")


def start_fake(channels: int, rate: float) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "bot.testing.fake_slack", "--token", TOKEN, "--channels", str(channels)]
    process = subprocess.Popen(
        [*command, "--rate", str(rate), "--burst", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    api_url = process.stdout.readline().strip()
    if not api_url.startswith("http://127.0.0.1:"):
        process.kill()
        raise SystemExit("the fake Slack did not start")
    return process, api_url


def fake_stats(api_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(api_url.replace("/api/", "/_fake/stats"), timeout=10) as answer:
        return dict(json.load(answer))


async def ours(
    api_url: str,
    channels: list[str],
    messages: tuple[SlackMessage, ...],
    interval: float,
    run: int,
    *,
    database: str | None = None,
) -> float:
    engine = None
    log: PartLog = MemoryPartLog()
    if database is not None:
        engine = make_engine(database)
        upgrade(engine)
        log = DatabasePartLog(engine)
    poster = SlackPoster(token=TOKEN, log=log, api_url=api_url, pacer=ChannelPacer(interval))

    async def deliver(channel: str) -> None:
        key = f"bench-{run}/{channel}"
        if engine is not None:
            await log.record(key, 0, "")  # SlackChannel's "begun" mark
        await poster.post(SlackDestination(channel=channel), messages, key=key)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(deliver(channel) for channel in channels))
        return time.perf_counter() - started
    finally:
        await poster.aclose()
        if engine is not None:
            engine.dispose()


async def peer(api_url: str, channels: list[str], messages: tuple[SlackMessage, ...], run: int) -> float:
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(
            token=TOKEN,
            base_url=api_url,
            session=session,
            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=20)],
        )

        async def one(channel: str) -> None:
            for message in messages:
                metadata = {
                    "event_type": EVENT_TYPE,
                    "event_payload": {"key": f"peer-{run}/{channel}", "part": message.part},
                }
                await client.chat_postMessage(channel=channel, metadata=metadata, **message.payload())

        started = time.perf_counter()
        await asyncio.gather(*(one(channel) for channel in channels))
        return time.perf_counter() - started


async def count(api_url: str, channels: list[str], parts: int, prefix: str) -> tuple[int, int, int]:
    """(messages, lost, duplicated) by reading every channel's history back through the API."""
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=TOKEN, base_url=api_url, session=session)
        lost = duplicated = total = 0
        for channel in channels:
            page = await client.conversations_history(channel=channel, limit=1000, include_all_metadata=True)
            seen: Counter[tuple[str, int]] = Counter()
            for message in page["messages"]:
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                seen[(str(payload.get("key")), int(payload.get("part", 0)))] += 1
                total += 1
            key = f"{prefix}/{channel}"
            lost += sum(1 for part in range(1, parts + 1) if seen[(key, part)] == 0)
            duplicated += sum(n - 1 for n in seen.values() if n > 1)
        return total, lost, duplicated


def one_round(
    contender: str, args: argparse.Namespace, messages: tuple[SlackMessage, ...], run: int
) -> Round:
    channels = [f"C{number:07d}" for number in range(1, args.channels + 1)]
    unlimited = contender == CEILING
    process, api_url = start_fake(args.channels, UNLIMITED if unlimited else args.rate)
    try:
        if contender in ("flarestart", CEILING):
            # The pacer counts from the previous answer, so 1/rate (+ float slack) keeps clear of 429.
            interval = 0.0 if unlimited else 1.0 / args.rate + 0.002
            with tempfile.TemporaryDirectory(prefix="flarestart-bench-") as folder:
                database = f"sqlite:///{folder}/parts.db" if args.db_part_log else None
                wall = asyncio.run(ours(api_url, channels, messages, interval, run, database=database))
            prefix = f"bench-{run}"
        else:
            wall = asyncio.run(peer(api_url, channels, messages, run))
            prefix = f"peer-{run}"
        total, lost, duplicated = asyncio.run(count(api_url, channels, args.parts, prefix))
        limited = int(fake_stats(api_url)["rate_limited"])
    finally:
        process.terminate()
        process.wait(timeout=10)
    return Round(contender, wall, total, lost, duplicated, limited)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--parts", type=int, default=4, help="messages per digest (≥ 2 for a floor)")
    parser.add_argument("--rate", type=float, default=1.0, help="the fake's messages a second per channel")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument(
        "--db-part-log", action="store_true", help="record parts in SQLite (DatabasePartLog), as in service"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.parts < 2:
        parser.error("--parts must be at least 2: one message a channel has no rate-limit floor")
    messages = digest(args.parts)
    floor = (args.parts - 1) / args.rate
    rounds: list[Round] = []
    for run in range(args.runs):  # interleaved, so a noisy spell hits both alike
        rounds.append(one_round("flarestart", args, messages, run))
        if not args.no_peer:
            rounds.append(one_round("slack-sdk retry handler", args, messages, run))
            rounds.append(one_round(CEILING, args, messages, run))
    result: dict[str, Any] = {
        "channels": args.channels,
        "parts": args.parts,
        "rate": args.rate,
        "floor": floor,
        "part_log": "sqlite" if args.db_part_log else "memory",
        "contenders": {},
    }
    for contender in dict.fromkeys(r.contender for r in rounds):
        mine = [r for r in rounds if r.contender == contender]
        wall = statistics.median(r.wall for r in mine)
        result["contenders"][contender] = {
            "wall": wall,
            "ratio": wall / floor,
            "walls": [round(r.wall, 3) for r in mine],
            "messages": [r.messages for r in mine],
            "lost": sum(r.lost for r in mine),
            "duplicated": sum(r.duplicated for r in mine),
            "rate_limited": [r.rate_limited for r in mine],
        }
    ours_result = result["contenders"]["flarestart"]
    result["pass"] = (
        ours_result["ratio"] <= 1.2 and ours_result["lost"] == 0 and ours_result["duplicated"] == 0
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{args.channels} channels × {args.parts} messages, fake rate {args.rate}/s per channel (burst 1), "
        f"{args.runs} run(s), medians; ours records parts "
        + ("in SQLite (DatabasePartLog)" if args.db_part_log else "in memory")
    )
    print(f"floor (parts − 1) / rate: {floor:.2f} s")
    print(f"{'contender':<26}{'wall s':>8}{'ratio':>8}{'lost':>6}{'dup':>6}{'429s':>14}  walls")
    for name, figures in result["contenders"].items():
        print(
            f"{name:<26}{figures['wall']:>8.2f}{figures['ratio']:>8.2f}{figures['lost']:>6}{figures['duplicated']:>6}"
            f"{figures['rate_limited']!s:>14}  {figures['walls']}"
        )
    if CEILING in result["contenders"]:
        ceiling = result["contenders"][CEILING]["wall"]
        bound = max(floor, ceiling)
        result["bound"] = bound
        print(
            f"the same posts with no rate limit take {ceiling:.2f} s here: flarestart / max(floor, that) = "
            f"{ours_result['wall'] / bound:.2f}"
        )
    print(
        f"target (flarestart within 20% of the floor, none lost or doubled): {'PASS' if result['pass'] else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
