"""Email delivery benchmark: every subscriber's digest ranked, rendered and sent over SMTP, against
the ceiling of plain aiosmtplib sending pre-rendered messages to the same server.

    .venv/bin/python bench/email_delivery.py                        # 10,000 subscribers × 3,000 articles
    .venv/bin/python bench/email_delivery.py --time-budget 0        # ... sending all 10,000 however long
    .venv/bin/python bench/email_delivery.py --subscribers 100000 --time-budget 0   # the 5-minute target
    .venv/bin/python bench/email_delivery.py --runs 3 --json        # medians over 3 interleaved rounds
    .venv/bin/python bench/email_delivery.py --profile              # + where our time goes, step by step
    .venv/bin/python bench/email_delivery.py --per-job              # + the one-job-at-a-time Worker path
    .venv/bin/python bench/email_delivery.py --channel              # + SmtpChannel alone, pre-rendered

Setup (not timed): a fresh SQLite data folder in bench/.work/, a day of generated articles
(realistic titles and excerpts over the taxonomy's topics, 60 sources, ~8% of the stories covered
by 2-3 of them; tagged by the real Tagger and saved with Store.save_entries, as ingest does), N
subscribers with 1-5 topics each, spread over 12 time zones and all due within the last hour. The
SMTP server is bench/_sink.py, aiosmtpd in its own process, counting messages and Message-IDs.

Timed, per round (rounds interleave, so a noisy spell hits every contender alike):
- ceiling: N messages, one real rendered digest's bytes with To and Message-ID changed for each,
  sent by plain aiosmtplib over email.connections connections to the same sink: what the SMTP
  client and the sink can do when nothing else is in the way.
- ours: the real delivery path, as `flarestart run` drives it: `DigestService.plan_due()` (one
  send job per due subscriber, all enqueued in one transaction), then a `BatchSender` draining the
  send jobs (bot/delivery/batch.py): claim 50 at a time, one query for their subscribers and one
  for what they were sent, draft them (rank_many over the shared pool, then jinja2 with the CSS
  inlined into the template once; in a child process, as the daemon does with a core to spare), then delivery.workers lanes that each begin
  a ledger row → SmtpChannel (pooled connections) → commit mark_sent + the job's finish right after
  the 250 (group commits on one database thread). It stops when every job is done, or once sending
  took --time-budget seconds (default 120): the rates are then measured over what was sent, and
  the time for 100,000 is projected (plan time per subscriber × 100k + 100k / send rate).
- channel alone (--channel): the ceiling's messages, encoded ahead, through SmtpChannel (our
  MAIL/RCPT/DATA and connection pool) with nothing else: what of the gap is the channel.
- ours (per-job) (--per-job): the same jobs through a `Worker` (delivery.workers slots) calling
  `DigestService.handle_send` for one job at a time, the path a single send takes.

Reported: msgs/s end to end (plan + send) and of the send phase, wall, the CPU of the bench process
and of the drafting process our path starts (ms per message), and of the sink (it shares the 2
cores), peak RSS of the bench process and of the tree (bench + drafting process + sink) sampled
every 20 ms during the timed region, the ratio to the ceiling, the
100k time, and PASS/FAIL per target (ratio ≥ 60%, 100k ≤ 5 min, peak RSS ≤ 1 GB). Every round
checks that the sink got one distinct Message-ID per sent digest and the ledger as many 'sent'.
--profile adds two passes over a sample of send jobs run by one lane with the sender's threads
and its drafting inline (so one thread does, and shows, all the work): CPU per delivery step,
then cProfile's top 15.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, and this file (email.py) would
# shadow the standard library's `email` package for everything imported after. Put the folder
# last instead (for the sibling helper `_measure`) and the repository first (for `bot`).
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    sys.path.pop(0)
sys.path.append(_HERE)
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import cProfile  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import zoneinfo  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import _measure  # noqa: E402  (bench/ is not a package: the sibling helper module)
import aiosmtplib  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bot.channels.base import OutgoingDigest  # noqa: E402
from bot.channels.email import SmtpChannel, message_bytes  # noqa: E402
from bot.config import Settings, load_settings  # noqa: E402
from bot.daemon import drafting_for_this_machine  # noqa: E402
from bot.delivery.batch import BatchSender  # noqa: E402
from bot.delivery.ledger import DeliveryLedger  # noqa: E402
from bot.delivery.service import SEND_TASK, DigestService  # noqa: E402
from bot.digest.compose import Composer  # noqa: E402
from bot.digest.render import DigestRenderer  # noqa: E402
from bot.digest.view import RenderedDigest  # noqa: E402
from bot.jobs.queue import ClaimedJob, JobQueue  # noqa: E402
from bot.jobs.worker import Worker  # noqa: E402
from bot.ranking.setup import tagger_for, taxonomy_for  # noqa: E402
from bot.ranking.types import ArticleText, Topic  # noqa: E402
from bot.sources.types import ParsedEntry  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.store.store import NewSource  # noqa: E402
from bot.store.subscribers import SubscriberStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work"
SINK = REPO / "bench" / "_sink.py"

# Targets from the issue.
RATIO_TARGET = 0.60  # end-to-end throughput / ceiling
TARGET_100K_S = 300.0  # 100,000 digests in ≤ 5 minutes
RSS_TARGET_MB = 1000.0
PROJECT_FOR = 100_000
TIME_BUDGET = 120.0  # seconds of sending per variant in the default run

ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Kyiv",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# =============================================================================================
# A day of articles
# =============================================================================================

ORGS = [
    "Tensorlake",
    "Northwind",
    "Vantagepoint",
    "Quillsoft",
    "Brightforge",
    "Cobaltix",
    "Lumora",
    "Parsec",
    "Driftwood",
    "Helixa",
    "Marlin",
    "Stackhouse",
    "Orbitfield",
    "Pinecrest",
    "Redshift",
    "Labs",
    "Ironbark",
    "Kestrel",
    "Nimbus",
    "Verity",
    "Wavelength",
    "Zephyr",
    "Atlasworks",
    "Cinder",
    "Datagrove",
    "Emberly",
    "Fathom",
    "Granite",
    "Hearth",
]
PRODUCTS = [
    "Nova",
    "Flux",
    "Atlas",
    "Beacon",
    "Forge",
    "Prism",
    "Relay",
    "Summit",
    "Vector",
    "Harbor",
    "Lattice",
    "Canopy",
    "Spark",
    "Delta",
    "Keystone",
    "Meridian",
    "Quarry",
    "Tundra",
]
FEATURES = (
    "a faster startup",
    "built-in tracing",
    "a new plugin API",
    "smaller binaries",
    "incremental builds",
    "streaming responses",
    "better error messages",
    "zero-downtime upgrades",
    "offline mode",
    "a redesigned dashboard",
    "native ARM support",
    "end-to-end encryption",
)
VERBS = ("deploy", "debug", "profile", "test", "migrate", "secure", "scale", "monitor", "ship", "refactor")
THINGS = ("CLI", "dashboard", "REST API", "chat bot", "search engine", "job queue", "static site", "game")
AUDIENCES = ("beginners", "busy teams", "backend developers", "data folks", "startups", "SREs")
AUTHORS = (
    "Ada Lovelace",
    "Grace Hopper",
    "Linus Park",
    "Maya Chen",
    "Omar Haddad",
    "Sofia Rossi",
    "Kenji Sato",
    "Priya Nair",
    "Lena Novak",
    "Tom Becker",
    None,
    None,
)
NEWS = (
    "{org} releases {product} {ver} with {feature}",
    "{org} launches {product}, a new take on {phrase}",
    "{org} raises ${money}M to build {phrase} tools",
    "{org} acquires {org2} to strengthen its {name} offering",
    "{product} {ver} is out: {feature} and {n} other changes",
    "{org} cuts {n}% of staff as {name} spending slows",
    "Security flaw in {product} puts {phrase} deployments at risk",
    "{org} outage takes down {name} services for hours",
    "{org} open-sources its {phrase} stack",
)
HOWTO = (
    "How to {verb} {phrase} in {n} steps",
    "A practical guide to {phrase} for {audience}",
    "Building a {thing} with {phrase}",
    "{Phrase}: a tutorial for {audience}",
    "Debugging {phrase} in production, step by step",
)
OPINION = (
    "Why {phrase} still matters in 2025",
    "The case against {phrase}",
    "What nobody tells you about {phrase}",
    "I tried {phrase} for a month; here is what I learned",
)
EXCERPTS = (
    "{org} said the release focuses on {phrase} and {phrase2}, after a year of feedback from "
    "{audience}. Early users report {feature} and fewer surprises in {name} projects.",
    "The update brings {feature} to {phrase}. Teams working with {name} can {verb} it today; "
    "the {org} team also published a migration guide and benchmarks against {product}.",
    "We walk through {phrase} from an empty project to a working {thing}, with code you can "
    "copy. Along the way we cover {phrase2}, common mistakes and how to {verb} the result.",
    "Analysts say the move shows how much {name} matters to {org}'s plans. The company did not "
    "share numbers but said {phrase} adoption doubled among {audience} this year.",
)
SOURCE_NAMES = (
    "Byteline",
    "DevDaily",
    "Gadget Ledger",
    "The Stack Report",
    "Kernel Notes",
    "Cloudwatchers",
    "Pixel Press",
    "Syntax Weekly",
    "Data Digest",
    "Startup Wire",
    "Infra Times",
    "Frontend Focus",
    "Backend Beat",
    "Security Brief",
    "AI Signal",
    "Open Source Ops",
    "Mobile Minute",
    "Hardware Hub",
    "Science Desk",
    "Policy Pulse",
)


@dataclass
class DaySetup:
    articles: int
    sources: int
    stories: int
    tagged_topics: float  # mean topics per article
    seconds: float


def _zipf(count: int, exponent: float) -> list[float]:
    return [1.0 / (rank + 1) ** exponent for rank in range(count)]


def _fill(template: str, rng: random.Random, topic: Topic, other: Topic | None) -> str:
    phrases = [p for p in topic.phrases if len(p) > 3] or [topic.name.lower()]
    second = [p for p in (other.phrases if other else ()) if len(p) > 3] or phrases
    phrase = rng.choice(phrases)
    values = {
        "org": rng.choice(ORGS),
        "org2": rng.choice(ORGS),
        "product": rng.choice(PRODUCTS),
        "ver": f"{rng.randint(1, 9)}.{rng.randint(0, 20)}",
        "feature": rng.choice(FEATURES),
        "phrase": phrase,
        "Phrase": phrase[:1].upper() + phrase[1:],
        "phrase2": rng.choice(second),
        "name": topic.name,
        "money": rng.choice((4, 12, 25, 40, 85, 150, 300)),
        "n": rng.randint(3, 12),
        "verb": rng.choice(VERBS),
        "thing": rng.choice(THINGS),
        "audience": rng.choice(AUDIENCES),
    }
    return template.format(**values)


def make_articles(store: Store, settings: Settings, *, count: int, seed: int, now: datetime) -> DaySetup:
    """~count articles of the last 24 h over ~60 sources, tagged and stored as ingest would."""
    started = time.perf_counter()
    rng = random.Random(seed)
    taxonomy = taxonomy_for(settings)
    topics = [t for t in taxonomy.topics if t.kind == "topic"]
    popularity = _zipf(len(topics), 0.9)
    rng.shuffle(popularity)  # which topics are popular is random, not taxonomy order
    names = [f"{base}{'' if n == 0 else f' {n + 1}'}" for n in range(3) for base in SOURCE_NAMES]
    sources = store.add_sources(
        [
            NewSource(name, f"https://{re.sub(r'[^a-z0-9]+', '-', name.lower())}.example/feed")
            for name in names
        ]
    )
    volume = _zipf(len(sources), 0.7)
    tags_topics = {s.id: rng.random() < 0.5 for s in sources}  # half the feeds tag their items
    tagger = tagger_for(())
    per_source: dict[int, list[ParsedEntry]] = {}
    made = stories = topic_total = 0
    while made < count:
        chosen = _weighted_sample(rng, topics, popularity, rng.choice((1, 1, 2, 2, 3)))
        kind = rng.choices((NEWS, HOWTO, OPINION), weights=(6, 3, 1))[0]
        other = chosen[1] if len(chosen) > 1 else None
        age = timedelta(seconds=rng.uniform(60, 23.5 * 3600))
        outlets = _weighted_sample(rng, sources, volume, rng.choice((2, 3)) if rng.random() < 0.08 else 1)
        stories += len(outlets) > 1
        title = _fill(rng.choice(kind), rng, chosen[0], other)
        for outlet in outlets:
            assert outlet.id is not None
            if outlet is not outlets[0]:  # another outlet's words for the same story
                title = title if rng.random() < 0.5 else f"{title} ({rng.choice(('report', 'update'))})"
            excerpt = _fill(rng.choice(EXCERPTS), rng, chosen[0], other)
            tags = tuple(t.name for t in chosen) if tags_topics[outlet.id] else ()
            published = now - age - timedelta(minutes=rng.uniform(0, 40))
            topics_found = tagger.tag(ArticleText(0, 0, title, excerpt, tags, published))
            topic_total += len(topics_found)
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80]
            url = f"https://{outlet.url.split('/')[2]}/{published:%Y/%m/%d}/{slug}-{made}"
            per_source.setdefault(outlet.id, []).append(
                ParsedEntry(
                    key=f"guid:{url}",
                    guid=url,
                    url=url,
                    title=title,
                    excerpt=excerpt,
                    author=rng.choice(AUTHORS),
                    published=published,
                    tags=tags,
                    content_hash=hashlib.sha1(f"{title}\n{excerpt}".encode()).hexdigest(),
                    topics=topics_found,
                )
            )
            made += 1
    for source_id, entries in per_source.items():
        store.save_entries(source_id, entries, now=now)
    return DaySetup(made, len(per_source), stories, topic_total / max(made, 1), time.perf_counter() - started)


def _weighted_sample(rng: random.Random, items: Sequence[Any], weights: Sequence[float], k: int) -> list[Any]:
    """k distinct items, each draw proportional to its weight (Efraimidis-Spirakis keys)."""
    keyed = sorted(((rng.random() ** (1.0 / w), i) for i, w in enumerate(weights)), reverse=True)
    return [items[i] for _, i in keyed[:k]]


def make_subscribers(store: Store, settings: Settings, *, count: int, seed: int, now: datetime) -> float:
    """`count` active subscribers, 1-5 topics each, all due within the last hour in their zone."""
    started = time.perf_counter()
    rng = random.Random(seed + 1)
    taxonomy = taxonomy_for(settings)
    slugs = [t.slug for t in taxonomy.topics if t.kind == "topic"]
    popularity = _zipf(len(slugs), 1.0)
    rng.shuffle(popularity)
    zones = [zoneinfo.ZoneInfo(name) for name in ZONES]
    rows = []
    for n in range(count):
        zone = rng.choice(zones)
        local = now.astimezone(zone) - timedelta(minutes=rng.randint(2, 50))
        followed = _weighted_sample(rng, slugs, popularity, rng.randint(1, 5))
        muted = [s for s in _weighted_sample(rng, slugs, popularity, 1) if s not in followed]
        rows.append(
            {
                "email": f"reader{n:06d}@bench.example",
                "name": f"Reader {n}",
                "timezone": str(zone.key),
                "delivery_time": local.strftime("%H:%M"),
                "frequency": "daily",
                "topics": {slug: rng.choice((1.0, 1.0, 1.0, 2.0)) for slug in followed},
                "muted_topics": muted if rng.random() < 0.1 else [],
                "muted_keywords": [],
                "muted_sources": [],
                "source_weights": {},
                "max_items": 10,
                "origin": "bench",
            }
        )
    subscribers = SubscriberStore(store.engine)
    for start in range(0, len(rows), 5000):
        with subscribers.batch(now=now) as batch:
            for row in rows[start : start + 5000]:
                batch.insert(row)
    return time.perf_counter() - started


# =============================================================================================
# The sink process
# =============================================================================================


class SinkProcess:
    """bench/_sink.py in its own process, driven by one-line commands."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SINK)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None
        hello = json.loads(self.proc.stdout.readline())
        self.port: int = int(hello["port"])
        self.pid: int = int(hello["pid"])

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit")
                self.proc.wait(timeout=10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


# =============================================================================================
# Measuring
# =============================================================================================


class RssPeaks:
    """Peak RSS of this process and of its tree (this process + the sink + the drafting process),
    sampled every 20 ms; and the CPU of the tree's processes other than the sink (`helper_cpu`:
    the drafting process our path starts), as last seen."""

    def __init__(self, sink_pid: int, interval: float = 0.02) -> None:
        self.interval = interval
        self.own = 0
        self.tree = 0
        self.sink_pid = sink_pid
        self._helper_cpu: dict[int, float] = {}
        self._earlier: set[int] = set()  # processes there before we started (an earlier round's)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss", daemon=True)

    @property
    def helper_cpu(self) -> float:
        return sum(self._helper_cpu.values())

    def _loop(self) -> None:
        me = os.getpid()
        while True:
            own = _measure.rss_bytes(me)
            others = _measure.descendants(me)
            tree = own + sum(_measure.rss_bytes(pid) for pid in others)
            self.own, self.tree = max(self.own, own), max(self.tree, tree)
            for pid in others:
                if pid != self.sink_pid and pid not in self._earlier:
                    self._helper_cpu[pid] = max(self._helper_cpu.get(pid, 0.0), _measure.cpu_seconds(pid))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssPeaks:
        self._earlier = set(_measure.descendants(os.getpid()))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Round:
    kind: str  # "ours" | "ceiling"
    messages: int  # accepted by the sink
    wall: float
    cpu: float  # this process and the drafting process it starts, user + sys
    sink_cpu: float
    distinct: int  # distinct Message-IDs the sink saw
    plan_wall: float = 0.0
    send_wall: float = 0.0
    planned: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)
    rss_own: int = 0
    rss_tree: int = 0
    helper_cpu: float = 0.0  # of cpu: the drafting process

    @property
    def rate(self) -> float:
        return self.messages / self.wall if self.wall else 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset_delivery_state(store: Store) -> None:
    """Forget the previous round's sends so the next round starts from the same state."""
    with store.engine.begin() as conn:
        for table in ("sent_articles", "deliveries", "jobs"):
            conn.execute(text(f"DELETE FROM {table}"))
    with store.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def make_worker(service: DigestService, settings: Settings, on_done: Callable[[], None]) -> Worker:
    """The per-job path: a Worker running DigestService.handle_send, one job per slot."""

    async def send(job: ClaimedJob) -> None:
        try:
            await service.handle_send(job)
        finally:
            on_done()

    return Worker(service.queue, {SEND_TASK: send}, settings=settings.delivery)


