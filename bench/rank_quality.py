"""Ranking quality: tag and cluster a labelled article set, build one digest per topic, score them.

    .venv/bin/python bench/rank_quality.py                      # FlareStart's own labelled set
    .venv/bin/python bench/rank_quality.py --csv articles.csv   # any labelled CSV
    .venv/bin/python bench/rank_quality.py --json               # the same figures as JSON
    .venv/bin/python bench/rank_quality.py --write-csv own.csv  # export the own set as a CSV
    .venv/bin/python bench/rank_quality.py --timing 5000        # CPU for tagging and clustering
    .venv/bin/python bench/rank_quality.py --csv … --show-duplicates  # the same-story pairs in digests

The CSV has the columns title, summary, url, source, published, label, story (and optionally
tags, comma-separated). `label` is a topic slug or a comma list of them (names and aliases of the
taxonomy work too; labels it does not know are reported and ignored); `story` groups the rows
that report the same event (empty = a story of its own).

For each topic with at least 5 labelled articles, a synthetic subscriber follows that topic alone
and gets a digest of 10: tagged weight × freshness (half-life 12 h, age measured from the newest
article), at most 2 per source and 1 per story. Reported: precision@10 per topic (relevant =
the label holds the topic), mean precision@10, nDCG@10, the duplicate-story rate in digests (by
the labelled stories: must be 0), the largest single-source share in a digest, topic coverage,
and pairwise clustering precision and recall against the labelled stories.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures.labelled_articles import labelled_articles, write_csv  # noqa: E402

from bot.ranking.stories import cluster_stories  # noqa: E402
from bot.ranking.topics import Tagger, Taxonomy, load_taxonomy  # noqa: E402
from bot.ranking.types import ArticleText, TopicMatch  # noqa: E402
from bot.sources.normalize import parse_datetime  # noqa: E402

MIN_LABELLED = 5
DIGEST_SIZE = 10
EXCERPT_LIMIT = 300
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "feeds-200"
START = datetime(2025, 6, 2, 6, 0, tzinfo=UTC)
CSV_COLUMNS = ("title", "summary", "url", "source", "published", "label", "story")


@dataclass(frozen=True, slots=True)
class Row:
    """One labelled article, as read from the own set or a CSV."""

    article: ArticleText
    source: str
    labels: frozenset[str]
    story: str


@dataclass
class Report:
    dataset: str
    articles: int
    sources: int
    labelled_stories: int
    ranker: str
    tag_seconds: float
    cluster_seconds: float
    topics: dict[str, dict[str, float]] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    unmapped_labels: dict[str, int] = field(default_factory=dict)
    # each repeat of a labelled story in a digest: topic, story, the earlier pick and the repeat
    duplicate_pairs: list[dict[str, str]] = field(default_factory=list)


# -- input ---------------------------------------------------------------------------------------


def own_rows() -> list[Row]:
    rows = []
    sources: dict[str, int] = {}
    for item in labelled_articles():
        source_id = sources.setdefault(item.source, len(sources) + 1)
        article = ArticleText(
            id=item.id,
            source_id=source_id,
            title=item.title,
            excerpt=item.summary[:EXCERPT_LIMIT],
            tags=item.tags,
            published=item.published,
        )
        rows.append(Row(article, item.source, frozenset(item.labels), item.story))
    return rows


def csv_rows(path: Path, taxonomy: Taxonomy) -> tuple[list[Row], Counter[str]]:
    """Rows of a labelled CSV; labels mapped to topic slugs where the taxonomy knows them."""
    rows: list[Row] = []
    unmapped: Counter[str] = Counter()
    sources: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{path}: missing column(s) {', '.join(missing)}; need {', '.join(CSV_COLUMNS)}")
        for number, record in enumerate(reader, start=2):
            published = parse_datetime(record["published"])
            if published is None:
                raise SystemExit(f"{path}:{number}: cannot read the date {record['published']!r}")
            labels = set()
            for label in (record["label"] or "").split(","):
                if not label.strip():
                    continue
                if label.strip() in taxonomy:
                    labels.add(taxonomy.get(label.strip()).slug)
                else:
                    unmapped[label.strip()] += 1
            source = record["source"] or "?"
            source_id = sources.setdefault(source, len(sources) + 1)
            tags = tuple(t.strip() for t in (record.get("tags") or "").split(",") if t.strip())
            article = ArticleText(
                id=number - 1,
                source_id=source_id,
                title=record["title"] or "",
                excerpt=(record["summary"] or "")[:EXCERPT_LIMIT],
                tags=tags,
                published=published,
            )
            story = record["story"] or f"row-{number}"
            rows.append(Row(article, source, frozenset(labels), story))
    return rows, unmapped


def half_of(rows: Sequence[Row], half: str) -> list[Row]:
    """The rows of every other labelled story (labels sorted; "even" = the 1st, 3rd, … story)."""
    labels = sorted({row.story for row in rows})
    keep = set(labels[0 if half == "even" else 1 :: 2])
    return [row for row in rows if row.story in keep]


# -- the small ranker ----------------------------------------------------------------------------


def digest_for_topic(
    topic: str,
    articles: Sequence[ArticleText],
    tags: Mapping[int, Sequence[TopicMatch]],
    stories: Mapping[int, int],
    *,
    now: datetime,
    size: int = DIGEST_SIZE,
    per_source: int = 2,
    per_story: int = 1,
    half_life: timedelta = timedelta(hours=12),
) -> list[int]:
    """Article ids of a digest for a subscriber who follows `topic` alone, best first.

    Score = the article's tagged weight for the topic × 0.5 ** (age / half-life); then greedily
    at most `per_source` items per source and `per_story` per story. A stand-in for the real
    ranker (bot/ranking/score.py) with the same rules.
    """
    scored = []
    for article in articles:
        weight = next((m.weight for m in tags[article.id] if m.slug == topic), 0.0)
        if weight <= 0.0:
            continue
        age = max(0.0, (now - article.published).total_seconds())
        freshness = 0.5 ** (age / half_life.total_seconds())
        scored.append((weight * freshness, article))
    scored.sort(key=lambda item: (-item[0], item[1].id))
    picked: list[int] = []
    by_source: Counter[int] = Counter()
    by_story: Counter[int] = Counter()
    for _, article in scored:
        story = stories.get(article.id, article.id)
        if by_source[article.source_id] >= per_source or by_story[story] >= per_story:
            continue
        picked.append(article.id)
        by_source[article.source_id] += 1
        by_story[story] += 1
        if len(picked) == size:
            break
    return picked


Ranker = Callable[[str], list[int]]  # topic slug → digest article ids, best first


def choose_ranker(
    articles: Sequence[ArticleText],
    tags: Mapping[int, Sequence[TopicMatch]],
    stories: Mapping[int, int],
    *,
    now: datetime,
    use_score: bool = True,
) -> tuple[str, Ranker]:
    """The project's ranker (bot/ranking/score.py `rank(pool, prefs)`) when it exists and works,
    else the bench's own `digest_for_topic`."""

    def own(topic: str) -> list[int]:
        return digest_for_topic(topic, articles, tags, stories, now=now)

    if not use_score:
        return "bench digest_for_topic", own
    try:
        pool_module = importlib.import_module("bot.ranking.pool")
        score = importlib.import_module("bot.ranking.score")
        types = importlib.import_module("bot.ranking.types")
        pool = pool_module.CandidatePool.build(articles, tags, stories, now=now)
        span = now - min(article.published for article in articles) + timedelta(days=1)

        def real(topic: str) -> list[int]:
            prefs = types.Preferences(
                topics={topic: 1.0}, max_items=DIGEST_SIZE, window=span, half_life=timedelta(hours=12)
            )
            return [item.article_id for item in score.rank(pool, prefs).items]

        real(tags[articles[0].id][0].slug if tags[articles[0].id] else "python")  # does it work?
    except Exception as exc:  # any failure: fall back, and say why
        return f"bench digest_for_topic (bot.ranking.score unusable: {type(exc).__name__}: {exc})", own
    return "bot.ranking.score.rank (pool built by bot.ranking.pool.CandidatePool)", real


