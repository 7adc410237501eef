"""Rank like a newsroom, explain like a friend: each subscriber's best articles of the period.

Score of article a for subscriber s (float32, computed the same way by `rank` and `rank_many`):

    relevance = Σ_t follow_weight[s, t] × weight[a, t]    over s's followed topics that are not muted
    freshness = 0.5 ** (age(a) / half_life[s])          (a half-life of 0 means no decay)
    coverage  = 1 + 0.25 × log2(distinct sources that covered a's story)
    source    = s's weight for a's source if s set one, else the pool's global weight (default 1.0)
    score     = relevance × freshness × coverage × source

An article is out when its score is 0 (no followed topic matched, or a source weight of 0), when it
is older than s's window, carries a muted topic with weight ≥ 0.3, contains a muted keyword (whole
word, case-insensitive, title and excerpt), comes from a muted source, or was already delivered.

Diversity decides the order. Each candidate belongs to one *topic bucket*: the followed topic that
contributes most to its relevance (ties: the topic first in the pool's topic index). Picking goes in
rounds: in round r every bucket already served r times gets its best remaining article, best score
first; an article is passed over for good once its story is in the digest or its source has
`max_per_source` items (below 1 counts as 1). Picking stops at `max_items` or when a round finds
nothing. So a subscriber following python and rust sees the best rust article second even when ten
python articles score higher, and every matched topic shows up before any topic shows up twice.
Ties in score go to the article that came first in the pool.

`rank` scores one subscriber against the whole pool and picks from every match: the preview, and
the reference. `rank_many` gives exactly the same digests for many subscribers at once:

1. Per chunk of subscribers, one sparse (subscriber × topic) @ (topic × weight × freshness ×
   coverage × source) product gives every score (subscribers with their own half-life or source
   weights get their own rows); windows, mutes and delivered articles are zeroed in place.
2. Instead of sorting 5,000 scores per subscriber, a threshold: the (2 × max_items)-th best score
   among a few "probe" articles of each followed topic (the pool's best for that topic), so about
   that many articles reach it. Those that do are the candidates; each bucket's candidates are
   then exactly its best articles, in order, whatever the threshold.
3. A bucket the threshold starves (a quiet topic next to a busy one) gets its next best articles
   under the threshold, enough for its share of the rounds (ceil(max_items / topics) + 3).
4. The round-robin runs in Python over those few candidates per subscriber; if a bucket runs dry
   before what is known of it ends, more of it is fetched from the scores and picking starts over.
5. Items are built once per (article, score, reason) and shared between digests (they are frozen).

With `workers` > 1, forked processes do steps 1-4 for whole chunks and hand back compact picks;
this process builds the items and digests (5) as they arrive.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]

from bot.ranking.pool import PROBE_DEPTH, BoolArray, CandidatePool, FloatArray, IndexArray
from bot.ranking.types import Preferences, RankedItem, Reason

TINY = np.float32(np.finfo(np.float32).tiny)  # the smallest score that counts as a match
PROBE_TOPICS = 8  # followed topics per subscriber that contribute probe articles
PROBE_FACTOR = 2  # the threshold is about the (PROBE_FACTOR × max_items)-th best score
BUCKET_SLACK = 3  # a bucket starves below ceil(max_items / followed topics) + BUCKET_SLACK candidates
FETCH_DEPTH = 8  # articles of a bucket fetched at a time when picking runs past what is known
DEFAULT_CHUNK = 2048


@dataclass(frozen=True, slots=True)
class Digest:
    """One subscriber's picks, best first; when there are none, why."""

    items: tuple[RankedItem, ...]
    empty_reason: str | None = None


