"""Ranking benchmark: every subscriber's digest of the day, against a naive per-subscriber loop.

    .venv/bin/python bench/rank.py                                  # 100,000 × 5,000, the targets
    .venv/bin/python bench/rank.py --subscribers 10000 --articles 2000
    .venv/bin/python bench/rank.py --json

The data is synthetic and seeded: 50 topics with Zipf-like popularity (1-3 per article, the first
one strongest), ~60 sources of Zipf-like volume, ~15% of the articles in stories that 2-4 sources
covered, ages spread over 24 h; subscribers follow 1-8 topics (popular ones more often), ~20% mute
1-3 topics, ~10% mute 1-2 keywords from a 200-word vocabulary, ~5% weight or mute a few sources,
~10% have ~20 articles already delivered, ~10% read a weekly digest, ~10% another half-life.

Timed, in this process, with time.perf_counter:
- pool build: `CandidatePool.build` (median of the runs);
- rank_many: every subscriber's digest, in one process and with `--workers` forked workers, runs
  alternating so both meet the same machine load (median of the runs; each run on a freshly built
  pool, so the per-pool caches start cold; the digests are kept, as a caller would). "cpu" is the
  user + system time of this process and of the workers it reaped, over the run: on a shared
  machine, wall above cpu means other work had the cores (the load average is printed too);
- preview: one `rank` call (median of the previews, each for another subscriber);
- naive peer: a plain per-subscriber Python loop (dicts, no numpy, same rules) over a sample of
  subscribers, extrapolated to all of them; its digests are compared with ours.
Peak RSS is `resource.getrusage(...).ru_maxrss`: of this process (RUSAGE_SELF; it includes making
the data and the naive peer, so it overstates what ranking needs) and of the largest worker
(RUSAGE_CHILDREN; pages shared with this process count in both). "rss before ranking" is the
resident size once the inputs exist.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path, where a sibling named like a standard
# module (email.py) would shadow it: look for modules in the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from bot.ranking.pool import COVERAGE_BOOST, MUTED_TOPIC_MIN_WEIGHT, CandidatePool  # noqa: E402
from bot.ranking.score import Digest, rank, rank_many  # noqa: E402
from bot.ranking.types import ArticleText, Preferences, TopicMatch  # noqa: E402


def _words(text: str) -> list[str]:
    return text.split()


TARGET_ALL = 10.0  # seconds for every subscriber
STRETCH_ALL = 5.0
TARGET_RSS_MB = 1500.0
TARGET_PREVIEW_MS = 200.0

TOPICS = _words(
    "ai machine-learning python javascript rust go security cloud devops kubernetes startups "
    "funding apple google microsoft linux open-source databases web frontend backend mobile "
    "android ios gaming hardware chips privacy crypto blockchain java kotlin swift typescript "
    "react data-science career productivity testing api design networking robotics space science "
    "policy climate ebikes science-fiction quantum"
)
FILLER = _words(
    "new release update launch report study guide tutorial deep dive faster build tool team users "
    "developers company market growth model open source engine framework library stack cluster "
    "server browser edge compiler memory latency bug fix breach outage cost pricing deal round "
    "series seed layoffs hiring remote office strategy roadmap preview beta stable version "
    "migration benchmark performance scale platform feature support community conference keynote "
    "talk paper research lab chip device phone laptop store app game players studio console "
    "network protocol standard spec vote bill law court ruling fine investors valuation "
    "acquisition merger partnership contract cloud region zone storage queue stream event schema "
    "index query cache shard replica backup restore incident postmortem patch vulnerability "
    "exploit attack defense audit compliance policy rules energy battery solar grid launchpad "
    "rocket orbit satellite telescope mission crew lunar mars quantum qubit error correction "
    "sensor robot arm drone vehicle ride bike city transit golang gopher googles goals"
)


# -- synthetic data ------------------------------------------------------------------------------


@dataclass
class Day:
    articles: list[ArticleText]
    topics: dict[int, list[TopicMatch]]
    stories: dict[int, int]
    source_weights: dict[int, float]
    now: datetime


def zipf_weights(count: int, exponent: float) -> list[float]:
    return [1.0 / (rank + 1) ** exponent for rank in range(count)]


def make_day(articles: int, seed: int) -> Day:
    rng = random.Random(seed)
    now = datetime(2025, 3, 14, 7, 0, tzinfo=UTC)
    topic_popularity = zipf_weights(len(TOPICS), 1.0)
    sources = list(range(1, 61))
    source_volume = zipf_weights(len(sources), 0.8)
    result: list[ArticleText] = []
    tags: dict[int, list[TopicMatch]] = {}
    stories: dict[int, int] = {}
    next_id = 1000
    while len(result) < articles:
        count = rng.choice((1, 1, 2, 2, 2, 3))
        chosen = weighted_sample(rng, TOPICS, topic_popularity, count)
        matches = [
            TopicMatch(slug, round(rng.uniform(0.7, 1.0) if i == 0 else rng.uniform(0.2, 0.8), 3), (slug,))
            for i, slug in enumerate(chosen)
        ]
        age = rng.uniform(0, 24 * 3600)
        words = [slug.replace("-", " ") for slug in chosen]
        covered = rng.random() < 0.065 and len(result) + 4 < articles  # ~15% of articles end up in stories
        members = rng.choice((2, 2, 3, 4)) if covered else 1
        outlets = weighted_sample(rng, sources, source_volume, members)
        representative = next_id
        for member in range(members):
            title = " ".join(rng.sample(FILLER, 6) + words)
            excerpt = " ".join(rng.sample(FILLER, 24) + words)
            result.append(
                ArticleText(
                    id=next_id,
                    source_id=outlets[member],
                    title=title.capitalize(),
                    excerpt=excerpt,
                    tags=tuple(chosen),
                    published=now - timedelta(seconds=max(0.0, age + rng.uniform(-1800, 1800))),
                )
            )
            tags[next_id] = matches
            if members > 1:
                stories[next_id] = representative
            next_id += 1
    weights = {source: rng.choice((0.8, 1.2)) for source in rng.sample(sources, 8)}
    return Day(result[:articles], tags, stories, weights, now)


def weighted_sample(rng: random.Random, items: Sequence[Any], weights: Sequence[float], k: int) -> list[Any]:
    """k distinct items, each draw proportional to its weight (Efraimidis-Spirakis keys)."""
    keyed = sorted(
        ((rng.random() ** (1.0 / w), item) for item, w in zip(items, weights, strict=True)), reverse=True
    )
    return [item for _, item in keyed[:k]]


def make_subscribers(count: int, day: Day, seed: int) -> tuple[list[Preferences], list[set[int]]]:
    rng = random.Random(seed + 1)
    popularity = zipf_weights(len(TOPICS), 0.8)
    cumulative = list(_accumulate(popularity))
    ids = [article.id for article in day.articles]
    by_topic: dict[str, list[int]] = {}
    for aid, matches in day.topics.items():
        for match in matches:
            by_topic.setdefault(match.slug, []).append(aid)
    sources = sorted({article.source_id for article in day.articles})
    vocabulary = FILLER[:200]
    prefs: list[Preferences] = []
    delivered: list[set[int]] = []
    for _ in range(count):
        follows = rng.randint(1, 8)
        chosen: list[str] = []
        while len(chosen) < follows:
            slug = TOPICS[_pick_index(rng, cumulative)]
            if slug not in chosen:
                chosen.append(slug)
        topics = {slug: (rng.choice((0.5, 2.0)) if rng.random() < 0.2 else 1.0) for slug in chosen}
        muted_topics: frozenset[str] = frozenset()
        if rng.random() < 0.2:
            muted_topics = frozenset(rng.sample([t for t in TOPICS if t not in topics], rng.randint(1, 3)))
        keywords: tuple[str, ...] = ()
        if rng.random() < 0.1:
            keywords = tuple(rng.sample(vocabulary, rng.randint(1, 2)))
        source_weights: dict[int, float] = {}
        muted_sources: frozenset[int] = frozenset()
        if rng.random() < 0.05:
            source_weights = {s: rng.choice((0.5, 1.5, 2.0)) for s in rng.sample(sources, rng.randint(1, 3))}
        if rng.random() < 0.03:
            muted_sources = frozenset(rng.sample(sources, rng.randint(1, 2)))
        weekly = rng.random() < 0.1
        half_life = timedelta(hours=rng.choice((6, 24))) if rng.random() < 0.1 else timedelta(hours=12)
        prefs.append(
            Preferences(
                topics=topics,
                muted_topics=muted_topics,
                muted_keywords=keywords,
                muted_sources=muted_sources,
                source_weights=source_weights,
                max_items=10,
                window=timedelta(days=7) if weekly else timedelta(hours=24),
                half_life=half_life,
            )
        )
        sent: set[int] = set()
        if rng.random() < 0.1:  # half from their own topics (what they were likely sent), half anything
            mine = [aid for slug in chosen for aid in by_topic.get(slug, ())]
            sent.update(rng.sample(mine, min(10, len(mine))))
            sent.update(rng.sample(ids, 10))
        delivered.append(sent)
    return prefs, delivered


def _accumulate(values: Sequence[float]) -> list[float]:
    total = 0.0
    out = []
    for value in values:
        total += value
        out.append(total)
    return out


def _pick_index(rng: random.Random, cumulative: list[float]) -> int:
    target = rng.random() * cumulative[-1]
    lo, hi = 0, len(cumulative) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cumulative[mid] < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


# -- the naive peer ------------------------------------------------------------------------------


class NaiveRanker:
    """What one would write first: per subscriber, score every article in plain Python, sort, pick.

    Same rules as bot.ranking.score (float64 instead of float32, so near-ties may order apart).
    """

    def __init__(self, day: Day) -> None:
        self.articles = day.articles
        self.now = day.now
        self.global_weights = day.source_weights
        self.topics = [{m.slug: min(1.0, m.weight) for m in day.topics.get(a.id, ())} for a in day.articles]
        self.words = [set(f"{a.title}\n{a.excerpt}".lower().replace("-", " ").split()) for a in day.articles]
        self.ages = [(day.now - a.published).total_seconds() for a in day.articles]
        members: dict[int, list[int]] = {}
        for a in day.articles:
            members.setdefault(day.stories.get(a.id, a.id), []).append(a.source_id)
        self.story = [day.stories.get(a.id, a.id) for a in day.articles]
        self.coverage = [len(set(members[s])) for s in self.story]

    def rank(self, prefs: Preferences, delivered: Collection[int]) -> list[int]:
        window = prefs.window.total_seconds()
        half_life = prefs.half_life.total_seconds()
        followed = {t: w for t, w in prefs.topics.items() if t not in prefs.muted_topics and w > 0}
        keywords = [k.lower() for k in prefs.muted_keywords]
        candidates: list[tuple[float, int, str]] = []
        for i, article in enumerate(self.articles):
            if self.ages[i] > window or article.id in delivered or article.source_id in prefs.muted_sources:
                continue
            tags = self.topics[i]
            if any(tags.get(t, 0.0) >= MUTED_TOPIC_MIN_WEIGHT for t in prefs.muted_topics):
                continue
            if any(k in self.words[i] for k in keywords):
                continue
            best_topic, best, relevance = "", 0.0, 0.0
            for slug, weight in tags.items():
                if slug in followed:
                    part = followed[slug] * weight
                    relevance += part
                    if part > best:
                        best_topic, best = slug, part
            if relevance <= 0:
                continue
            source = prefs.source_weights.get(
                article.source_id, self.global_weights.get(article.source_id, 1.0)
            )
            score = (
                relevance
                * 0.5 ** (max(0.0, self.ages[i]) / half_life)
                * (1 + COVERAGE_BOOST * math.log2(self.coverage[i]))
                * source
            )
            if score > 0:
                candidates.append((score, i, best_topic))
        candidates.sort(key=lambda c: (-c[0], c[1]))
        picked: list[int] = []
        served: dict[str, int] = {}
        stories: set[int] = set()
        per_source: dict[int, int] = {}
        taken: set[int] = set()
        round_number = 0
        while len(picked) < prefs.max_items:
            progressed = False
            for _score, i, topic in candidates:
                if i in taken or served.get(topic, 0) != round_number:
                    continue
                article = self.articles[i]
                if self.story[i] in stories or per_source.get(article.source_id, 0) >= prefs.max_per_source:
                    continue
                taken.add(i)
                picked.append(article.id)
                served[topic] = round_number + 1
                stories.add(self.story[i])
                per_source[article.source_id] = per_source.get(article.source_id, 0) + 1
                progressed = True
                if len(picked) >= prefs.max_items:
                    break
            if not progressed:
                break
            round_number += 1
        return picked


# -- measuring -----------------------------------------------------------------------------------


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def rss_now_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 1e6


@dataclass
class Batch:
    """rank_many over every subscriber: wall and CPU seconds of each run (CPU: this process plus
    the workers it reaped)."""

    wall: list[float]
    cpu: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_s": statistics.median(self.wall),
            "cpu_s": statistics.median(self.cpu),
            "runs_s": self.wall,
        }


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg()[0]
    day = make_day(args.articles, args.seed)
    prefs, delivered = make_subscribers(args.subscribers, day, args.seed)

    def build() -> CandidatePool:
        return CandidatePool.build(
            day.articles, day.topics, day.stories, now=day.now, source_weights=day.source_weights
        )

    def one_run(workers: int, into: Batch) -> tuple[list[Digest], CandidatePool]:
        pool = build()  # every run starts with the pool's caches cold
        cpu = cpu_seconds()
        seconds, digests = timed(partial(rank_many, pool, prefs, delivered=delivered, workers=workers))
        into.wall.append(seconds)
        into.cpu.append(cpu_seconds() - cpu)
        return digests, pool

    rss_before = rss_now_mb()
    builds = [timed(build)[0] for _ in range(args.runs)]
    serial = Batch([], [])
    forked = Batch([], []) if args.workers > 1 else None
    same_forked = True
    digests: list[Digest] = []
    for _ in range(args.runs):  # alternate, so both see the same machine load
        digests = []  # let the previous run's digests go first
        digests, pool = one_run(1, serial)
        if forked is not None:
            other, _ = one_run(args.workers, forked)
            same_forked = same_forked and other == digests
            del other

    previews: list[float] = []
    step = max(1, len(prefs) // args.previews)
    for i in range(0, step * args.previews, step):
        seconds, _ = timed(partial(rank, pool, prefs[i % len(prefs)], delivered=delivered[i % len(prefs)]))
        previews.append(seconds)

    sample = list(range(0, len(prefs), max(1, len(prefs) // args.peer_sample)))[: args.peer_sample]
    naive = NaiveRanker(day)
    naive_seconds, naive_picks = timed(lambda: [naive.rank(prefs[i], delivered[i]) for i in sample])
    naive_all = naive_seconds / len(sample) * len(prefs)
    agree = sum(
        1
        for i, picks in zip(sample, naive_picks, strict=True)
        if [x.article_id for x in digests[i].items] == picks
    )
    same_as_rank = sum(1 for i in sample[:200] if rank(pool, prefs[i], delivered=delivered[i]) == digests[i])

    best = min(statistics.median(serial.wall), statistics.median(forked.wall) if forked else math.inf)
    preview_ms = statistics.median(previews) * 1e3
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e3 if forked else 0.0
    return {
        "subscribers": len(prefs),
        "articles": len(day.articles),
        "runs": args.runs,
        "workers": args.workers,
        "load_average_at_start": load,
        "pool_build_s": statistics.median(builds),
        "rank_many_serial": serial.as_dict(),
        "rank_many_forked": forked.as_dict() if forked else None,
        "forked_equals_serial": same_forked,
        "best_s": best,
        "per_subscriber_us": best / len(prefs) * 1e6,
        "preview_ms": preview_ms,
        "naive_sample": len(sample),
        "naive_sample_s": naive_seconds,
        "naive_extrapolated_s": naive_all,
        "speedup_vs_naive": naive_all / best,
        "naive_agreement": agree / len(sample),
        "rank_many_equals_rank": f"{same_as_rank}/{min(200, len(sample))}",
        "items": sum(len(d.items) for d in digests),
        "empty_digests": sum(1 for d in digests if not d.items),
        "rss_before_ranking_mb": rss_before,
        "peak_rss_mb": peak_mb,
        "peak_rss_worker_mb": worker_mb,
        "targets": {
            "all_subscribers_10s": best <= TARGET_ALL,
            "all_subscribers_5s_stretch": best <= STRETCH_ALL,
            "peak_rss_1_5GB": peak_mb <= TARGET_RSS_MB,
            "preview_200ms": preview_ms <= TARGET_PREVIEW_MS,
        },
    }


def print_table(result: dict[str, Any]) -> None:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    def batch_line(data: dict[str, Any]) -> str:
        runs = ", ".join(f"{s:.2f}" for s in data["runs_s"])
        return f"{data['wall_s']:.2f} s wall, {data['cpu_s']:.2f} s cpu  (runs: {runs} s)"

    n, m = result["subscribers"], result["articles"]
    targets = result["targets"]
    rows = [
        ("subscribers × articles", f"{n:,} × {m:,}"),
        ("machine load average at start", f"{result['load_average_at_start']:.2f} (2 cores)"),
        ("pool build (median)", f"{result['pool_build_s'] * 1e3:,.0f} ms"),
        (f"rank_many, 1 process (median of {result['runs']})", batch_line(result["rank_many_serial"])),
    ]
    if result["rank_many_forked"]:
        rows.append(
            (f"rank_many, {result['workers']} forked workers", batch_line(result["rank_many_forked"]))
        )
        rows.append(("  same digests as 1 process", "yes" if result["forked_equals_serial"] else "NO"))
    rows += [
        ("best, per subscriber", f"{result['best_s']:.2f} s  ({result['per_subscriber_us']:.1f} µs each)"),
        ("preview: one rank() (median)", f"{result['preview_ms']:.1f} ms"),
        (
            f"naive peer ({result['naive_sample']:,} subscribers)",
            f"{result['naive_sample_s']:.2f} s → {result['naive_extrapolated_s']:,.0f} s for {n:,}",
        ),
        ("speed-up vs naive (best)", f"{result['speedup_vs_naive']:,.0f}×"),
        ("digests identical to naive", f"{result['naive_agreement']:.1%} of the sample"),
        ("rank_many == rank", result["rank_many_equals_rank"]),
        ("items / empty digests", f"{result['items']:,} / {result['empty_digests']:,}"),
        ("rss before ranking", f"{result['rss_before_ranking_mb']:,.0f} MB"),
        ("peak rss, this process", f"{result['peak_rss_mb']:,.0f} MB (ru_maxrss)"),
    ]
    if result["rank_many_forked"]:
        rows.append(
            ("peak rss, largest worker", f"{result['peak_rss_worker_mb']:,.0f} MB (ru_maxrss, children)")
        )
    rows += [
        (
            "target: all subscribers ≤ 10 s (stretch ≤ 5 s)",
            f"{verdict(targets['all_subscribers_10s'])} ({verdict(targets['all_subscribers_5s_stretch'])})",
        ),
        ("target: peak rss ≤ 1.5 GB", verdict(targets["peak_rss_1_5GB"])),
        ("target: preview ≤ 200 ms", verdict(targets["preview_200ms"])),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3, help="rank_many runs (median)")
    parser.add_argument(
        "--workers", type=int, default=2, help="forked workers for the second batch (1: skip it)"
    )
    parser.add_argument("--previews", type=int, default=20, help="rank() previews (median)")
    parser.add_argument("--peer-sample", type=int, default=1_000, help="subscribers the naive peer ranks")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