# -- metrics -------------------------------------------------------------------------------------


def best_possible(rows: Sequence[Row], topic: str, per_source: int = 2) -> int:
    """Most relevant items a digest could hold: one per labelled story, `per_source` per source
    (a small bipartite matching of stories to source slots)."""
    sources_of: dict[str, set[str]] = {}
    for row in rows:
        if topic in row.labels:
            sources_of.setdefault(row.story, set()).add(row.source)
    slot_owner: dict[tuple[str, int], str] = {}

    def assign(story: str, visited: set[tuple[str, int]]) -> bool:
        for source in sorted(sources_of[story]):
            for slot in range(per_source):
                key = (source, slot)
                if key in visited:
                    continue
                visited.add(key)
                if key not in slot_owner or assign(slot_owner[key], visited):
                    slot_owner[key] = story
                    return True
        return False

    matched = sum(1 for story in sorted(sources_of) if assign(story, set()))
    return min(matched, DIGEST_SIZE)


def ndcg(relevant: Sequence[bool], ideal_count: int) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, hit in enumerate(relevant) if hit)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(ideal_count, DIGEST_SIZE)))
    return dcg / idcg if idcg else 0.0


def pairwise(rows: Sequence[Row], predicted: Mapping[int, int]) -> tuple[float, float, int, int]:
    """Pairwise precision and recall of the predicted stories against the labelled ones."""
    truth: dict[str, list[int]] = {}
    for row in rows:
        truth.setdefault(row.story, []).append(row.article.id)
    true_pairs = {tuple(sorted(p)) for ids in truth.values() for p in combinations(ids, 2)}
    groups: dict[int, list[int]] = {}
    for article_id, story in predicted.items():
        groups.setdefault(story, []).append(article_id)
    found_pairs = {tuple(sorted(p)) for ids in groups.values() for p in combinations(ids, 2)}
    hits = len(true_pairs & found_pairs)
    precision = hits / len(found_pairs) if found_pairs else 1.0
    recall = hits / len(true_pairs) if true_pairs else 1.0
    return precision, recall, len(found_pairs), len(true_pairs)