def rank(pool: CandidatePool, prefs: Preferences, *, delivered: Collection[int] = ()) -> Digest:
    """The digest of one subscriber (a preview), from every article of the pool."""
    if prefs.max_items <= 0:
        return Digest((), _NOTHING_TO_PICK)
    block = _Block(pool, [prefs], [delivered])
    row = block.scores[0]
    cols = np.flatnonzero(row >= TINY)
    if cols.size == 0:
        return Digest((), _explain_empty(pool, prefs, delivered))
    values = row[cols]
    order = np.lexsort((cols, -values))
    cols = cols[order]
    values = values[order]
    buckets = block.buckets(np.zeros(cols.size, dtype=np.intp), cols)
    picks, missing = _pick(
        _queues(buckets.tolist()),
        pool.story_numbers[cols].tolist(),
        pool.source_pos[cols].tolist(),
        prefs.max_items,
        prefs.max_per_source,
        set(),
        pool.story_related,
    )
    assert missing < 0  # every bucket is complete
    chosen = cols[picks]
    topics = _matched_topics(block, np.zeros(chosen.size, dtype=np.intp), chosen)
    return Digest(tuple(_items(pool, chosen.tolist(), values[picks].tolist(), topics)))


def rank_many(
    pool: CandidatePool,
    prefs: Sequence[Preferences],
    *,
    delivered: Sequence[Collection[int]] | None = None,
    chunk: int = DEFAULT_CHUNK,
    workers: int = 1,
) -> list[Digest]:
    """The digests of many subscribers, in order; each equals `rank(pool, prefs[i], ...)`.

    Subscribers go `chunk` at a time. With `workers` > 1 (where processes can fork), that many
    forked processes score and pick the chunks while this one turns their picks into digests:
    faster when cores are free, but forking is for a process that is not in the middle of other
    threads' work (one call at a time; a worker job, not a request handler).
    """
    if delivered is not None and len(delivered) != len(prefs):
        raise ValueError(f"delivered has {len(delivered)} entries for {len(prefs)} subscribers")
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    sent: Sequence[Collection[int]] = delivered if delivered is not None else [()] * len(prefs)
    starts = range(0, len(prefs), chunk)
    digests: list[Digest] = []
    if workers > 1 and len(starts) > 1 and "fork" in multiprocessing.get_all_start_methods():
        forked = _forked_picks(pool, prefs, sent, chunk, workers)
        try:
            for start, picks in zip(starts, forked, strict=True):
                part = slice(start, start + chunk)
                digests.extend(_chunk_digests(pool, prefs[part], sent[part], picks))
        finally:
            forked.close()  # stops the workers at once if building a digest failed
        return digests
    for start in starts:
        digests.extend(_rank_chunk(pool, prefs[start : start + chunk], sent[start : start + chunk]))
    return digests


# What forked workers read: set just before forking, so they inherit it instead of unpickling it.
_FORKED: tuple[CandidatePool, Sequence[Preferences], Sequence[Collection[int]], int] | None = None


def _forked_picks(
    pool: CandidatePool,
    prefs: Sequence[Preferences],
    delivered: Sequence[Collection[int]],
    chunk: int,
    workers: int,
) -> Generator[_Picks, None, None]:
    """Each chunk's picks, in order, computed by `workers` forked processes."""
    global _FORKED
    for half_life in {p.half_life for p in prefs}:  # fill the pool's caches once, before forking
        pool.scales(half_life)
    for keyword in {keyword for p in prefs for keyword in p.muted_keywords}:
        pool.keyword_hits(keyword)
    for topic in range(len(pool.topic_index)):
        pool.rivals(topic)
    _FORKED = (pool, prefs, delivered, chunk)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as processes:
            yield from processes.imap(_picks_of_chunk, range(0, len(prefs), chunk))
    finally:
        _FORKED = None


def _picks_of_chunk(start: int) -> _Picks:
    assert _FORKED is not None, "only for forked workers"
    pool, prefs, delivered, chunk = _FORKED
    return _chunk_picks(pool, prefs[start : start + chunk], delivered[start : start + chunk])


_NOTHING_TO_PICK = "max_items is 0: nothing to pick"


# -- scoring a block of subscribers --------------------------------------------------------------