def make_sender(service: DigestService, on_done: Callable[[], None], *, drafting: str = "") -> BatchSender:
    """The daemon's path (bot/daemon.py): a BatchSender for the send jobs, drafting as it does
    (in a child process when there is a core to spare)."""
    drafting = drafting or drafting_for_this_machine()
    return BatchSender(service, drafting=drafting, on_done=lambda job: on_done())


async def run_ours(
    store: Store,
    settings: Settings,
    sink: SinkProcess,
    max_sends: int = 0,
    budget: float = 0.0,
    *,
    per_job: bool = False,
) -> Round:
    """plan_due + the daemon's BatchSender (or, per_job, a Worker) sending through SmtpChannel.

    With `max_sends` it stops after that many sends, with `budget` once sending took that many
    seconds (the rest stay queued): rates for runs too long to finish.
    """
    channel = SmtpChannel(settings.email)
    service = DigestService(store, settings, channel)
    stop = asyncio.Event()
    handled = 0
    planned = -1

    def on_done() -> None:
        nonlocal handled
        handled += 1
        if handled >= planned >= 0 or 0 < max_sends <= handled:
            stop.set()

    sink.ask("reset")
    cpu0 = _cpu()
    with RssPeaks(sink.pid) as rss:
        started = time.perf_counter()
        planned = await asyncio.to_thread(service.plan_due)
        planned_at = time.perf_counter()
        if planned == 0:
            stop.set()
        if budget:
            asyncio.get_running_loop().call_later(budget, stop.set)
        runner = make_worker(service, settings, on_done) if per_job else make_sender(service, on_done)
        runner.wake()
        await runner.run(stop)
        ended = time.perf_counter()
    cpu = _cpu() - cpu0 + rss.helper_cpu  # the drafting process works for us too
    await channel.aclose()
    stats = sink.ask("stats")
    deliveries = service.ledger.counts()
    return Round(
        kind="ours (per-job)" if per_job else "ours",
        messages=int(stats["messages"]),
        wall=ended - started,
        cpu=cpu,
        helper_cpu=rss.helper_cpu,
        sink_cpu=float(stats["cpu"]),
        distinct=int(stats["distinct"]),
        plan_wall=planned_at - started,
        send_wall=ended - planned_at,
        planned=planned,
        deliveries={k: v for k, v in deliveries.items() if v},
        rss_own=rss.own,
        rss_tree=rss.tree,
    )