def evaluate(rows: Sequence[Row], dataset: str, *, corpus_idf: bool = True, use_score: bool = True) -> Report:
    taxonomy = load_taxonomy()
    articles = [row.article for row in rows]
    tagger = Tagger(taxonomy, corpus=articles if corpus_idf else None)
    start = time.process_time()
    tagged = tagger.tag_many(articles)
    tag_seconds = time.process_time() - start
    start = time.process_time()
    stories = cluster_stories(articles)
    cluster_seconds = time.process_time() - start

    tags = {article.id: matches for article, matches in zip(articles, tagged, strict=True)}
    by_id = {row.article.id: row for row in rows}
    now = max(article.published for article in articles)
    ranker_name, make_digest = choose_ranker(articles, tags, stories, now=now, use_score=use_score)
    counts = Counter(label for row in rows for label in row.labels)
    report = Report(
        dataset=dataset,
        articles=len(rows),
        sources=len({row.source for row in rows}),
        labelled_stories=len({row.story for row in rows}),
        ranker=ranker_name,
        tag_seconds=tag_seconds,
        cluster_seconds=cluster_seconds,
    )
    duplicates = items = 0
    for topic in sorted(t for t, n in counts.items() if n >= MIN_LABELLED):
        digest = make_digest(topic)
        relevant = [topic in by_id[i].labels for i in digest]
        best = best_possible(rows, topic)
        seen: dict[str, int] = {}
        dupes = 0
        gains = []
        for i, hit in zip(digest, relevant, strict=True):
            story = by_id[i].story
            repeated = story in seen
            dupes += repeated
            gains.append(hit and not repeated)  # a story shown twice earns once
            if repeated:
                first = by_id[seen[story]]
                report.duplicate_pairs.append(
                    {
                        "topic": topic,
                        "story": story,
                        "first": f"{first.source}: {first.article.title}",
                        "repeat": f"{by_id[i].source}: {by_id[i].article.title}",
                    }
                )
            else:
                seen[story] = i
        duplicates += dupes
        items += len(digest)
        top_source = max(Counter(by_id[i].source for i in digest).values(), default=0)
        report.topics[topic] = {
            "labelled": counts[topic],
            "items": len(digest),
            "precision_at_10": sum(relevant) / DIGEST_SIZE,
            "ceiling": best / DIGEST_SIZE,
            "ndcg_at_10": ndcg(gains, best),
            "duplicates": dupes,
            "top_source_share": top_source / len(digest) if digest else 0.0,
        }
    topics = report.topics.values()
    precision, recall, found_pairs, true_pairs = pairwise(rows, stories)
    tag_p, tag_r = tag_precision_recall(rows, tags)
    report.summary = {
        "topics_evaluated": len(report.topics),
        "mean_precision_at_10": _mean(t["precision_at_10"] for t in topics),
        "mean_ceiling": _mean(t["ceiling"] for t in topics),
        "mean_ndcg_at_10": _mean(t["ndcg_at_10"] for t in topics),
        "duplicate_story_rate": duplicates / items if items else 0.0,
        "largest_source_share": max(
            (t["top_source_share"] for t in topics if t["items"] >= DIGEST_SIZE // 2), default=0.0
        ),
        "topic_coverage": _mean(1.0 if t["precision_at_10"] > 0 else 0.0 for t in topics),
        "cluster_pair_precision": precision,
        "cluster_pair_recall": recall,
        "cluster_pairs_found": found_pairs,
        "cluster_pairs_labelled": true_pairs,
        "tag_micro_precision": tag_p,
        "tag_micro_recall": tag_r,
        "tag_ms_per_1000": 1000 * tag_seconds * 1000 / max(1, len(rows)),
        "cluster_ms_per_1000": 1000 * cluster_seconds * 1000 / max(1, len(rows)),
    }
    return report


def tag_precision_recall(
    rows: Sequence[Row], tags: Mapping[int, Sequence[TopicMatch]]
) -> tuple[float, float]:
    """Micro precision/recall of tagged slugs against labels, over the slugs that appear as labels."""
    known = {label for row in rows for label in row.labels}
    hits = tagged = labelled = 0
    for row in rows:
        found = {m.slug for m in tags[row.article.id]} & known
        hits += len(found & row.labels)
        tagged += len(found)
        labelled += len(row.labels)
    return (hits / tagged if tagged else 0.0), (hits / labelled if labelled else 0.0)


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


# -- timing --------------------------------------------------------------------------------------


def timing_articles(count: int, corpus: Path) -> tuple[list[ArticleText], str]:
    """`count` articles for timing: the real feed corpus when present (parsed with the project's
    parser, published times spread over 72 hours so every article has neighbours in its window),
    else the own labelled set repeated with shifted times."""
    articles: list[ArticleText] = []
    if corpus.is_dir():
        from bot.errors import FeedParseError
        from bot.sources.parse import parse_feed

        for number, path in enumerate(sorted(corpus.iterdir())):
            try:
                feed = parse_feed(path.read_bytes(), url=f"https://feed{number}.example/")
            except FeedParseError:
                continue
            for entry in feed.entries:
                articles.append(
                    ArticleText(
                        len(articles),
                        number,
                        entry.title,
                        entry.excerpt,
                        entry.tags,
                        entry.published or START,
                    )
                )
        label = f"{corpus} (real feeds)"
    else:
        label = "own labelled set, repeated"
    if not articles:
        base = [row.article for row in own_rows()]
        articles = [base[i % len(base)] for i in range(count)]
    articles = [
        ArticleText(
            i, a.source_id, a.title, a.excerpt, a.tags, START + timedelta(seconds=(i * 7919) % (72 * 3600))
        )
        for i, a in enumerate(articles[i % len(articles)] for i in range(count))
    ]
    return articles, label


def measure(count: int, corpus: Path, runs: int = 3) -> dict[str, Any]:
    """Best-of-`runs` CPU seconds to tag and to cluster `count` articles."""
    articles, label = timing_articles(count, corpus)
    tagger = Tagger(load_taxonomy())
    tag_times, cluster_times = [], []
    for _ in range(runs):
        start = time.process_time()
        tagger.tag_many(articles)
        tag_times.append(time.process_time() - start)
        start = time.process_time()
        stories = cluster_stories(articles)
        cluster_times.append(time.process_time() - start)
    return {
        "articles": len(articles),
        "source": label,
        "tag_cpu_seconds": min(tag_times),
        "cluster_cpu_seconds": min(cluster_times),
        "multi_article_stories": sum(1 for n in Counter(stories.values()).values() if n > 1),
    }


# -- output --------------------------------------------------------------------------------------


def render(report: Report, *, show_duplicates: bool = False) -> str:
    lines = [
        f"dataset: {report.dataset} — {report.articles} articles, {report.sources} sources, "
        f"{report.labelled_stories} labelled stories",
        f"ranker: {report.ranker}",
        "",
        f"{'topic':<22} {'labelled':>8} {'items':>5} {'P@10':>5} {'ceil':>5} {'nDCG@10':>7} {'dupes':>5} "
        f"{'top src':>7}",
    ]
    for topic, row in report.topics.items():
        lines.append(
            f"{topic:<22} {int(row['labelled']):>8} {int(row['items']):>5} {row['precision_at_10']:>5.2f} "
            f"{row['ceiling']:>5.2f} {row['ndcg_at_10']:>7.3f} {int(row['duplicates']):>5} "
            f"{row['top_source_share']:>7.2f}"
        )
    s = report.summary
    lines += [
        "",
        f"topics evaluated (≥ {MIN_LABELLED} labelled): {int(s['topics_evaluated'])}",
        f"mean precision@10:        {s['mean_precision_at_10']:.3f}  (ceiling {s['mean_ceiling']:.3f}: "
        "the most a digest could hold, 1 per story and 2 per source)",
        f"mean nDCG@10:             {s['mean_ndcg_at_10']:.3f}",
        f"duplicate-story rate:     {s['duplicate_story_rate']:.3f}  (by labelled stories; must be 0)",
        f"largest source share:     {s['largest_source_share']:.2f}  "
        f"(in any digest of ≥ {DIGEST_SIZE // 2} items)",
        f"topic coverage:           {s['topic_coverage']:.3f}  (topics with ≥ 1 relevant item)",
        f"clustering, pairwise:     precision {s['cluster_pair_precision']:.3f}, recall "
        f"{s['cluster_pair_recall']:.3f}  ({int(s['cluster_pairs_found'])} pairs found, "
        f"{int(s['cluster_pairs_labelled'])} labelled)",
        f"tagging, micro:           precision {s['tag_micro_precision']:.3f}, "
        f"recall {s['tag_micro_recall']:.3f}",
        f"time (CPU):               tagging {report.tag_seconds * 1000:.1f} ms, clustering "
        f"{report.cluster_seconds * 1000:.1f} ms",
    ]
    if show_duplicates:
        lines.append(f"same-story pairs in digests: {len(report.duplicate_pairs)}")
        for pair in report.duplicate_pairs:
            lines += [
                f"  {pair['topic']} (story {pair['story']}):",
                f"    picked  {pair['first']}",
                f"    repeat  {pair['repeat']}",
            ]
    if report.unmapped_labels:
        shown = ", ".join(f"{label} ({n})" for label, n in sorted(report.unmapped_labels.items())[:10])
        lines.append(f"labels not in the taxonomy (ignored): {shown}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--csv", type=Path, help="labelled CSV: title, summary, url, source, published, label, story"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-corpus-idf", action="store_true", help="phrase weights from the taxonomy alone")
    parser.add_argument(
        "--own-ranker", action="store_true", help="use the bench's digest_for_topic, not score.rank"
    )
    parser.add_argument("--write-csv", type=Path, metavar="FILE", help="write the own set as a CSV and stop")
    parser.add_argument(
        "--timing", type=int, metavar="N", help="time tagging and clustering of N articles and stop"
    )
    parser.add_argument(
        "--show-duplicates",
        action="store_true",
        help="list every repeat of a labelled story in a digest, with the pick it repeats",
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="feed folder for --timing")
    parser.add_argument(
        "--half",
        choices=("even", "odd"),
        help="keep every other labelled story (by story label, sorted): tune on one half, check on the other",
    )
    args = parser.parse_args(argv)

    if args.timing:
        figures = measure(args.timing, args.corpus)
        if args.json:
            print(json.dumps(figures, indent=2))
        else:
            print(
                f"{figures['articles']} articles from {figures['source']}: tagging "
                f"{figures['tag_cpu_seconds'] * 1000:.0f} ms CPU, clustering "
                f"{figures['cluster_cpu_seconds'] * 1000:.0f} ms CPU (best of 3); "
                f"{figures['multi_article_stories']} stories with more than one article"
            )
        return 0
    if args.write_csv:
        write_csv(args.write_csv)
        print(f"wrote {args.write_csv}")
        return 0
    unmapped: Counter[str] = Counter()
    if args.csv:
        rows, unmapped = csv_rows(args.csv, load_taxonomy())
        dataset = str(args.csv)
    else:
        rows, dataset = own_rows(), "FlareStart labelled set (bench/fixtures/labelled_articles.py)"
    if args.half:
        rows = half_of(rows, args.half)
        dataset += f" (stories of the {args.half} half)"
    if not rows:
        raise SystemExit("no articles to evaluate")
    report = evaluate(rows, dataset, corpus_idf=not args.no_corpus_idf, use_score=not args.own_ranker)
    report.unmapped_labels = dict(unmapped)
    if args.json:
        print(json.dumps(report.__dict__, indent=2, default=str))
    else:
        print(render(report, show_duplicates=args.show_duplicates))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