class _Block:
    """The scores of a few subscribers against every article (dense: subscribers × articles)."""

    def __init__(
        self, pool: CandidatePool, prefs: Sequence[Preferences], delivered: Sequence[Collection[int]]
    ) -> None:
        self.pool = pool
        n = len(prefs)
        width = len(pool.topic_index)
        position = pool.topic_position
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        halves: dict[float, list[int]] = {}
        windows: dict[float, list[int]] = {}
        custom: list[int] = []
        zero_rows: list[int] = []
        zero_cols: list[IndexArray] = []
        for row, p in enumerate(prefs):
            muted = p.muted_topics
            for slug, weight in p.topics.items():
                column = position.get(slug)
                if column is not None and weight > 0 and math.isfinite(weight) and slug not in muted:
                    indices.append(column)
                    data.append(weight)
            indptr.append(len(indices))
            seconds = p.half_life.total_seconds()
            group = halves.get(seconds)
            if group is None:
                halves[seconds] = [row]
            else:
                group.append(row)
            seconds = p.window.total_seconds()
            group = windows.get(seconds)
            if group is None:
                windows[seconds] = [row]
            else:
                group.append(row)
            if p.source_weights or p.muted_sources:
                custom.append(row)
            for slug in muted:
                column = position.get(slug)
                if column is not None:
                    zero_rows.append(row)
                    zero_cols.append(pool.muted_by[column])
            for keyword in p.muted_keywords:
                zero_rows.append(row)
                zero_cols.append(pool.keyword_hits(keyword))
            if delivered[row]:
                known = pool.position_of
                zero_rows.append(row)
                zero_cols.append(
                    np.array([known[aid] for aid in delivered[row] if aid in known], dtype=np.intp)
                )

        follow = sp.csr_matrix(
            (np.array(data, dtype=np.float32), np.array(indices, dtype=np.int32), np.array(indptr)),
            shape=(n, width),
        )
        follow.sort_indices()
        self.follow = follow
        self.follow_dense = np.zeros((n, width + 1), dtype=np.float32)
        self.follow_dense[:, :width] = follow.toarray()

        # score = Σ follow × (topic weight × freshness × coverage × source): one product for the
        # most common half-life, a smaller one per other half-life, and for subscribers with their
        # own source weights relevance × (freshness × coverage × their source weights)
        main = max(halves, key=lambda seconds: len(halves[seconds]))
        self.main_half_life = timedelta(seconds=main)
        scores: FloatArray = np.asarray(follow @ pool.scales(self.main_half_life).scaled_topics)
        mine = set(custom)
        for seconds, rows in halves.items():
            plain = [row for row in rows if row not in mine]
            if seconds != main and plain:
                scales = pool.scales(timedelta(seconds=seconds))
                scores[plain] = np.asarray(follow[plain] @ scales.scaled_topics)
        if custom:
            relevance = np.asarray(follow[custom] @ pool.topic_weights_t)
            for j, row in enumerate(custom):
                p = prefs[row]
                vector = pool.scales(p.half_life).base * _source_vector(pool, p)
                np.multiply(relevance[j], vector, out=scores[row])
        for seconds, rows in windows.items():
            old = np.flatnonzero(pool.age_seconds > seconds)
            if old.size:
                scores[np.ix_(np.array(rows, dtype=np.intp), old)] = 0
        if zero_rows:
            sizes = [part.size for part in zero_cols]
            scores[np.repeat(np.array(zero_rows, dtype=np.intp), sizes), np.concatenate(zero_cols)] = 0
        self.scores = scores

    def contributions(self, rows: IndexArray, cols: IndexArray) -> FloatArray:
        """follow weight × topic weight, per (row, article) and per topic slot of the article."""
        slots = self.pool.slot_topic[cols]
        found: FloatArray = self.follow_dense[rows[:, None], slots] * self.pool.slot_weight[cols]
        return found

    def buckets(self, rows: IndexArray, cols: IndexArray) -> npt.NDArray[np.int32]:
        """The topic bucket of each (row, article): its strongest followed topic."""
        strongest = self.contributions(rows, cols).argmax(axis=1)
        found: npt.NDArray[np.int32] = self.pool.slot_topic[cols, strongest]
        return found

    def elsewhere(self, rows: IndexArray, bucket: int) -> BoolArray:
        """rows × pool.topic_articles[bucket]: True where the article is in another bucket."""
        pool = self.pool
        own_weight, rivals, rival_weights = pool.rivals(bucket)
        follow = self.follow_dense.take(rows, axis=0)
        own = np.multiply.outer(follow[:, bucket], own_weight)
        strongest = np.zeros_like(own)
        for k in range(rivals.shape[1]):
            np.maximum(strongest, follow.take(rivals[:, k], axis=1) * rival_weights[:, k], out=strongest)
        found: BoolArray = strongest > own
        tied = np.flatnonzero((strongest == own) & (own > 0))
        if tied.size:  # equal strength: the topic first in the index wins, as `buckets` decides
            at_row = tied // own.shape[1]
            cols = pool.topic_articles[bucket][tied - at_row * own.shape[1]]
            found.reshape(-1)[tied] = self.buckets(rows[at_row], cols) != bucket
        return found