async def sample_message(store: Store, settings: Settings) -> tuple[bytes, str, str]:
    """One real digest as it goes on the wire: (bytes, its To address, its Message-ID)."""
    service = DigestService(store, settings, SmtpChannel(settings.email))
    composer = await service.composer()
    for subscriber in service.subscribers.active():
        plan = composer.plan(composer.preferences_of(subscriber))
        if plan.items:
            assert subscriber.id is not None
            outgoing = service.outgoing(subscriber, "sample", plan)
            data = message_bytes(outgoing, settings.email, now=datetime.now(UTC))
            return data, outgoing.to_address, outgoing.message_id
    raise RuntimeError("no subscriber has anything to read today")


def numbered_messages(template: tuple[bytes, str, str], kind: str) -> Callable[[int], tuple[str, str, bytes]]:
    """Message i of a run: the sample digest's bytes with its own To and Message-ID."""
    data, to, message_id = template
    head, body = data.split(b"\r\n\r\n", 1)
    to_bytes, id_bytes = to.encode(), message_id.encode()

    def message(i: int) -> tuple[str, str, bytes]:
        address = f"{kind}{i:06d}@bench.example"
        mid = f"<{kind}.{i}@flarestart.localhost>"
        new_head = head.replace(to_bytes, address.encode(), 1).replace(id_bytes, mid.encode(), 1)
        return address, mid, new_head + b"\r\n\r\n" + body

    return message


