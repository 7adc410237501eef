"""Discord delivery at scale: digests for many webhooks against the fake Discord with its rate limits on.

    .venv/bin/python bench/discord.py                     # 200 webhooks, 6 parts, 2 per 2 s, 3 runs
    .venv/bin/python bench/discord.py --webhooks 50 --parts 4 --limit 1 --per 1 --runs 1

Each run starts a fresh fake Discord in its own process (`python -m bot.testing.fake_discord`, one
fixed rate-limit window per webhook: `--limit` posts every `--per` seconds, as Discord's webhook
buckets are) and renders one digest of `--parts` messages (not timed). Timed: every webhook's
digest posted concurrently through one DiscordPoster. Then each webhook's channel is read back
through `GET /channels/{id}/messages` and every (delivery, part) is counted by its marker: lost =
expected but absent, duplicated = present more than once.

The floor is what the rate limit allows: a webhook takes `limit` parts a window, so its parts need
(ceil(parts / limit) − 1) × per seconds after the first. Target: ours within 20% of the floor, zero
lost, zero duplicated. Peers, measured in the same run on fresh fakes: discord.py's own
`Webhook.send(wait=True)` (its HTTP route base pointed at the fake; it keeps buckets from the
headers too), and a naive poster (aiohttp, one webhook's parts in order, a 429's retry_after slept
and the part retried: what a script without bucket tracking does); and the ceiling, ours with the
fake's rate limit off: what posting that many messages costs on this machine, whatever the limit.
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
import math
import statistics
import subprocess
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import discord
import discord.http

from bot.channels.discord import DiscordDestination, DiscordPoster, part_marker
from bot.channels.parts import MemoryPartLog
from bot.digest.discord import DiscordMessage, DiscordRenderer
from bot.digest.view import DigestItemView, DigestView

TOKEN = "flarestart-discord-bench"
OURS = "flarestart"
DISCORD_PY = "discord.py Webhook"
NAIVE = "naive (sleep on 429)"
CEILING = "no rate limit (ceiling)"
NOW = datetime(2026, 5, 7, 7, 0, tzinfo=UTC)


@dataclass
class Round:
    contender: str
    wall: float
    messages: int
    lost: int
    duplicated: int
    rate_limited: int


def digest(parts: int) -> tuple[DiscordMessage, ...]:
    """A realistic digest that needs exactly `parts` messages (ten items a message)."""
    items = tuple(
        DigestItemView(
            title=f"Story {n}: Python ships an experimental JIT and a better REPL",
            url=f"https://news.example.com/{n}",
            source="The Verge",
            author="Ada Lovelace",
            published=NOW - timedelta(hours=n % 20 + 1),
            excerpt="A free-threaded build, a better REPL and a JIT compiler. " * 3,
            chip="Python",
            reason="because you follow Python",
            also_covered_by=(("Hackernoon", f"https://hackernoon.example.com/{n}"),),
        )
        for n in range(10 * parts)
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
    messages = DiscordRenderer().render(view)
    if len(messages) != parts:
        raise SystemExit(f"no digest of {parts} parts")
    return messages


def start_fake(args: argparse.Namespace, *, limited: bool) -> tuple[subprocess.Popen[str], str, list[str]]:
    command = [sys.executable, "-m", "bot.testing.fake_discord", "--token", TOKEN]
    command += ["--webhooks", str(args.webhooks), "--limit", str(args.limit), "--per", str(args.per)]
    if not limited:
        command.append("--no-rate-limit")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    api_url = process.stdout.readline().strip()
    if not api_url.startswith("http://127.0.0.1:"):
        process.kill()
        raise SystemExit("the fake Discord did not start")
    hooks = [process.stdout.readline().strip() for _ in range(args.webhooks)]
    return process, api_url, hooks


def fake_stats(api_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(api_url.replace("/api/v10", "/_fake/stats"), timeout=10) as answer:
        return dict(json.load(answer))


async def ours(hooks: list[str], api_url: str, messages: tuple[DiscordMessage, ...], run: int) -> float:
    poster = DiscordPoster(token=TOKEN, log=MemoryPartLog(), api_url=api_url)
    try:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                poster.post(DiscordDestination(webhook_url=hook), messages, key=f"bench-{run}/{index}")
                for index, hook in enumerate(hooks)
            )
        )
        return time.perf_counter() - started
    finally:
        await poster.aclose()


async def with_discord_py(
    hooks: list[str], api_url: str, messages: tuple[DiscordMessage, ...], run: int
) -> float:
    discord.http.Route.BASE = api_url
    async with aiohttp.ClientSession() as session:

        async def one(index: int, hook: str) -> None:
            webhook_id, token = hook.rstrip("/").split("/")[-2:]
            webhook = discord.Webhook.partial(int(webhook_id), token, session=session)
            for message in messages:
                payload = message.payload(
                    marker=part_marker(f"peer-{run}/{index}", message.part, message.parts)
                )
                await webhook.send(
                    content=payload["content"],
                    embeds=[discord.Embed.from_dict(embed) for embed in payload["embeds"]],
                    allowed_mentions=discord.AllowedMentions.none(),
                    wait=True,
                )

        started = time.perf_counter()
        await asyncio.gather(*(one(index, hook) for index, hook in enumerate(hooks)))
        return time.perf_counter() - started


async def naive(hooks: list[str], api_url: str, messages: tuple[DiscordMessage, ...], run: int) -> float:
    async with aiohttp.ClientSession() as session:

        async def one(index: int, hook: str) -> None:
            for message in messages:
                payload = message.payload(
                    marker=part_marker(f"peer-{run}/{index}", message.part, message.parts)
                )
                while True:
                    async with session.post(hook, params={"wait": "true"}, json=payload) as answer:
                        body = await answer.json()
                        if answer.status != 429:
                            answer.raise_for_status()
                            break
                    await asyncio.sleep(float(body["retry_after"]))

        started = time.perf_counter()
        await asyncio.gather(*(one(index, hook) for index, hook in enumerate(hooks)))
        return time.perf_counter() - started


async def count(api_url: str, hooks: int, parts: int, prefix: str) -> tuple[int, int, int]:
    """(messages, lost, duplicated) by reading every webhook's channel back through the API."""
    headers = {"Authorization": f"Bot {TOKEN}"}
    lost = duplicated = total = 0
    async with aiohttp.ClientSession(headers=headers) as session:
        for index in range(hooks):
            channel = str(2_000_000 + index)
            async with session.get(
                f"{api_url}/channels/{channel}/messages", params={"limit": "100"}
            ) as answer:
                page = await answer.json()
            seen: Counter[str] = Counter(str(m["content"]).rsplit("\n-# ", 1)[-1] for m in page)
            total += len(page)
            wanted = [part_marker(f"{prefix}/{index}", part, parts) for part in range(1, parts + 1)]
            lost += sum(1 for marker in wanted if seen[marker] == 0)
            duplicated += sum(n - 1 for n in seen.values() if n > 1)
    return total, lost, duplicated