def _source_vector(pool: CandidatePool, prefs: Preferences) -> FloatArray:
    """Per article: the subscriber's weight for its source (the global one unless set; muted = 0)."""
    weights = pool.global_source_weight.copy()
    number = pool.source_number
    for sid, weight in prefs.source_weights.items():
        if sid in number:
            weights[number[sid]] = weight if math.isfinite(weight) and weight > 0 else 0.0
    for sid in prefs.muted_sources:
        if sid in number:
            weights[number[sid]] = 0.0
    vector: FloatArray = weights[pool.source_pos].astype(np.float32)
    return vector


# -- the batch path ------------------------------------------------------------------------------


@dataclass
class _Candidates:
    """Per chunk: the candidates of every row, row by row, best first (flat lists)."""

    cols: list[int]
    values: list[float]
    buckets: list[int]
    stories: list[int]  # story number of each candidate
    sources: list[int]  # source number (position in pool.sources) of each candidate
    ends: list[int]  # per row: the end of its candidates
    finished: dict[int, set[int]]  # row → buckets known in full although the row has a threshold


@dataclass(frozen=True, slots=True)
class _Picks:
    """One chunk's picks, flat and compact (they cross process boundaries): per row how many,
    then per pick the article position, its score and the followed topics it matched."""

    counts: list[int]
    cols: IndexArray
    values: FloatArray
    topics: npt.NDArray[np.int32]  # picks × slots, strongest first, padded with len(topic_index)


def _rank_chunk(
    pool: CandidatePool, prefs: Sequence[Preferences], delivered: Sequence[Collection[int]]
) -> list[Digest]:
    return _chunk_digests(pool, prefs, delivered, _chunk_picks(pool, prefs, delivered))


def _chunk_picks(
    pool: CandidatePool, prefs: Sequence[Preferences], delivered: Sequence[Collection[int]]
) -> _Picks:
    """Score a chunk of subscribers, take their candidates and pick each one's items."""
    block = _Block(pool, prefs, delivered)
    limits = np.array([max(0, p.max_items) for p in prefs], dtype=np.intp)
    threshold = _thresholds(block, limits)
    found = _candidates(block, threshold, limits)
    open_rows: list[bool] = (threshold > TINY).tolist()
    indptr: list[int] = block.follow.indptr.tolist()
    followed: list[int] = block.follow.indices.tolist()
    finished = found.finished
    nothing: frozenset[int] = frozenset()

    pick_cols: list[int] = []
    pick_values: list[float] = []
    counts: list[int] = []
    start = 0
    for row, p in enumerate(prefs):
        end = found.ends[row]
        if start == end or p.max_items <= 0:
            counts.append(0)
            start = end
            continue
        queues = _queues(found.buckets[start:end])
        incomplete: set[int] = set()
        if open_rows[row]:
            incomplete.update(followed[indptr[row] : indptr[row + 1]])
            incomplete -= finished.get(row, nothing)
        stories, sources = found.stories[start:end], found.sources[start:end]
        picks, missing = _pick(
            queues, stories, sources, p.max_items, p.max_per_source, incomplete, pool.story_related
        )
        if missing < 0:
            pick_cols.extend([found.cols[start + i] for i in picks])
            pick_values.extend([found.values[start + i] for i in picks])
        else:
            cols, values, buckets = found.cols[start:end], found.values[start:end], found.buckets[start:end]
            while missing >= 0:
                # a bucket ran dry before what is known of it ends: fetch more of it, pick again
                cols, values, buckets, whole = _with_rest_of_bucket(
                    block, row, float(threshold[row]), missing, cols, values, buckets
                )
                if whole:
                    incomplete.discard(missing)
                stories = [pool.story_pos[col] for col in cols]
                sources = [pool.source_pos_list[col] for col in cols]
                picks, missing = _pick(
                    _queues(buckets),
                    stories,
                    sources,
                    p.max_items,
                    p.max_per_source,
                    incomplete,
                    pool.story_related,
                )
            pick_cols.extend([cols[i] for i in picks])
            pick_values.extend([values[i] for i in picks])
        counts.append(len(picks))
        start = end
    pick_rows = np.repeat(np.arange(len(prefs)), counts)
    picked = np.array(pick_cols, dtype=np.intp)
    topics = _matched_topics(block, pick_rows, picked)
    return _Picks(counts, picked, np.array(pick_values, dtype=np.float32), topics)