async def run_senders(
    kind: str, sink: SinkProcess, senders: Sequence[Callable[[], Any]], n: int, *, sent: bool = False
) -> Round:
    """Run the senders (coroutine functions) side by side and time them as one round."""
    sink.ask("reset")
    cpu0 = _cpu()
    with RssPeaks(sink.pid) as rss:
        started = time.perf_counter()
        await asyncio.gather(*(sender() for sender in senders))
        wall = time.perf_counter() - started
    cpu = _cpu() - cpu0
    stats = sink.ask("stats")
    messages = int(stats["messages"])
    return Round(
        kind=kind,
        messages=messages,
        wall=wall,
        cpu=cpu,
        sink_cpu=float(stats["cpu"]),
        distinct=int(stats["distinct"]),
        # a contender (not the ceiling) reports like ours: all planned, all sent
        send_wall=wall if sent else 0.0,
        planned=n if sent else 0,
        deliveries={"sent": messages} if sent else {},
        rss_own=rss.own,
        rss_tree=rss.tree,
    )


async def run_ceiling(
    settings: Settings, sink: SinkProcess, template: tuple[bytes, str, str], n: int
) -> Round:
    """Plain aiosmtplib: n pre-rendered messages over email.connections connections."""
    message = numbered_messages(template, "ceiling")
    counter = itertools.count()

    async def connection() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port, start_tls=False, timeout=60)
        await smtp.connect()
        try:
            while (i := next(counter)) < n:
                address, _, payload = message(i)
                await smtp.sendmail("digest@flarestart.localhost", [address], payload)
        finally:
            await smtp.quit()

    return await run_senders("ceiling", sink, [connection] * settings.email.connections, n)


