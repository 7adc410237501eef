"""The candidate pool: one period's articles as arrays, built once and shared by every subscriber.

Tagging (topics.py) and clustering (stories.py) hand over plain mappings; the pool turns them into
the shapes the scorer multiplies:

- a sparse article × topic weight matrix (CSR), its dense transpose (topic × article, what a
  sparse subscriber × topic matrix is multiplied by) and, per article, its few topics as fixed-width
  "slots" (to find which followed topic an article mostly belongs to without a dense gather);
- ages, source and story positions, story coverage (distinct sources per story, a roundup's
  boost cut by ROUNDUP_FACTOR) and the global source weight, as vectors;
- lazily and cached: per half-life the freshness × coverage × source-weight vector (and the topic
  matrix scaled by it) with a short "probe" list per topic (its best articles before any
  subscriber is known, which the batch ranker uses to guess a per-subscriber score threshold);
  per muted keyword the articles it hides (a token index, so 100k subscribers sharing a few
  hundred keywords cost a few hundred dictionary look-ups); per topic the other topics of the
  articles carrying it (to tell, for many subscribers at once, which articles are its own);
- the Reasons and RankedItems the scorer built, shared by every digest that agrees on them.

Articles outside a subscriber's window stay in the pool: the window is applied per subscriber.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]

from bot.ranking.types import ArticleText, RankedItem, Reason, TopicMatch

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

MUTED_TOPIC_MIN_WEIGHT = 0.3  # an article carrying a muted topic at least this strongly is out
COVERAGE_BOOST = 0.25  # boost = 1 + COVERAGE_BOOST × log2(distinct sources covering the story)
# A roundup ("Business Highlights") gathers stories the digest likely holds already under headlines
# that say what happened: it ranks after them, and fills a digest only when little else is left.
ROUNDUP_FACTOR = 0.25
ALSO_COVERED_CAP = 5  # other articles of a story listed on an item
PROBE_DEPTH = 24  # articles per topic in the probe lists

_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Scales:
    """What one half-life makes of the pool: per-article multipliers and probe lists."""

    half_life_seconds: float
    base: FloatArray  # freshness × coverage boost
    with_sources: FloatArray  # base × global source weight
    scaled_topics: FloatArray  # topic × article: weight × with_sources (a follow row @ it = scores)
    # per topic, its PROBE_DEPTH best articles by weight × with_sources: positions (padded with 0)
    # and which of them are real
    probe_table: IndexArray
    probe_present: BoolArray


class CandidatePool:
    """One period's candidate articles for every subscriber; build it with `CandidatePool.build`.

    Positions (0 … size-1) index every array; `position_of` maps an article id to its position.
    Treat the arrays as read-only: the pool is shared by every subscriber ranked against it.
    """

    now: datetime
    size: int
    article_ids: list[int]
    position_of: dict[int, int]
    topic_index: tuple[str, ...]
    topic_position: dict[str, int]
    topic_weights: sp.csr_matrix  # article × topic, float32
    topic_weights_t: FloatArray  # topic × article, dense, C-contiguous
    slot_topic: npt.NDArray[np.int32]  # article × slots: topic positions, padded with len(topic_index)
    slot_weight: FloatArray  # article × slots: the weights, padded with 0
    muting_t: FloatArray  # topic × article: 1 where the weight reaches MUTED_TOPIC_MIN_WEIGHT
    muted_by: tuple[IndexArray, ...]  # per topic: the articles muting it hides
    topic_articles: tuple[IndexArray, ...]  # per topic: positions of the articles carrying it
    matches: list[dict[int, TopicMatch]]  # per article: topic position → the tagger's match
    age_seconds: npt.NDArray[np.float64]
    ages: list[timedelta]
    source_ids: list[int]
    source_pos: npt.NDArray[np.intp]  # article → position in `sources`
    sources: list[int]  # distinct source ids
    source_number: dict[int, int]  # source id → position in `sources`
    global_source_weight: npt.NDArray[np.float64]  # per distinct source
    story_ids: list[int]
    story_pos: list[int]  # article → dense story number (for set membership in the hot loop)
    story_numbers: npt.NDArray[np.intp]  # the same as an array
    source_pos_list: list[int]  # source_pos as a list
    story_related: list[tuple[int, ...]]  # per story number: the stories too similar to share a digest
    coverage: list[int]
    coverage_boost: npt.NDArray[np.float64]
    roundups: frozenset[int]  # article ids of roundups (`StoryAssignments.roundups`)
    also_covered_by: list[tuple[int, ...]]
    texts: list[str]  # lowercase title + excerpt, for keyword mutes

    reason_cache: dict[tuple[int, int], Reason]  # (position, topics code) → Reason, filled by the scorer
    item_cache: dict[tuple[int, int, float], RankedItem]  # (position, topics code, score) → item
    _scales: dict[float, Scales]
    _rivals: dict[int, tuple[FloatArray, npt.NDArray[np.int32], FloatArray]]
    _keyword_hits: dict[str, IndexArray]
    _tokens: dict[str, list[int]] | None

    @classmethod
    def build(
        cls,
        articles: Sequence[ArticleText],
        topics: Mapping[int, Sequence[TopicMatch]],
        stories: Mapping[int, int],
        *,
        now: datetime,
        source_weights: Mapping[int, float] | None = None,
        topic_index: Sequence[str] | None = None,
        related: Mapping[int, Collection[int]] | None = None,
    ) -> CandidatePool:
        """Arrange one period's articles for ranking.

        `topics` maps an article id to the tagger's matches, `stories` an article id to its story
        (the representative's id; an article not in it is a story of its own). `topic_index`
        fixes the topic columns (default: every slug seen, sorted); matches on other slugs are
        left out. `source_weights` are the global weights (default 1.0; negative counts as 0).
        `related` maps a story id to the stories that came close to it without joining (default:
        `stories.related` when clustering made `stories`): a digest holding one holds none of the
        others, and each lists the others' articles under "also covered by".
        A repeated article id keeps its first occurrence.
        """
        pool = cls.__new__(cls)
        unique: list[ArticleText] = []
        seen: set[int] = set()
        for article in articles:
            if article.id not in seen:
                seen.add(article.id)
                unique.append(article)
        size = len(unique)
        pool.now = now
        pool.size = size
        pool.article_ids = [article.id for article in unique]
        pool.position_of = {aid: pos for pos, aid in enumerate(pool.article_ids)}

        if topic_index is None:
            slugs = {match.slug for aid in pool.article_ids for match in topics.get(aid, ())}
            topic_index = sorted(slugs)
        pool.topic_index = tuple(dict.fromkeys(topic_index))
        pool.topic_position = {slug: pos for pos, slug in enumerate(pool.topic_index)}
        pool._build_topics(topics)

        pool.age_seconds = np.array(
            [max(0.0, _seconds_between(article.published, now)) for article in unique], dtype=np.float64
        )
        pool.ages = [timedelta(seconds=float(seconds)) for seconds in pool.age_seconds]

        pool.source_ids = [article.source_id for article in unique]
        pool.sources = sorted(set(pool.source_ids))
        source_number = {sid: pos for pos, sid in enumerate(pool.sources)}
        pool.source_number = source_number
        pool.source_pos = np.array([source_number[sid] for sid in pool.source_ids], dtype=np.intp)
        pool.source_pos_list = pool.source_pos.tolist()
        weights = source_weights or {}
        pool.global_source_weight = np.array(
            [_clean_weight(weights.get(sid, 1.0)) for sid in pool.sources], dtype=np.float64
        )
        if related is None:
            related = getattr(stories, "related", None) or {}
        pool._build_stories(stories, related)

        pool.texts = [f"{article.title}\n{article.excerpt}".lower() for article in unique]
        pool.reason_cache = {}
        pool.item_cache = {}
        pool._scales = {}
        pool._rivals = {}
        pool._keyword_hits = {}
        pool._tokens = None
        return pool

    def _build_topics(self, topics: Mapping[int, Sequence[TopicMatch]]) -> None:
        size, width = self.size, len(self.topic_index)
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        self.matches = []
        for pos, aid in enumerate(self.article_ids):
            best: dict[int, TopicMatch] = {}
            for match in topics.get(aid, ()):
                column = self.topic_position.get(match.slug)
                weight = min(1.0, _clean_weight(match.weight))
                if column is None or weight <= 0.0:
                    continue
                if column not in best or weight > min(1.0, best[column].weight):
                    best[column] = match
            self.matches.append(dict(sorted(best.items())))
            for column, match in sorted(best.items()):
                rows.append(pos)
                cols.append(column)
                vals.append(min(1.0, match.weight))
        matrix = sp.csr_matrix(
            (
                np.array(vals, dtype=np.float32),
                (np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)),
            ),
            shape=(size, width),
            dtype=np.float32,
        )
        matrix.sort_indices()
        self.topic_weights = matrix
        self.topic_weights_t = np.ascontiguousarray(matrix.T.toarray(), dtype=np.float32)
        self.muting_t = (self.topic_weights_t >= np.float32(MUTED_TOPIC_MIN_WEIGHT)).astype(np.float32)
        self.muted_by = tuple(np.flatnonzero(line).astype(np.intp) for line in self.muting_t)

        per_article = np.diff(matrix.indptr)
        slots = max(1, int(per_article.max(initial=0)))
        self.slot_topic = np.full((size, slots), width, dtype=np.int32)
        self.slot_weight = np.zeros((size, slots), dtype=np.float32)
        if matrix.nnz:
            owner = np.repeat(np.arange(size), per_article)
            slot = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], per_article)
            self.slot_topic[owner, slot] = matrix.indices
            self.slot_weight[owner, slot] = matrix.data
        self.topic_articles = tuple(
            np.flatnonzero(self.topic_weights_t[column] > 0).astype(np.intp) for column in range(width)
        )

    def _build_stories(self, stories: Mapping[int, int], related: Mapping[int, Collection[int]]) -> None:
        self.story_ids = [stories.get(aid, aid) for aid in self.article_ids]
        members: dict[int, list[int]] = {}
        for pos, story in enumerate(self.story_ids):
            members.setdefault(story, []).append(pos)
        number = {story: n for n, story in enumerate(members)}
        self.story_pos = [number[story] for story in self.story_ids]
        self.story_numbers = np.array(self.story_pos, dtype=np.intp)
        self.story_related = [
            tuple(
                sorted(
                    number[other] for other in related.get(story, ()) if other in number and other != story
                )
            )
            for story in members
        ]
        by_number = list(members)
        self.coverage = [0] * self.size
        self.also_covered_by = [()] * self.size
        for story, group in members.items():
            covered = len({self.source_ids[pos] for pos in group})
            ids = [self.article_ids[pos] for pos in group]
            # the near-same stories the digest leaves out because of this one are coverage too
            nearby = [
                self.article_ids[pos]
                for other in self.story_related[number[story]]
                for pos in members[by_number[other]]
            ]
            for pos in group:
                self.coverage[pos] = covered
                if len(group) > 1 or nearby:
                    me = self.article_ids[pos]
                    also = [aid for aid in ids if aid != me] + nearby
                    self.also_covered_by[pos] = tuple(also)[:ALSO_COVERED_CAP]
        self.coverage_boost = 1.0 + COVERAGE_BOOST * np.log2(np.array(self.coverage, dtype=np.float64))
        self.roundups = frozenset(aid for aid in getattr(stories, "roundups", ()) if aid in self.position_of)
        self.coverage_boost[[self.position_of[aid] for aid in self.roundups]] *= ROUNDUP_FACTOR

    # -- cached, per subscriber setting ----------------------------------------------------------

    def scales(self, half_life: timedelta) -> Scales:
        """Freshness × coverage (× global source weight) for one half-life, cached."""
        seconds = half_life.total_seconds()
        cached = self._scales.get(seconds)
        if cached is not None:
            return cached
        if seconds > 0:
            freshness = np.power(0.5, self.age_seconds / seconds)
        else:  # no half-life: no decay
            freshness = np.ones(self.size, dtype=np.float64)
        base = (freshness * self.coverage_boost).astype(np.float32)
        with_sources = (base * self.global_source_weight[self.source_pos].astype(np.float32)).astype(
            np.float32
        )
        table = np.zeros((len(self.topic_index), PROBE_DEPTH), dtype=np.intp)
        present = np.zeros((len(self.topic_index), PROBE_DEPTH), dtype=np.bool_)
        for column, carrying in enumerate(self.topic_articles):
            keys = self.topic_weights_t[column, carrying] * with_sources[carrying]
            best = carrying[np.argsort(-keys, kind="stable")[:PROBE_DEPTH]]
            table[column, : best.size] = best
            present[column, : best.size] = True
        scaled = np.ascontiguousarray(self.topic_weights_t * with_sources, dtype=np.float32)
        scales = Scales(seconds, base, with_sources, scaled, table, present)
        self._scales[seconds] = scales
        return scales

    def rivals(self, topic: int) -> tuple[FloatArray, npt.NDArray[np.int32], FloatArray]:
        """For the articles carrying `topic`: its weight there, their other topic slots and weights."""
        cached = self._rivals.get(topic)
        if cached is None:
            carrying = self.topic_articles[topic]
            slots = self.slot_topic[carrying]
            weights = self.slot_weight[carrying]
            mine = slots == topic
            others = slots.shape[1] - 1
            cached = (
                weights[mine].astype(np.float32),
                slots[~mine].reshape(carrying.size, others),
                weights[~mine].reshape(carrying.size, others),
            )
            self._rivals[topic] = cached
        return cached

    def keyword_hits(self, keyword: str) -> IndexArray:
        """Positions of the articles whose title or excerpt contains `keyword` as whole words.

        Case-insensitive; "go" hits "Go!" and "go-to" but not "Google" or "golang".
        A single word is a token look-up; anything else ("c++", "machine learning") a regular
        expression bounded by non-word characters. Cached per keyword.
        """
        needle = " ".join(keyword.lower().split())
        cached = self._keyword_hits.get(needle)
        if cached is not None:
            return cached
        if not needle:
            hits: list[int] = []
        elif _WORD.fullmatch(needle):
            hits = self._token_index().get(needle, [])
        else:
            pattern = re.compile(
                r"(?<!\w)" + r"\s+".join(re.escape(part) for part in needle.split()) + r"(?!\w)"
            )
            hits = [pos for pos, text in enumerate(self.texts) if pattern.search(text)]
        found = np.array(hits, dtype=np.intp)
        self._keyword_hits[needle] = found
        return found

    def _token_index(self) -> dict[str, list[int]]:
        if self._tokens is None:
            index: dict[str, list[int]] = {}
            for pos, text in enumerate(self.texts):
                for token in set(_WORD.findall(text)):
                    index.setdefault(token, []).append(pos)
            self._tokens = index
        return self._tokens


def _clean_weight(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


def _seconds_between(published: datetime, now: datetime) -> float:
    """now - published in seconds; a naive datetime is taken as UTC."""
    if (published.tzinfo is None) != (now.tzinfo is None):
        if published.tzinfo is None:
            published = published.replace(tzinfo=UTC)
        else:
            now = now.replace(tzinfo=UTC)
    return (now - published).total_seconds()