def _chunk_digests(
    pool: CandidatePool, prefs: Sequence[Preferences], delivered: Sequence[Collection[int]], picks: _Picks
) -> list[Digest]:
    """The digests of a chunk from its picks (and, for those with none, why)."""
    items = _items(pool, picks.cols.tolist(), picks.values.tolist(), picks.topics)
    digests: list[Digest] = []
    at = 0
    for row, count in enumerate(picks.counts):
        if count:
            digests.append(Digest(tuple(items[at : at + count])))
            at += count
        elif prefs[row].max_items <= 0:
            digests.append(Digest((), _NOTHING_TO_PICK))
        else:
            digests.append(Digest((), _explain_empty(pool, prefs[row], delivered[row])))
    return digests


def _thresholds(block: _Block, limits: npt.NDArray[np.intp]) -> FloatArray:
    """Per row, a score about PROBE_FACTOR × max_items articles reach (TINY: keep every match).

    Each followed topic (the first PROBE_TOPICS) lends its probe articles, the pool's best for
    that topic before anyone's preferences; their scores for the row are real scores, so the
    K-th best of them is a score at least K articles reach (fewer when one article is the probe
    of two followed topics: then the threshold is a little high and picking fetches what it
    misses).
    """
    pool, scores, follow = block.pool, block.scores, block.follow
    n = scores.shape[0]
    probe = np.zeros((n, PROBE_TOPICS, PROBE_DEPTH), dtype=np.float32)
    per_row = np.diff(follow.indptr)
    owner = np.repeat(np.arange(n), per_row)
    slot = np.arange(follow.nnz) - np.repeat(follow.indptr[:-1], per_row)
    keep = slot < PROBE_TOPICS
    owner, slot, topic = owner[keep], slot[keep], follow.indices[keep]
    scales = pool.scales(block.main_half_life)
    values = scores[owner[:, None], scales.probe_table[topic]]
    values[~scales.probe_present[topic]] = 0
    probe[owner, slot] = values
    flat = probe.reshape(n, -1)
    width = flat.shape[1]
    kth = width - np.minimum(PROBE_FACTOR * np.maximum(limits, 1), width)
    ranked = np.partition(flat, np.unique(kth), axis=1)
    found: FloatArray = np.maximum(ranked[np.arange(n), kth], TINY)
    return found