async def run_channel_alone(
    settings: Settings, sink: SinkProcess, template: tuple[bytes, str, str], n: int
) -> Round:
    """SmtpChannel alone: the ceiling's n messages, encoded ahead (as drafts are), sent through our
    channel by as many concurrent senders as it has connections; no ranking, rendering or ledger.
    Tells what of the gap to the ceiling is the channel and what the rest of the path."""
    message = numbered_messages(template, "channel")
    rendered = RenderedDigest(subject="", html="", text="", preheader="")
    counter = itertools.count()
    channel = SmtpChannel(settings.email)

    async def sender() -> None:
        while (i := next(counter)) < n:
            address, mid, wire = message(i)
            await channel.send(OutgoingDigest("", address, rendered, mid, "", "bench", wire=wire))

    try:
        return await run_senders("channel alone", sink, [sender] * settings.email.connections, n, sent=True)
    finally:
        await channel.aclose()


# =============================================================================================
# Profiling
# =============================================================================================


# The delivery steps timed one by one: (label, owner, attribute). Nested steps are indented.
def _steps() -> list[tuple[str, Any, str]]:
    import bot.channels.email as email_channel  # the module SmtpChannel.send looks message_bytes up in

    return [
        ("plan_due (per subscriber)", DigestService, "plan_due"),
        ("  enqueue_many (1 txn)", JobQueue, "enqueue_many"),
        ("composer build (pool)", Composer, "__init__"),
        ("job claim (per batch)", JobQueue, "claim"),
        ("subscribers + sent (per batch)", BatchSender, "_look_up"),
        ("composer.preferences_of", Composer, "preferences_of"),
        ("composer.plan_many (rank)", Composer, "plan_many"),
        ("service.view (item views)", DigestService, "view"),
        ("renderer.render", DigestRenderer, "render"),
        ("  css inlining (per page)", DigestRenderer, "_inline"),
        ("SmtpChannel.send", SmtpChannel, "send"),
        ("  message_bytes", email_channel, "message_bytes"),
        ("commit (sent+finish+begin)", BatchSender, "_commit_now"),
        ("  ledger.mark_sent", DeliveryLedger, "mark_sent"),
        ("  ledger.begin", DeliveryLedger, "begin"),
        ("  job finish", JobQueue, "finish"),
    ]


@dataclass
class StepTime:
    calls: int = 0
    cpu: float = 0.0
    wall: float = 0.0


@contextmanager
def timed_steps(steps: Sequence[tuple[str, Any, str]]) -> Iterator[dict[str, StepTime]]:
    """Wrap each step to add up its calls, CPU (this thread) and wall; unwrapped afterwards."""
    times: dict[str, StepTime] = {label: StepTime() for label, _, _ in steps}
    saved = []
    for label, owner, name in steps:
        original = getattr(owner, name)
        record = times[label]
        if asyncio.iscoroutinefunction(original):

            async def wrapper(*args: Any, _f: Any = original, _r: StepTime = record, **kwargs: Any) -> Any:
                cpu, wall = time.thread_time(), time.perf_counter()
                try:
                    return await _f(*args, **kwargs)
                finally:
                    _r.calls += 1
                    _r.cpu += time.thread_time() - cpu
                    _r.wall += time.perf_counter() - wall

        else:

            def wrapper(*args: Any, _f: Any = original, _r: StepTime = record, **kwargs: Any) -> Any:  # type: ignore[misc]
                cpu, wall = time.thread_time(), time.perf_counter()
                try:
                    return _f(*args, **kwargs)
                finally:
                    _r.calls += 1
                    _r.cpu += time.thread_time() - cpu
                    _r.wall += time.perf_counter() - wall

        saved.append((owner, name, original))
        setattr(owner, name, wrapper)
    try:
        yield times
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