CONTENDERS = {OURS: ours, DISCORD_PY: with_discord_py, NAIVE: naive, CEILING: ours}


def one_round(
    contender: str, args: argparse.Namespace, messages: tuple[DiscordMessage, ...], run: int
) -> Round:
    process, api_url, hooks = start_fake(args, limited=contender != CEILING)
    try:
        wall = asyncio.run(CONTENDERS[contender](hooks, api_url, messages, run))
        prefix = f"bench-{run}" if contender in (OURS, CEILING) else f"peer-{run}"
        total, lost, duplicated = asyncio.run(count(api_url, args.webhooks, args.parts, prefix))
        limited = int(fake_stats(api_url)["rate_limited"])
    finally:
        process.terminate()
        process.wait(timeout=10)
    return Round(contender, wall, total, lost, duplicated, limited)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--webhooks", type=int, default=200)
    parser.add_argument("--parts", type=int, default=6, help="messages per digest")
    parser.add_argument("--limit", type=int, default=2, help="the fake's posts per window per webhook")
    parser.add_argument("--per", type=float, default=2.0, help="the fake's window, in seconds")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    floor = (math.ceil(args.parts / args.limit) - 1) * args.per
    if floor <= 0:
        parser.error(
            "--parts must be more than --limit: a digest that fits one window has no rate-limit floor"
        )
    messages = digest(args.parts)
    rounds: list[Round] = []
    for run in range(args.runs):  # interleaved, so a noisy spell hits every contender alike
        rounds.append(one_round(OURS, args, messages, run))
        if not args.no_peer:
            for contender in (DISCORD_PY, NAIVE, CEILING):
                rounds.append(one_round(contender, args, messages, run))
    result: dict[str, Any] = {
        "webhooks": args.webhooks,
        "parts": args.parts,
        "limit": args.limit,
        "per": args.per,
        "floor": floor,
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
    figures = result["contenders"][OURS]
    result["pass"] = figures["ratio"] <= 1.2 and figures["lost"] == 0 and figures["duplicated"] == 0
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{args.webhooks} webhooks × {args.parts} messages, fake limit {args.limit} per {args.per:g} s per webhook, "
        f"{args.runs} run(s), medians"
    )
    print(f"floor (ceil(parts / limit) − 1) × per: {floor:.2f} s")
    print(f"{'contender':<26}{'wall s':>8}{'ratio':>8}{'lost':>6}{'dup':>6}{'429s':>18}  walls")
    for name, row in result["contenders"].items():
        print(
            f"{name:<26}{row['wall']:>8.2f}{row['ratio']:>8.2f}{row['lost']:>6}{row['duplicated']:>6}"
            f"{row['rate_limited']!s:>18}  {row['walls']}"
        )
    if CEILING in result["contenders"]:
        ceiling = result["contenders"][CEILING]["wall"]
        print(
            f"the same posts with no rate limit take {ceiling:.2f} s here: flarestart / max(floor, that) = "
            f"{figures['wall'] / max(floor, ceiling):.2f}"
        )
    print(
        f"target (flarestart within 20% of the floor, none lost or doubled): {'PASS' if result['pass'] else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
