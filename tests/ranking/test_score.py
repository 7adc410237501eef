"""Ranking a subscriber's digest: score, exclusions, diversity, reasons, and the batch path.

Small pools are built by hand so the right answer is known; the batch path (`rank_many`) is checked
against the one-subscriber path (`rank`), and `rank` against a plain-Python reading of the rules.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bot.ranking.pool import CandidatePool
from bot.ranking.score import Digest, rank, rank_many
from bot.ranking.stories import cluster_stories
from bot.ranking.types import ArticleText, Preferences, TopicMatch

NOW = datetime(2025, 3, 14, 7, 0, tzinfo=UTC)


def article(
    aid: int, *, source: int | None = None, hours: float = 1.0, title: str = "", excerpt: str = ""
) -> ArticleText:
    return ArticleText(
        id=aid,
        source_id=aid if source is None else source,
        title=title or f"Article {aid}",
        excerpt=excerpt,
        tags=(),
        published=NOW - timedelta(hours=hours),
    )


def tag(slug: str, weight: float = 1.0, *terms: str) -> TopicMatch:
    return TopicMatch(slug, weight, terms or (slug,))


def pool_of(
    *rows: tuple[ArticleText, Sequence[TopicMatch]],
    stories: dict[int, int] | None = None,
    source_weights: dict[int, float] | None = None,
) -> CandidatePool:
    return CandidatePool.build(
        [a for a, _ in rows],
        {a.id: list(matches) for a, matches in rows},
        stories or {},
        now=NOW,
        source_weights=source_weights,
    )


def ids(digest: Digest) -> list[int]:
    return [item.article_id for item in digest.items]


def follows(*slugs: str, **options: object) -> Preferences:
    return Preferences(topics=dict.fromkeys(slugs, 1.0), **options)  # type: ignore[arg-type]


# -- score -----------------------------------------------------------------------------------------


def test_fresher_articles_rank_first_and_decay_by_the_half_life() -> None:
    pool = pool_of(
        (article(1, hours=10), [tag("python")]),
        (article(2, hours=1), [tag("python")]),
        (article(3, hours=4), [tag("python")]),
    )

    digest = rank(pool, follows("python"))
    slower = rank(pool, follows("python", half_life=timedelta(hours=2)))

    assert ids(digest) == [2, 3, 1]
    assert [item.score for item in digest.items] == pytest.approx([0.5 ** (h / 12) for h in (1, 4, 10)])
    assert [item.score for item in slower.items] == pytest.approx([0.5 ** (h / 2) for h in (1, 4, 10)])
    assert digest.empty_reason is None


def test_relevance_sums_followed_topic_weights_times_follow_weights() -> None:
    pool = pool_of(
        (article(1), [tag("python", 0.5), tag("ai", 0.8)]),
        (article(2), [tag("python", 1.0)]),
    )

    digest = rank(pool, Preferences(topics={"python": 1.0, "ai": 2.0}))

    by_id = {item.article_id: item.score for item in digest.items}
    freshness = 0.5 ** (1 / 12)
    assert by_id[1] == pytest.approx((0.5 * 1.0 + 0.8 * 2.0) * freshness)
    assert by_id[2] == pytest.approx(1.0 * freshness)


def test_global_and_subscriber_source_weights_scale_the_score() -> None:
    pool = pool_of(
        (article(1, source=10), [tag("rust")]),
        (article(2, source=20, hours=3), [tag("rust")]),
        source_weights={10: 0.5},
    )

    plain = rank(pool, follows("rust"))
    boosted = rank(pool, follows("rust", source_weights={20: 3.0}))

    assert ids(plain) == [2, 1]  # source 10 counts half
    assert plain.items[1].score == pytest.approx(0.5 * 0.5 ** (1 / 12))
    assert boosted.items[0].score == pytest.approx(3.0 * 0.5 ** (3 / 12))


# -- diversity -------------------------------------------------------------------------------------


def test_one_item_per_story_the_best_member_shown_with_the_others_listed() -> None:
    pool = pool_of(
        (article(1, source=1, hours=3), [tag("ai")]),
        (article(2, source=2, hours=1), [tag("ai")]),
        (article(3, source=3, hours=2), [tag("ai")]),
        (article(4, source=4, hours=1.5), [tag("ai", 0.2)]),
        stories={1: 1, 2: 1, 3: 1},
    )

    digest = rank(pool, follows("ai"))

    assert ids(digest) == [2, 4]
    lead = digest.items[0]
    assert lead.story_id == 1
    assert set(lead.also_covered_by) == {1, 3}
    assert lead.reason.coverage == 3
    assert lead.score == pytest.approx(0.5 ** (1 / 12) * (1 + 0.25 * math.log2(3)))
    assert digest.items[1].also_covered_by == ()


def test_at_most_two_items_per_source_unless_told_otherwise() -> None:
    busy = [(article(i, source=1, hours=i / 10), [tag("go")]) for i in range(1, 6)]
    quiet = [(article(10 + i, source=2, hours=5 + i), [tag("go")]) for i in range(1, 4)]
    pool = pool_of(*busy, *quiet)

    digest = rank(pool, follows("go"))
    strict = rank(pool, follows("go", max_per_source=1))

    assert ids(digest) == [1, 2, 11, 12]
    assert ids(strict) == [1, 11]


def test_every_followed_topic_gets_a_place_before_any_gets_a_second() -> None:
    pool = pool_of(
        *[(article(i, hours=i / 10), [tag("python")]) for i in range(1, 7)],
        (article(20, hours=20), [tag("rust", 0.4)]),
        (article(21, hours=22), [tag("rust", 0.3)]),
        (article(30, hours=23), [tag("elm", 0.2)]),
    )

    two = rank(pool, follows("python", "rust"))
    three = rank(pool, follows("python", "rust", "elm"))

    assert ids(two)[:2] == [1, 20]  # rust second although five python articles score higher
    assert ids(two)[2:4] == [2, 21]  # then a second of each
    assert ids(three)[:3] == [1, 20, 30]
    assert [m.slug for item in three.items[:3] for m in item.reason.topics] == ["python", "rust", "elm"]


def test_an_article_counts_for_its_strongest_followed_topic() -> None:
    pool = pool_of(
        (article(1, hours=1), [tag("python", 0.9), tag("rust", 0.3)]),
        (article(2, hours=2), [tag("python", 0.8)]),
        (article(3, hours=20), [tag("rust", 0.5)]),
    )

    digest = rank(pool, follows("python", "rust"))

    # article 1 is python's (0.9 > 0.3): rust's own article comes before python's second
    assert ids(digest) == [1, 3, 2]
    assert [m.slug for m in digest.items[0].reason.topics] == ["python", "rust"]


def test_max_items_is_respected() -> None:
    pool = pool_of(*[(article(i, hours=i / 3), [tag("ai")]) for i in range(1, 31)])

    assert len(rank(pool, follows("ai")).items) == 10
    assert ids(rank(pool, follows("ai", max_items=3))) == [1, 2, 3]
    nothing = rank(pool, follows("ai", max_items=0))
    assert nothing.items == ()
    assert nothing.empty_reason is not None


# -- exclusions ------------------------------------------------------------------------------------


def test_a_muted_topic_drops_articles_that_carry_it_strongly() -> None:
    pool = pool_of(
        (article(1), [tag("python"), tag("crypto", 0.5)]),
        (article(2), [tag("python"), tag("crypto", 0.2)]),
        (article(3), [tag("python")]),
    )

    digest = rank(pool, follows("python", muted_topics=frozenset({"crypto"})))

    assert ids(digest) == [2, 3]


def test_a_followed_topic_that_is_also_muted_counts_as_muted() -> None:
    pool = pool_of((article(1), [tag("python")]), (article(2), [tag("rust")]))

    digest = rank(pool, follows("python", "rust", muted_topics=frozenset({"rust"})))

    assert ids(digest) == [1]


def test_muted_keywords_match_whole_words_case_insensitively() -> None:
    pool = pool_of(
        (article(1, title="Go 1.23 is out"), [tag("programming")]),
        (article(2, title="Google ships a new model"), [tag("programming")]),
        (article(3, title="Writing golang services"), [tag("programming")]),
        (article(4, excerpt="Why we moved to GO!"), [tag("programming")]),
        (article(5, title="Machine   Learning in practice"), [tag("programming")]),
        (article(6, title="C++ 26 contracts"), [tag("programming")]),
        (article(7, title="Learning machine code"), [tag("programming")]),
    )

    digest = rank(pool, follows("programming", muted_keywords=("go", "machine learning", "C++")))

    assert sorted(ids(digest)) == [2, 3, 7]


def test_muted_sources_and_delivered_articles_are_out() -> None:
    pool = pool_of(*[(article(i, source=i % 3), [tag("cloud")]) for i in range(1, 10)])

    digest = rank(
        pool, follows("cloud", muted_sources=frozenset({0}), max_per_source=9), delivered={1, 2, 99}
    )

    assert sorted(ids(digest)) == [4, 5, 7, 8]


def test_the_window_drops_older_articles() -> None:
    pool = pool_of(
        (article(1, hours=2), [tag("space")]),
        (article(2, hours=30), [tag("space")]),
        (article(3, hours=24 * 6), [tag("space")]),
    )

    assert ids(rank(pool, follows("space"))) == [1]
    assert ids(rank(pool, follows("space", window=timedelta(days=7)))) == [1, 2, 3]


# -- reasons and empty digests -------------------------------------------------------------------


def test_each_item_says_which_followed_topics_matched_its_age_and_coverage() -> None:
    python = tag("python", 0.9, "python", "py")
    pool = pool_of((article(1, hours=3), [python, tag("ai", 0.6), tag("security", 0.4)]))

    item = rank(pool, Preferences(topics={"python": 1.0, "security": 1.0})).items[0]

    assert item.reason.topics == (python, tag("security", 0.4))  # only followed topics, strongest first
    assert item.reason.age == timedelta(hours=3)
    assert item.reason.coverage == 1


def test_no_match_gives_an_empty_digest_that_names_the_topics() -> None:
    pool = pool_of(*[(article(i), [tag("python")]) for i in range(1, 4)])

    digest = rank(pool, follows("haskell", "elm"))

    assert digest.items == ()
    assert digest.empty_reason == "none of the 3 articles of the last 24 h match haskell, elm"


@pytest.mark.parametrize(
    ("prefs", "delivered", "reason"),
    [
        (follows("python"), {1, 2, 3}, "all 3 matching articles were already sent"),
        (follows("python", muted_keywords=("article",)), (), "everything matching was muted (3 articles)"),
        (
            follows("python", muted_sources=frozenset({1})),
            {2, 3},
            "all 3 matching articles were muted or already sent",
        ),
        (Preferences(topics={}), (), "follows no topics"),
        (
            follows("python", muted_topics=frozenset({"python"})),
            (),
            "every followed topic is also muted (python)",
        ),
        (follows("python", window=timedelta(minutes=30)), (), "no articles in the last 30 min"),
    ],
)
def test_empty_digests_say_why(prefs: Preferences, delivered: Collection[int], reason: str) -> None:
    pool = pool_of(*[(article(i), [tag("python")]) for i in range(1, 4)])

    single = rank(pool, prefs, delivered=delivered)
    [batch] = rank_many(pool, [prefs], delivered=[delivered])

    assert single == batch == Digest((), reason)


def test_an_empty_pool_never_crashes() -> None:
    pool = pool_of()

    digest = rank(pool, follows("python"))

    assert digest == Digest((), "no articles in the last 24 h")
    assert rank_many(pool, [follows("python"), follows()]) == [digest, Digest((), "follows no topics")]


# -- the batch path --------------------------------------------------------------------------------

TOPICS = [f"topic-{i}" for i in range(24)]
WORDS = ["go", "rust", "cloud", "launch", "model", "chip", "court", "layoffs", "funding", "browser"]


def random_day(rng: random.Random, count: int) -> CandidatePool:
    popularity = [1 / (i + 1) for i in range(len(TOPICS))]
    rows: list[tuple[ArticleText, list[TopicMatch]]] = []
    stories: dict[int, int] = {}
    aid = 100
    while len(rows) < count:
        slugs = list(dict.fromkeys(rng.choices(TOPICS, popularity, k=rng.choice((1, 1, 2, 3)))))
        matches = [tag(s, round(rng.uniform(0.1, 1.0), 2)) for s in slugs]
        hours = rng.uniform(0, 40)
        members = rng.choice((2, 3)) if rng.random() < 0.08 else 1
        first = aid
        for _ in range(members):
            title = " ".join(rng.sample(WORDS, 3))
            rows.append((article(aid, source=rng.randint(1, 15), hours=hours, title=title), matches))
            if members > 1:
                stories[aid] = first
            aid += 1
    return pool_of(*rows, stories=stories, source_weights={1: 0.7, 2: 1.3})


def random_subscriber(rng: random.Random, pool: CandidatePool) -> tuple[Preferences, set[int]]:
    chosen = rng.sample(TOPICS[:12], rng.randint(1, 4)) + rng.sample(TOPICS[12:], rng.randint(0, 3))
    prefs = Preferences(
        topics={slug: rng.choice((1.0, 1.0, 0.5, 2.0)) for slug in chosen},
        muted_topics=frozenset(rng.sample(TOPICS, rng.randint(0, 2))),
        muted_keywords=tuple(rng.sample(WORDS, rng.choice((0, 0, 1)))),
        muted_sources=frozenset(rng.sample(range(1, 16), rng.choice((0, 0, 0, 1)))),
        source_weights={
            s: rng.choice((0.0, 0.5, 2.0)) for s in rng.sample(range(1, 16), rng.choice((0, 0, 2)))
        },
        max_items=rng.choice((10, 10, 5, 1, 20)),
        window=rng.choice((timedelta(hours=24), timedelta(hours=24), timedelta(days=7), timedelta(hours=6))),
        half_life=rng.choice((timedelta(hours=12), timedelta(hours=12), timedelta(hours=3), timedelta(0))),
        max_per_source=rng.choice((2, 2, 1, 3)),
    )
    delivered = set(rng.sample(pool.article_ids, rng.choice((0, 0, 0, 15))))
    return prefs, delivered


@pytest.mark.parametrize(("seed", "articles", "chunk"), [(1, 300, 64), (2, 1500, 97), (3, 3000, 2048)])
def test_rank_many_equals_rank_for_random_subscribers(seed: int, articles: int, chunk: int) -> None:
    rng = random.Random(seed)
    pool = random_day(rng, articles)
    people = [random_subscriber(rng, pool) for _ in range(300)]
    prefs = [p for p, _ in people]
    delivered = [d for _, d in people]

    batch = rank_many(pool, prefs, delivered=delivered, chunk=chunk)

    one_by_one = [rank(pool, p, delivered=d) for p, d in people]
    assert batch == one_by_one
    assert sum(len(d.items) for d in batch) > 300  # not a vacuous agreement on empty digests


def test_forked_workers_give_the_same_digests() -> None:
    rng = random.Random(4)
    pool = random_day(rng, 1000)
    people = [random_subscriber(rng, pool) for _ in range(200)]
    prefs = [p for p, _ in people]
    delivered = [d for _, d in people]

    forked = rank_many(pool, prefs, delivered=delivered, chunk=32, workers=2)

    assert forked == rank_many(pool, prefs, delivered=delivered, chunk=32)
    assert forked[7] == rank(pool, prefs[7], delivered=delivered[7])


def test_rank_follows_the_documented_rules_read_plainly() -> None:
    rng = random.Random(5)
    pool = random_day(rng, 800)
    for _ in range(150):
        prefs, delivered = random_subscriber(rng, pool)
        assert ids(rank(pool, prefs, delivered=delivered)) == plain_rank(pool, prefs, delivered)


def plain_rank(pool: CandidatePool, prefs: Preferences, delivered: Collection[int]) -> list[int]:
    """The rules of bot.ranking.score, one article at a time, in float64."""
    index = {slug: n for n, slug in enumerate(pool.topic_index)}
    followed = {s: w for s, w in prefs.topics.items() if s not in prefs.muted_topics and w > 0 and s in index}
    seconds = prefs.half_life.total_seconds()
    candidates = []
    for pos, aid in enumerate(pool.article_ids):
        matches = {index[m.slug]: m.weight for m in pool.matches[pos].values()}
        age = pool.age_seconds[pos]
        source = pool.source_ids[pos]
        text = pool.texts[pos]
        if age > prefs.window.total_seconds() or aid in delivered or source in prefs.muted_sources:
            continue
        if any(matches.get(index.get(s, -1), 0.0) >= 0.3 for s in prefs.muted_topics):
            continue
        words = set("".join(c if c.isalnum() or c == "_" else " " for c in text).split())
        if any(k in words for k in prefs.muted_keywords):
            continue
        parts = [(followed[s] * matches[index[s]], index[s]) for s in followed if index[s] in matches]
        relevance = sum(p for p, _ in parts)
        weight = prefs.source_weights.get(source, 0.7 if source == 1 else 1.3 if source == 2 else 1.0)
        freshness = 0.5 ** (age / seconds) if seconds > 0 else 1.0
        roundup = 0.25 if aid in pool.roundups else 1.0
        score = (
            relevance * freshness * (1 + 0.25 * math.log2(pool.coverage[pos])) * roundup * max(weight, 0.0)
        )
        if score > 0:
            bucket = min(parts, key=lambda p: (-p[0], p[1]))[1]
            candidates.append((-score, pos, bucket))
    candidates.sort()
    picked: list[int] = []
    served: dict[int, int] = {}
    stories: set[int] = set()
    per_source: dict[int, int] = {}
    round_number = 0
    while len(picked) < prefs.max_items:
        progressed = False
        for _, pos, bucket in candidates:
            if len(picked) >= prefs.max_items:
                break
            if pool.article_ids[pos] in picked or served.get(bucket, 0) != round_number:
                continue
            story, source = pool.story_ids[pos], pool.source_ids[pos]
            if story in stories or per_source.get(source, 0) >= prefs.max_per_source:
                continue
            picked.append(pool.article_ids[pos])
            served[bucket] = round_number + 1
            stories.add(story)
            per_source[source] = per_source.get(source, 0) + 1
            progressed = True
        if not progressed:
            break
        round_number += 1
    return picked


def test_rank_many_checks_its_arguments() -> None:
    pool = pool_of((article(1), [tag("python")]))

    with pytest.raises(ValueError, match="delivered"):
        rank_many(pool, [follows("python")], delivered=[])
    with pytest.raises(ValueError, match="chunk"):
        rank_many(pool, [follows("python")], chunk=0)
    assert rank_many(pool, []) == []


def test_a_story_related_to_a_picked_one_is_left_out_and_listed_as_also_covered() -> None:
    """The second guard: clustering kept two stories apart, yet they are too close for one digest."""
    now = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
    titles = {
        1: "Fed's Plosser: Taper pace may be too slow",
        2: "Plosser says weather hit jobs",
        3: "Oil falls",
    }
    articles = [ArticleText(i, i, t, "", (), now - timedelta(hours=i)) for i, t in titles.items()]
    topics = {i: (TopicMatch("business", 0.9, ("fed",)),) for i in titles}
    prefs = Preferences(topics={"business": 1.0})

    apart = rank(CandidatePool.build(articles, topics, {1: 1, 2: 2, 3: 3}, now=now), prefs)
    pool = CandidatePool.build(articles, topics, {1: 1, 2: 2, 3: 3}, now=now, related={1: {2}, 2: {1}})
    guarded = rank(pool, prefs)

    assert [item.article_id for item in apart.items] == [1, 2, 3]
    assert [item.article_id for item in guarded.items] == [1, 3]
    assert guarded.items[0].also_covered_by == (2,)
    assert rank_many(pool, [prefs, prefs], chunk=1) == [guarded, guarded]


def test_a_roundup_ranks_after_the_articles_that_name_their_story_and_fills_what_is_left() -> None:
    """ "Business Highlights" gathers stories the digest likely holds under their own headlines."""
    now = datetime(2014, 3, 11, 22, 0, tzinfo=UTC)
    titles = {
        1: "Business Highlights",
        2: "Sbarro files for bankruptcy protection for the second time",
        3: "UniCredit posts record loss after writedowns",
    }
    articles = [ArticleText(i, i, t, "", (), now - timedelta(minutes=10 * i)) for i, t in titles.items()]
    topics = {i: (TopicMatch("business", 0.9, ("business",)),) for i in titles}
    stories = cluster_stories(articles)
    pool = CandidatePool.build(articles, topics, stories, now=now)

    assert stories.roundups == {1}
    assert ids(rank(pool, follows("business"))) == [2, 3, 1]  # the freshest, yet last
    assert ids(rank(pool, follows("business", max_items=2))) == [2, 3]
    assert ids(rank(pool, follows("business"), delivered={2, 3})) == [1]  # nothing else left
    assert ids(rank(CandidatePool.build(articles, topics, {}, now=now), follows("business"))) == [1, 2, 3]