def _candidates(block: _Block, threshold: FloatArray, limits: npt.NDArray[np.intp]) -> _Candidates:
    """Every row's articles at or above its threshold, plus the heads of the buckets it starves.

    A subscriber following a busy topic and a quiet one keeps mostly busy-topic articles above
    the threshold, yet the round-robin wants the quiet topic's best too. For every (row, followed
    topic) with fewer than ceil(max_items / topics) + 3 articles above the threshold, that many of
    the bucket's best articles under the threshold are added (ties included): what is known of
    each bucket stays its best articles, in order.
    """
    pool, scores, follow = block.pool, block.scores, block.follow
    n, size = scores.shape
    width = len(pool.topic_index) + 1

    flat = np.flatnonzero(scores >= threshold[:, None])
    rows = flat // size
    cols = flat - rows * size
    values = scores.reshape(-1)[flat]
    buckets = block.buckets(rows, cols)

    # the starved (row, followed topic) pairs: add the bucket's best articles under the threshold
    per_row = np.diff(follow.indptr)
    need = -(-limits // np.maximum(per_row, 1)) + BUCKET_SLACK
    known = np.bincount(rows * width + buckets, minlength=n * width).reshape(n, width)
    owner = np.repeat(np.arange(n), per_row)
    topic = follow.indices.astype(np.intp)
    starved = (known[owner, topic] < need[owner]) & (threshold[owner] > TINY)
    owner, topic = owner[starved], topic[starved]
    by_topic = np.argsort(topic, kind="stable")
    owner, topic = owner[by_topic], topic[by_topic]
    bounds = (np.flatnonzero(np.diff(topic)) + 1).tolist()
    finished: dict[int, set[int]] = {}
    more_rows: list[IndexArray] = []
    more_cols: list[IndexArray] = []
    for lo, hi in zip([0, *bounds], [*bounds, topic.size], strict=True):
        if lo == hi:
            continue
        bucket = int(topic[lo])
        who = owner[lo:hi]
        got_rows, got_cols, whole = _bucket_head(block, who, bucket, threshold[who], int(need[who].max()))
        for row in whole.tolist():
            finished.setdefault(row, set()).add(bucket)
        more_rows.append(got_rows)
        more_cols.append(got_cols)
    if more_rows:
        extra_rows = np.concatenate(more_rows)
        extra_cols = np.concatenate(more_cols)
        by_col = np.argsort(extra_cols, kind="stable")  # ties keep article order, as in `rank`
        extra_rows, extra_cols = extra_rows[by_col], extra_cols[by_col]
        rows = np.concatenate((rows, extra_rows))
        cols = np.concatenate((cols, extra_cols))
        values = np.concatenate((values, scores[extra_rows, extra_cols]))
        buckets = np.concatenate((buckets, block.buckets(extra_rows, extra_cols)))

    # row by row, best first, ties by article order: scores are positive, so their bits sort
    key = (rows.astype(np.uint64) << np.uint64(32)) | (~values.view(np.uint32)).astype(np.uint64)
    order = np.argsort(key, kind="stable")
    rows, cols, buckets = rows[order], cols[order], buckets[order]
    return _Candidates(
        cols=cols.tolist(),
        values=values[order].tolist(),
        buckets=buckets.tolist(),
        stories=pool.story_numbers[cols].tolist(),
        sources=pool.source_pos[cols].tolist(),
        ends=np.cumsum(np.bincount(rows, minlength=n)).tolist(),
        finished=finished,
    )


def _bucket_head(
    block: _Block, who: IndexArray, bucket: int, below: FloatArray, depth: int
) -> tuple[IndexArray, IndexArray, IndexArray]:
    """For the rows `who`: the best `depth` articles (ties included) of their `bucket` under
    `below`, as (rows, articles), and the rows for which that is the whole bucket."""
    pool, scores = block.pool, block.scores
    carrying = pool.topic_articles[bucket]
    size = carrying.size
    if size * 8 < scores.shape[1]:
        part = scores[who[:, None], carrying]
    else:  # copying whole rows first is cheaper than a 2-d gather
        part = scores.take(who, axis=0).take(carrying, axis=1)
    part[part >= below[:, None]] = 0  # above: known already
    part[block.elsewhere(who, bucket)] = 0  # in another bucket
    if size > depth:
        bar = np.maximum(np.partition(part, size - depth, axis=1)[:, size - depth], TINY)
    else:
        bar = np.full(who.size, TINY, dtype=np.float32)
    inside = np.flatnonzero(part >= bar[:, None])
    at_row = inside // size
    return who[at_row], carrying[inside - at_row * size], who[bar <= TINY]


def _with_rest_of_bucket(
    block: _Block,
    row: int,
    threshold: float,
    bucket: int,
    cols: list[int],
    values: list[float],
    buckets: list[int],
) -> tuple[list[int], list[float], list[int], bool]:
    """The row's candidates plus the next FETCH_DEPTH articles of `bucket` (ties included), best
    first, and whether that was all of the bucket."""
    last = [i for i, b in enumerate(buckets) if b == bucket]
    carrying = block.pool.topic_articles[bucket]
    part = block.scores[row, carrying]
    if last:
        score, col = np.float32(values[last[-1]]), cols[last[-1]]
        inside = (part >= TINY) & ((part < score) | ((part == score) & (carrying > col)))
    else:
        inside = (part >= TINY) & (part < np.float32(threshold))
    more = carrying[inside]
    part = part[inside]
    if more.size:
        mine = block.buckets(np.full(more.size, row, dtype=np.intp), more) == bucket
        more, part = more[mine], part[mine]
    whole = more.size <= FETCH_DEPTH
    if not whole:
        bar = np.partition(part, more.size - FETCH_DEPTH)[more.size - FETCH_DEPTH]
        more, part = more[part >= bar], part[part >= bar]
    merged = sorted(
        [
            *zip([-v for v in values], cols, buckets, strict=True),
            *((-v, c, bucket) for v, c in zip(part.tolist(), more.tolist(), strict=True)),
        ]
    )
    return [c for _, c, _ in merged], [-v for v, _, _ in merged], [b for _, _, b in merged], whole


def _queues(buckets: list[int]) -> dict[int, list[int]]:
    """Candidate positions by bucket, each best first (candidates come best first)."""
    queues: dict[int, list[int]] = {}
    for i, bucket in enumerate(buckets):
        queue = queues.get(bucket)
        if queue is None:
            queues[bucket] = [i]
        else:
            queue.append(i)
    return queues


def _pick(
    queues: dict[int, list[int]],
    stories_of: list[int],
    sources_of: list[int],
    max_items: int,
    max_per_source: int,
    incomplete: set[int],
    related: Sequence[tuple[int, ...]],
) -> tuple[list[int], int]:
    """Round-robin over topic buckets under the story and source limits (see the module doc).

    Candidates are positions 0… (best first), `queues` holds them by bucket, `stories_of` and
    `sources_of` say what story and source each is; `related` gives, per story, the stories too
    similar to it to share a digest (a pick shuts them out as it shuts out its own story). Returns the positions picked, in order. For a
    bucket in `incomplete` the candidates are only its best articles (maybe none): when picking
    needs more of it, returns (what it has, that bucket) and the caller adds the rest.
    """
    for bucket in incomplete:
        if bucket not in queues:
            queues[bucket] = []
    stories: set[int] = set()
    full: set[int] = set()  # sources with max_per_source items
    per_source: dict[int, int] = {}
    picked: list[int] = []
    if len(queues) == 1 and not incomplete:  # one bucket: best first, under the limits
        for i, story in enumerate(stories_of):
            source = sources_of[i]
            if story in stories or source in full:
                continue
            picked.append(i)
            if len(picked) >= max_items:
                break
            stories.add(story)
            if related[story]:
                stories.update(related[story])
            count = per_source[source] = per_source.get(source, 0) + 1
            if count >= max_per_source:
                full.add(source)
        return picked, -1

    head = dict.fromkeys(queues, 0)
    hungry = list(queues)  # the buckets still to serve in this round
    served: list[int] = []  # the buckets served in this round: the next round's hungry
    while hungry:
        while hungry:
            best = -1
            best_bucket = -1
            exhausted: list[int] = []
            for bucket in hungry:
                queue = queues[bucket]
                at = head[bucket]
                end = len(queue)
                while at < end and (stories_of[queue[at]] in stories or sources_of[queue[at]] in full):
                    at += 1
                head[bucket] = at
                if at < end:
                    if best < 0 or queue[at] < best:
                        best = queue[at]
                        best_bucket = bucket
                elif bucket in incomplete:
                    return picked, bucket
                else:
                    exhausted.append(bucket)
            for bucket in exhausted:
                hungry.remove(bucket)
            if best < 0:
                break
            picked.append(best)
            if len(picked) >= max_items:
                return picked, -1
            head[best_bucket] += 1
            hungry.remove(best_bucket)
            served.append(best_bucket)
            story = stories_of[best]
            stories.add(story)
            if related[story]:
                stories.update(related[story])
            source = sources_of[best]
            count = per_source[source] = per_source.get(source, 0) + 1
            if count >= max_per_source:
                full.add(source)
        hungry, served = served, []
    return picked, -1


# -- items and reasons ---------------------------------------------------------------------------


def _matched_topics(block: _Block, rows: IndexArray, cols: IndexArray) -> npt.NDArray[np.int32]:
    """Per (row, article): the followed topics it matched, strongest first, padded."""
    pool = block.pool
    contributions = block.contributions(rows, cols)
    order = np.argsort(-contributions, axis=1, kind="stable")
    topics = np.take_along_axis(pool.slot_topic[cols], order, axis=1)
    topics[np.take_along_axis(contributions, order, axis=1) <= 0] = len(pool.topic_index)
    return topics


def _items(
    pool: CandidatePool, cols: list[int], values: list[float], topics: npt.NDArray[np.int32]
) -> list[RankedItem]:
    """RankedItems for the picks. Identical ones (same article, score and reason) are shared."""
    if not cols:
        return []
    base = len(pool.topic_index) + 1
    digits = topics.shape[1]
    codes: list[int]
    if base**digits < 2**62:
        powers = base ** np.arange(digits - 1, -1, -1, dtype=np.int64)
        codes = (topics.astype(np.int64) @ powers).tolist()
    else:  # absurdly many topics per article: Python integers
        codes = [sum(int(t) * base**k for k, t in enumerate(reversed(line))) for line in topics.tolist()]
    reasons, known = pool.reason_cache, pool.item_cache
    ids, story_ids, also = pool.article_ids, pool.story_ids, pool.also_covered_by
    items: list[RankedItem] = []
    append = items.append
    for col, value, code in zip(cols, values, codes, strict=True):
        key = (col, code, value)
        item = known.get(key)
        if item is None:
            reason = reasons.get((col, code))
            if reason is None:
                reason = _reason(pool, col, code, base, digits)
                reasons[(col, code)] = reason
            item = RankedItem(ids[col], value, story_ids[col], reason, also[col])
            known[key] = item
        append(item)
    return items


def _reason(pool: CandidatePool, col: int, code: int, base: int, digits: int) -> Reason:
    topics: list[int] = []
    for _ in range(digits):
        code, topic = divmod(code, base)
        if topic != base - 1:
            topics.append(topic)
    matches = pool.matches[col]
    return Reason(
        topics=tuple(matches[topic] for topic in reversed(topics)),
        age=pool.ages[col],
        coverage=pool.coverage[col],
    )


# -- empty digests -------------------------------------------------------------------------------


def _explain_empty(pool: CandidatePool, prefs: Preferences, delivered: Collection[int]) -> str:
    """Why a subscriber gets nothing, in one line a person understands."""
    wanted = [slug for slug, weight in prefs.topics.items() if weight > 0 and math.isfinite(weight)]
    if not wanted:
        return "follows no topics"
    followed = [slug for slug in wanted if slug not in prefs.muted_topics]
    names = ", ".join(followed or wanted)
    if not followed:
        return f"every followed topic is also muted ({names})"
    period = _describe(prefs.window)
    in_window = pool.age_seconds <= prefs.window.total_seconds()
    total = int(np.count_nonzero(in_window))
    if total == 0:
        return f"no articles in the last {period}"
    columns = [pool.topic_position[slug] for slug in followed if slug in pool.topic_position]
    relevant = in_window & (pool.topic_weights_t[columns].sum(axis=0) > 0)
    matching = int(np.count_nonzero(relevant))
    if matching == 0:
        return f"none of the {total:,} articles of the last {period} match {names}"
    hidden = np.zeros(pool.size, dtype=np.bool_)
    muted_columns = [pool.topic_position[slug] for slug in prefs.muted_topics if slug in pool.topic_position]
    if muted_columns:
        hidden |= pool.muting_t[muted_columns].max(axis=0) > 0
    for keyword in prefs.muted_keywords:
        hidden[pool.keyword_hits(keyword)] = True
    hidden |= _source_vector(pool, prefs) <= 0
    visible = relevant & ~hidden
    left = int(np.count_nonzero(visible))
    if left == 0:
        return f"everything matching was muted ({matching:,} articles)"
    sent = np.zeros(pool.size, dtype=np.bool_)
    sent[[pool.position_of[aid] for aid in delivered if aid in pool.position_of]] = True
    if not np.any(visible & ~sent):
        if left == matching:
            return f"all {matching:,} matching articles were already sent"
        return f"all {matching:,} matching articles were muted or already sent"
    return f"nothing matching scored above zero ({left:,} articles)"


def _describe(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 86400 == 0 and seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{max(1, seconds // 60)} min"
