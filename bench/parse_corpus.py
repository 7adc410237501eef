"""Parse a folder of feeds with `parse_feed` and with plain feedparser; compare cost and counts.

    .venv/bin/python bench/parse_corpus.py                    # ../shared/corpus/feeds-200
    .venv/bin/python bench/parse_corpus.py path/to/feeds --runs 5
    .venv/bin/python bench/parse_corpus.py --compare-paths    # also check fast == fallback

Bodies are read into memory first, so only parsing is timed (CPU seconds, median of the runs).
feedparser runs the way the fallback calls it: sanitize_html=False, resolve_relative_uris=False.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path
from typing import Any

import feedparser

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.errors import FeedParseError  # noqa: E402
from bot.sources.parse import parse_feed  # noqa: E402
from bot.sources.types import ParsedFeed  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "feeds-200"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--compare-paths",
        action="store_true",
        help="parse every well-formed feed both ways and count entries that differ",
    )
    args = parser.parse_args()
    files = sorted(p for p in args.corpus.iterdir() if p.is_file())
    if not files:
        print(f"no files in {args.corpus}", file=sys.stderr)
        return 1
    bodies = [(p.name, p.read_bytes()) for p in files]
    size = sum(len(body) for _, body in bodies)
    print(f"corpus: {args.corpus} ({len(bodies)} files, {size / 1e6:.1f} MB)")

    ours: dict[str, ParsedFeed | FeedParseError] = {}
    theirs: dict[str, Any] = {}

    def run_ours() -> None:
        for name, body in bodies:
            try:
                ours[name] = parse_feed(body, url=f"https://feeds.example/{name}")
            except FeedParseError as exc:
                ours[name] = exc

    def run_feedparser() -> None:
        for name, body in bodies:
            theirs[name] = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)

    ours_cpu = _median_cpu(run_ours, args.runs)
    theirs_cpu = _median_cpu(run_feedparser, args.runs)

    ours_total = sum(len(r.entries) for r in ours.values() if isinstance(r, ParsedFeed))
    theirs_total = sum(len(r.entries) for r in theirs.values())
    parsers = Counter(r.parser for r in ours.values() if isinstance(r, ParsedFeed))
    repaired = [n for n, r in ours.items() if isinstance(r, ParsedFeed) and _repaired(r)]
    errors = {n: str(r) for n, r in ours.items() if isinstance(r, FeedParseError)}

    print(f"\nCPU seconds, median of {args.runs} runs")
    print(f"  parse_feed   {ours_cpu:7.3f}")
    print(f"  feedparser   {theirs_cpu:7.3f}   ({theirs_cpu / ours_cpu:.1f}x)")
    print("\nentries")
    print(f"  parse_feed   {ours_total:7d}")
    print(f"  feedparser   {theirs_total:7d}   (difference {_percent(ours_total, theirs_total)})")
    print(
        f"\nfeeds: {parsers['fast']} fast, {len(repaired)} of them after repairing broken XML, "
        f"{parsers['feedparser']} needed the feedparser fallback, {len(errors)} refused"
    )
    for name in repaired:
        print(f"  repaired  {name}: {_warning(ours[name])}")
    for name, result in ours.items():
        if isinstance(result, ParsedFeed) and result.parser == "feedparser":
            print(f"  fallback  {name}: {result.warning}")
    for name, message in errors.items():
        print(f"  refused   {name}: {message}")

    print("\nfeeds whose entry counts differ")
    differ = 0
    for name, _ in bodies:
        result = ours[name]
        mine = len(result.entries) if isinstance(result, ParsedFeed) else 0
        other = len(theirs[name].entries)
        if mine != other:
            differ += 1
            reason = _why_counts_differ(result, theirs[name], mine, other)
            print(f"  {name}: parse_feed {mine}, feedparser {other}: {reason}")
    if not differ:
        print("  none")

    if args.compare_paths:
        _compare_paths(bodies, ours)
    return 0


def _median_cpu(work: Callable[[], None], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _percent(mine: int, other: int) -> str:
    return f"{(mine - other) / other:+.2%}" if other else "n/a"


def _repaired(feed: ParsedFeed) -> bool:
    return feed.parser == "fast" and bool(feed.warning and feed.warning.startswith("repaired"))


def _warning(feed: ParsedFeed | FeedParseError) -> str:
    return feed.warning or "" if isinstance(feed, ParsedFeed) else str(feed)


def _why_counts_differ(ours: ParsedFeed | FeedParseError, theirs: Any, mine: int, other: int) -> str:
    if isinstance(ours, FeedParseError):
        return f"refused ({ours}); feedparser bozo: {theirs.get('bozo_exception')!r}"
    if ours.format == "json" and other == 0:
        return "JSON Feed (feedparser does not read JSON)"
    identities = [e.get("id") or e.get("link") or (e.get("title"), e.get("summary")) for e in theirs.entries]
    repeated = len(identities) - len(set(identities))
    if repeated and mine == other - repeated:
        return f"{repeated} entries repeat another's guid/link/text; parse_feed keeps the first"
    return f"unexplained (feedparser repeats {repeated} guids/links)"


def _compare_paths(bodies: list[tuple[str, bytes]], ours: dict[str, Any]) -> None:
    """Parse each feed the fast way parsed cleanly with the fallback too; report differences."""
    print("\nfast path vs feedparser fallback on the same feeds (normalized fields)")
    feeds = entries = differing = 0
    fields: Counter[str] = Counter()
    examples: list[str] = []
    for name, body in bodies:
        fast = ours[name]
        if not isinstance(fast, ParsedFeed) or fast.parser != "fast" or fast.format == "json":
            continue
        url = f"https://feeds.example/{name}"
        slow = parse_feed(body, url=url, force_feedparser=True)
        feeds += 1
        if len(fast.entries) != len(slow.entries):
            examples.append(f"{name}: {len(fast.entries)} vs {len(slow.entries)} entries")
        for a, b in zip(fast.entries, slow.entries, strict=False):
            entries += 1
            if a == b:
                continue
            differing += 1
            for field_name, x, y in zip(a.__slots__, astuple(a), astuple(b), strict=True):
                if x != y:
                    fields[field_name] += 1
                    if fields[field_name] <= 3:
                        examples.append(f"{name} {field_name}: {x!r:.90} != {y!r:.90}")
    print(f"  {feeds} feeds, {entries} entries compared, {differing} differ")
    for field_name, count in fields.most_common():
        print(f"    {field_name}: {count}")
    for example in examples:
        print(f"  e.g. {example}")


if __name__ == "__main__":
    raise SystemExit(main())