@contextmanager
def inline_threads() -> Iterator[None]:
    """Run asyncio.to_thread calls (and the sender's database thread) on the loop's thread, so
    one thread does (and shows) all work."""
    original, original_db, original_commits = asyncio.to_thread, BatchSender._db, BatchSender._run_commits

    async def inline(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    async def inline_db(self: BatchSender, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    def inline_commits(self: BatchSender, loop: asyncio.AbstractEventLoop) -> None:
        self._commit_groups(loop)

    asyncio.to_thread = inline
    BatchSender._db = inline_db  # type: ignore[method-assign]
    BatchSender._run_commits = inline_commits  # type: ignore[method-assign]
    try:
        yield
    finally:
        asyncio.to_thread = original
        BatchSender._db = original_db  # type: ignore[method-assign]
        BatchSender._run_commits = original_commits  # type: ignore[method-assign]


async def run_diagnostic(
    store: Store, settings: Settings, sink: SinkProcess, sample: int, *, profile: bool
) -> dict[str, Any]:
    """plan_due for everyone, then `sample` send jobs by one lane, every thread call inline.

    One lane and one thread: each step's CPU is its own (no overlap, no GIL hand-offs), and
    cProfile (profile=True) sees the database work that normally runs in the thread pool. The
    sender and the service are the real ones; only their concurrency is taken away.
    """
    one_slot = settings.model_copy(update={"delivery": settings.delivery.model_copy(update={"workers": 1})})
    channel = SmtpChannel(settings.email)
    service = DigestService(store, one_slot, channel)
    stop = asyncio.Event()
    handled = 0

    def on_done() -> None:
        nonlocal handled
        handled += 1
        if handled >= sample:
            stop.set()

    sink.ask("reset")
    profiler = cProfile.Profile() if profile else None
    with inline_threads(), timed_steps(_steps() if not profile else []) as times:
        if profiler is not None:
            profiler.enable()
        cpu0, started = time.thread_time(), time.perf_counter()
        planned = service.plan_due()
        planned_cpu = time.thread_time() - cpu0
        await service.composer()  # built once, before the first send (then every 5 minutes)
        build_cpu = time.thread_time() - cpu0 - planned_cpu
        sender = make_sender(service, on_done, drafting="inline")  # drafting in this thread too
        sender.wake()
        await sender.run(stop)
        wall, cpu = time.perf_counter() - started, time.thread_time() - cpu0
        if profiler is not None:
            profiler.disable()
    await channel.aclose()
    result: dict[str, Any] = {"planned": planned, "sent": handled, "wall": wall, "cpu": cpu}
    if profiler is not None:
        report = io.StringIO()
        pstats.Stats(profiler, stream=report).sort_stats("tottime").print_stats(15)
        result["top15"] = _trim_pstats(report.getvalue())
        return result
    send_cpu = cpu - planned_cpu - build_cpu
    steps = []
    for label, record in times.items():
        unit = "subscriber" if label.startswith(("plan_due", "  enqueue")) else "digest"
        unit = "once" if label.startswith("composer build") else unit
        per = {"subscriber": planned, "digest": handled, "once": 1}[unit]
        steps.append(
            {
                "step": label,
                "calls": record.calls,
                "cpu_s": record.cpu,
                "ms_per_digest": record.cpu / per * 1e3 if per else 0.0,
                "per": unit,
                "wall_ms_per_call": record.wall / record.calls * 1e3 if record.calls else 0.0,
            }
        )
    result |= {
        "plan_cpu": planned_cpu,
        "send_cpu": send_cpu,
        "send_cpu_ms_per_digest": send_cpu / handled * 1e3 if handled else 0.0,
        "steps": steps,
    }
    return result


def _trim_pstats(report: str) -> str:
    lines = report.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return "\n".join(line.replace(str(REPO) + "/", "") for line in lines[start:] if line.strip())


# =============================================================================================
# Driver
# =============================================================================================


def bench_settings(data_dir: Path, port: int, args: argparse.Namespace) -> Settings:
    config = data_dir.parent / "flarestart.toml"  # empty: nothing from the caller's folder
    config.write_text("", encoding="utf-8")
    env = {
        "FLARESTART_DATA_DIR": str(data_dir),
        "SMTP_URL": f"smtp://127.0.0.1:{port}",
        "FLARESTART_EMAIL_ALLOW_PLAIN": "1",
        "SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "FLARESTART_LOG_LEVEL": "WARNING",
    }
    if args.connections:
        env["FLARESTART_EMAIL_CONNECTIONS"] = str(args.connections)
    if args.workers:
        env["FLARESTART_DELIVERY_WORKERS"] = str(args.workers)
    return load_settings(env, config_file=config)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = WORK / f"email-{args.subscribers}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sink = SinkProcess()
    try:
        settings = bench_settings(work / "data", sink.port, args)
        store = Store.open(settings)
        now = datetime.now(UTC)
        log(f"setup: {args.articles} articles, {args.subscribers} subscribers in {work}")
        day = make_articles(store, settings, count=args.articles, seed=args.seed, now=now)
        subscribers_s = make_subscribers(store, settings, count=args.subscribers, seed=args.seed, now=now)
        log(f"setup done: articles {day.seconds:.1f}s, subscribers {subscribers_s:.1f}s")
        template = asyncio.run(sample_message(store, settings))
        variants = [False, True] if args.per_job else [False]  # per_job
        rounds: list[Round] = []
        for number in range(args.runs):
            if not args.skip_ceiling:
                log(f"round {number + 1}/{args.runs}: ceiling")
                previous = [r.messages for r in rounds if r.kind != "ceiling"]
                n = previous[-1] if previous else min(args.subscribers, args.max_sends or args.subscribers)
                rounds.append(asyncio.run(run_ceiling(settings, sink, template, n)))
                log(f"  {rounds[-1].messages} msgs in {rounds[-1].wall:.1f}s = {rounds[-1].rate:.0f}/s")
            if args.channel:
                log(f"round {number + 1}/{args.runs}: channel alone")
                previous = [r.messages for r in rounds if r.kind == "ceiling"]
                n = previous[-1] if previous else min(args.subscribers, args.max_sends or args.subscribers)
                rounds.append(asyncio.run(run_channel_alone(settings, sink, template, n)))
                log(f"  {rounds[-1].messages} msgs in {rounds[-1].wall:.1f}s = {rounds[-1].rate:.0f}/s")
            for per_job in variants:
                kind = "ours (per-job)" if per_job else "ours"
                log(f"round {number + 1}/{args.runs}: {kind}")
                reset_delivery_state(store)
                ours = asyncio.run(
                    run_ours(store, settings, sink, args.max_sends, args.time_budget, per_job=per_job)
                )
                rounds.append(ours)
                log(
                    f"  {ours.messages} msgs in {ours.wall:.1f}s = {ours.rate:.0f}/s "
                    f"(plan {ours.plan_wall:.1f}s for {ours.planned}, send {ours.send_wall:.1f}s)"
                )
                if ours.distinct != ours.messages or ours.deliveries.get("sent", 0) != ours.messages:
                    raise RuntimeError(
                        f"delivery mismatch: sink {ours.messages} messages / {ours.distinct} distinct ids, "
                        f"ledger {ours.deliveries}"
                    )
        profile = None
        if args.profile:
            log(f"profile: plan_due + {args.profile_sample} send jobs, one at a time, steps timed")
            reset_delivery_state(store)
            profile = asyncio.run(run_diagnostic(store, settings, sink, args.profile_sample, profile=False))
            log(f"profile: plan_due + {args.profile_sample} send jobs under cProfile")
            reset_delivery_state(store)
            profile["cprofile"] = asyncio.run(
                run_diagnostic(store, settings, sink, args.profile_sample, profile=True)
            )
        store.close()
    finally:
        sink.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return summarize(args, settings, day, subscribers_s, template, rounds, profile)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _projected(rounds: Sequence[Round], subscribers: int) -> float:
    """Seconds for 100,000 digests: plan time scaled per subscriber, then sends at the send rate."""
    plan = _median([r.plan_wall / max(r.planned, 1) for r in rounds]) * PROJECT_FOR
    send_rate = _median([r.messages / r.send_wall for r in rounds if r.send_wall])
    return plan + PROJECT_FOR / send_rate if send_rate else float("inf")


def summarize(
    args: argparse.Namespace,
    settings: Settings,
    day: DaySetup,
    subscribers_s: float,
    template: tuple[bytes, str, str],
    rounds: Sequence[Round],
    profile: dict[str, Any] | None,
) -> dict[str, Any]:
    ceiling = [r for r in rounds if r.kind == "ceiling"]
    ceiling_rate = _median([r.rate for r in ceiling]) if ceiling else None
    kinds = list(dict.fromkeys(r.kind for r in rounds if r.kind != "ceiling"))
    variants: dict[str, Any] = {}
    for kind in kinds:
        mine = [r for r in rounds if r.kind == kind]
        rate = _median([r.rate for r in mine])
        # Done when every planned digest was settled: sent, or skipped as a quiet day, or failed.
        complete = all(
            sum(r.deliveries.get(s, 0) for s in ("sent", "skipped", "failed")) >= r.planned for r in mine
        )
        measured_100k = complete and args.subscribers >= PROJECT_FOR
        projected = _median([r.wall for r in mine]) if measured_100k else _projected(mine, args.subscribers)
        ratio = rate / ceiling_rate if ceiling_rate else None
        rss_own = max(r.rss_own for r in mine)
        variants[kind] = {
            "msgs_per_s": rate,
            "wall": _median([r.wall for r in mine]),
            "plan_wall": _median([r.plan_wall for r in mine]),
            "planned": mine[-1].planned,
            "send_wall": _median([r.send_wall for r in mine]),
            "send_msgs_per_s": _median([r.messages / r.send_wall for r in mine if r.send_wall]),
            "cpu": _median([r.cpu for r in mine]),
            "helper_cpu": _median([r.helper_cpu for r in mine]),
            "cpu_ms_per_msg": _median([r.cpu / r.messages * 1e3 for r in mine if r.messages]),
            "sink_cpu": _median([r.sink_cpu for r in mine]),
            "messages": mine[-1].messages,
            "complete": complete,
            "deliveries": mine[-1].deliveries,
            "peak_rss_own_mb": rss_own / 1e6,
            "peak_rss_tree_mb": max(r.rss_tree for r in mine) / 1e6,
            "ratio": ratio,
            "per_round_ratios": [o.rate / c.rate for c, o in zip(ceiling, mine, strict=False) if c.rate],
            "seconds_100k": projected,
            "measured_100k": measured_100k,
            "targets": {
                "ratio >= 60% of ceiling": None if ratio is None else ratio >= RATIO_TARGET,
                "100k digests <= 5 min": projected <= TARGET_100K_S,
                "peak RSS <= 1 GB": rss_own / 1e6 <= RSS_TARGET_MB,
            },
        }
    return {
        "subscribers": args.subscribers,
        "articles": day.articles,
        "sources": day.sources,
        "multi_source_stories": day.stories,
        "topics_per_article": round(day.tagged_topics, 2),
        "message_bytes": len(template[0]),
        "connections": settings.email.connections,
        "workers": settings.delivery.workers,
        "runs": args.runs,
        "max_sends": args.max_sends,
        "time_budget": args.time_budget,
        "setup_seconds": {"articles": day.seconds, "subscribers": subscribers_s},
        "variants": variants,
        "ceiling": None
        if not ceiling
        else {
            "msgs_per_s": ceiling_rate,
            "wall": _median([r.wall for r in ceiling]),
            "cpu": _median([r.cpu for r in ceiling]),
            "cpu_ms_per_msg": _median([r.cpu / r.messages * 1e3 for r in ceiling if r.messages]),
            "sink_cpu": _median([r.sink_cpu for r in ceiling]),
            "messages": ceiling[-1].messages,
            "peak_rss_own_mb": max(r.rss_own for r in ceiling) / 1e6,
            "peak_rss_tree_mb": max(r.rss_tree for r in ceiling) / 1e6,
        },
        "max_rss_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
        "load_average": os.getloadavg(),
        "rounds": [vars(r) | {"rate": r.rate} for r in rounds],
        "profile": profile,
    }


def print_table(result: dict[str, Any]) -> None:
    variants: dict[str, Any] = result["variants"]
    ceiling = result["ceiling"]
    print(
        f"\nEmail delivery: {result['subscribers']:,} subscribers × {result['articles']:,} articles "
        f"({result['sources']} sources), {result['connections']} SMTP connections, "
        f"{result['workers']} worker slots, {result['runs']} round(s), medians; "
        f"digest ≈ {result['message_bytes'] / 1024:.0f} KB"
        + (f"; stopped after {result['max_sends']:,} sends" if result["max_sends"] else "")
    )
    limit = "send limit" if result["max_sends"] else f"{result['time_budget']:g} s budget"
    for kind, data in variants.items():
        if not data["complete"]:
            print(
                f"  {kind}: sent {data['messages']:,} of {data['planned']:,} planned digests within its "
                f"{limit}; rates are measured over those, the 100k time is projected from them"
            )

    def cell(kind: str, key: str, fmt: str) -> str:
        data = ceiling if kind == "ceiling" else variants[kind]
        value = None if data is None else data.get(key)
        return "" if value is None else format(value, fmt)

    columns = [*variants, "ceiling"]
    header = ["", *[f"{kind}" if kind != "ceiling" else "ceiling (aiosmtplib)" for kind in columns]]
    rows = [
        header,
        ["msgs/s end to end", *[cell(k, "msgs_per_s", ".0f") for k in columns]],
        ["wall s", *[cell(k, "wall", ".1f") for k in columns]],
        ["  plan_due s", *[cell(k, "plan_wall", ".1f") for k in columns]],
        ["  send s", *[cell(k, "send_wall", ".1f") for k in columns]],
        ["  send msgs/s", *[cell(k, "send_msgs_per_s", ".0f") for k in columns]],
        ["messages", *[cell(k, "messages", ",") for k in columns]],
        ["bench CPU s", *[cell(k, "cpu", ".1f") for k in columns]],
        ["  of it drafting process", *[cell(k, "helper_cpu", ".1f") for k in columns]],
        ["  ms per message", *[cell(k, "cpu_ms_per_msg", ".2f") for k in columns]],
        ["sink CPU s", *[cell(k, "sink_cpu", ".1f") for k in columns]],
        ["peak RSS bench MB", *[cell(k, "peak_rss_own_mb", ".0f") for k in columns]],
        ["peak RSS tree MB", *[cell(k, "peak_rss_tree_mb", ".0f") for k in columns]],
        ["ratio to ceiling", *[cell(k, "ratio", ".0%") for k in columns]],
        ["100k digests s", *[cell(k, "seconds_100k", ".0f") for k in columns]],
    ]
    width = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  " + "  ".join(c.ljust(width[i]) if i == 0 else c.rjust(width[i]) for i, c in enumerate(row)))
    print()
    for kind, data in variants.items():
        how = (
            "measured" if data["measured_100k"] else "projected: plan per subscriber + sends at the send rate"
        )
        rounds = ", ".join(f"{r:.0%}" for r in data["per_round_ratios"])
        print(f"  {kind}: deliveries {data['deliveries']}; ratio per round {rounds or '-'}; 100k {how}")
        for name, ok in data["targets"].items():
            print(f"    {'PASS' if ok else 'FAIL' if ok is not None else 'n/a '}  {name}")
    print(f"  load average: {', '.join(f'{x:.2f}' for x in result['load_average'])}")
    profile = result.get("profile")
    if profile:
        print_profile(profile)


def print_profile(profile: dict[str, Any]) -> None:
    print(
        f"\nWhere the time goes: plan_due for {profile['planned']:,} subscribers, then "
        f"{profile['sent']:,} sends one at a time on one thread (CPU of this process; the sink "
        f"runs apart). Send path: {profile['send_cpu_ms_per_digest']:.2f} ms CPU per digest."
    )
    print(f"  {'step':<32} {'calls':>8} {'CPU ms':>8}   per      {'share':>6}  {'wall ms/call':>12}")
    per_digest = profile["send_cpu_ms_per_digest"]
    for step in profile["steps"]:
        share = step["ms_per_digest"] / per_digest if step["per"] == "digest" and per_digest else None
        print(
            f"  {step['step']:<32} {step['calls']:>8,} {step['ms_per_digest']:>8.3f}   "
            f"{step['per']:<10} {'' if share is None else f'{share:.0%}':>5}  "
            f"{step['wall_ms_per_call']:>12.3f}"
        )
    top_level = sum(
        s["ms_per_digest"] for s in profile["steps"] if s["per"] == "digest" and not s["step"].startswith(" ")
    )
    print(f"  {'(rest: worker loop, asyncio, logging)':<32} {'':>8} {per_digest - top_level:>8.3f}")
    cprofile = profile.get("cprofile")
    if cprofile:
        print(f"\n  cProfile, same pass ({cprofile['sent']:,} sends), top 15 by own time:")
        for line in cprofile["top15"].splitlines():
            print("  " + line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--articles", type=int, default=3_000, help="articles of the day (2,000-5,000)")
    parser.add_argument("--runs", type=int, default=1, help="rounds (ceiling, ours); medians reported")
    parser.add_argument("--connections", type=int, default=0, help="email.connections (0 = setting: 4)")
    parser.add_argument("--workers", type=int, default=0, help="delivery.workers (0 = setting: 4)")
    parser.add_argument(
        "--max-sends", type=int, default=0, help="stop our run after this many sends (0 = all); projects 100k"
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=TIME_BUDGET,
        help="seconds our send phase may take before it stops and projects (0 = until done)",
    )
    parser.add_argument(
        "--channel",
        action="store_true",
        help="also run SmtpChannel alone on the ceiling's pre-rendered messages",
    )
    parser.add_argument(
        "--per-job",
        action="store_true",
        help="also run the per-job path (a Worker calling DigestService.handle_send)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="add the step timing and cProfile passes")
    parser.add_argument("--profile-sample", type=int, default=1000, help="send jobs in the profile passes")
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep bench/.work/email-N afterwards")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
