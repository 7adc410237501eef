"""Stories: the same event covered by several sources, clustered so a digest shows it once.

Precision first: two different stories must never merge. Articles are TF-IDF vectors over title
and excerpt words (light stemming, the title counting double, newsroom verbs folded into event
words: "lays off" and "to cut staff" both read "~layoff"). A pair may join when

- it was published within the window (48 h) and, for one source, only as a near-identical re-post;
- its titles do not name different things: when each title names something (a company, a
  product, a version: words the batch writes capitalised, or lowercase where a capital belongs, as
  "npm" opening a headline) that the other article never mentions, "Coinvault confirms breach"
  and "Northwind Health confirms breach" stay two stories;
- and its words agree: a high cosine; or a fair cosine with titles that agree too; or a lower one
  when both titles name the same rarely-named company (not one the taxonomy knows, such as PyPI:
  few mentions of it in a batch are chance), or the same company and the same kind of event, or
  when the names agree: both titles name one thing (a name, or a spelling of the taxonomy such as
  "npm"), neither title names what the other article never mentions, and the two share a second
  name, one of them rare. Tutorials, opinions and generic titles ("Weekly roundup") merge only when
  copied.

Groups then merge only while they stay tight (every pair could have merged, or they are alike on
average and no two of their articles are unrelated), so A~B and B~C do not chain an unrelated A
and C into one story.

Candidate pairs come from an inverted index over the words that are rare in the batch (numpy,
grouped by posting-list length), so 5,000 articles never cost 12.5 million comparisons.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from itertools import chain
from typing import Final

import numpy as np
import numpy.typing as npt

from bot.ranking.topics import load_taxonomy, phrase_tokens
from bot.ranking.types import ArticleText

__all__ = ["StoryAssignments", "cluster_stories", "story_members", "story_sizes"]

DEFAULT_WINDOW: Final = timedelta(hours=48)
TITLE_WEIGHT: Final = 2.0  # a title word counts as two excerpt words
MERGE_SIMILARITY: Final = 0.42  # cosine over title + excerpt for two articles to be one story
STRONG_SIMILARITY: Final = 0.65  # ... enough on its own, whatever the titles share
TITLE_SIMILARITY: Final = 0.2  # otherwise their titles (cosine) must also agree this much
NAMED_SIMILARITY: Final = 0.3  # ... when both titles name the same rare company or product
EVENT_SIMILARITY: Final = 0.2  # ... when both name one company and the same kind of event
COPY_SIMILARITY: Final = 0.8  # generic titles ("Weekly roundup") and tutorials: only copies merge
GROUP_SIMILARITY: Final = 0.25  # mean similarity across two groups for them to merge
LINK_FLOOR: Final = 0.2  # ... and no two of their articles less alike than this
SAME_SOURCE_TITLES: Final = 0.75  # same source: only near-identical titles (token Jaccard)
CANDIDATE_FLOOR: Final = 0.15  # partial cosine (rare words only) for a pair to be examined
RARE_NAME_DF: Final = 4  # a name in at most this many articles of the batch is rare

_TOKEN_RE: Final = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]{2,}")
_VERSION_RE: Final = re.compile(r"\d+\.\d+")
# Titles of evergreen pieces (tutorials, explainers, opinions): they merge only when near-identical.
_EVERGREEN_RE: Final = re.compile(
    r"^\s*(how|why|should|is|are|can|do|does|when)\b|\b(how to|guide|tutorial|tips|tricks|"
    r"step[- ]by[- ]step|in defen[cs]e of|opinion|lessons|explained|introduction to|getting started|"
    r"beginner|cheat ?sheet|walkthrough|in \d+ minutes|unpopular|overrated|the case (for|against))\b|\?\s*$"
)
# Capitalised words inside a sentence (after a lowercase letter, digit or comma and a space).
_MID_SENTENCE_CAP_RE: Final = re.compile(r"(?<=[a-z0-9,;] )[A-Z][a-z]+\b")
_HEAD_RE: Final = re.compile(r"[\W_]*([a-z]+)\b")  # a headline's first word, in lowercase

# Function words and newsroom filler: they say nothing about which event a story is.
_STOPWORDS: Final = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how if in into is it its itself just me
    more most my no nor not now of off on once only or other our ours out over own same she
    should so some such than that the their theirs them then there these they this those through
    to too under until up very was we were what when where which while who whom why will with
    would you your yours yet via per vs versus amid among new news says said say saying report
    reports reported reportedly today yesterday tomorrow week weeks day days year years month
    months time first last next one two three get gets got make makes made could may might must
    us use uses using used way ways here's it's that's update updated updates latest now just
    according announced announces announce company
    """.split()  # noqa: SIM905
)
# Newsroom verbs for one kind of event, folded to one word: "lays off" and "cuts staff" both say
# layoffs, "buys" and "to acquire" both say acquisition (the keys are stems, see _stem).
_EVENT_WORDS: Final = {
    stem: "~" + event
    for event, stems in {
        "layoff": "lay layoff laid cut cutt eliminat",
        "acquisition": "acquir acquisition buy bought purchas takeover",
        "funding": "rais fund",
        "breach": "breach hack hacker stol steal stolen intrusion compromis",
        "vulnerability": "flaw vulnerability exploit cve patch bug",
        "outage": "outag offlin downtime",
        "legal": "fin penalty rul judg court lawsuit sue sued probe antitrust",
        "launch": "launch unveil introduc debut releas",
        "earnings": "earn result revenu quarter profit estimat",
    }.items()
    for stem in stems.split()
}
_EVENT_KINDS: Final = frozenset(_EVENT_WORDS.values())
# Events a company seldom has twice in two days (launches are not among them).
_COMPANY_EVENTS: Final = frozenset(
    f"~{event}" for event in ("layoff", "acquisition", "funding", "breach", "outage", "legal", "earnings")
)
# Words that make a title generic ("Weekly roundup #12", "This week in Rust 512").
_GENERIC: Final = frozenset(
    """
    weekly daily monthly roundup round digest newsletter issue edition episode ep links link
    recap highlights top stories briefing podcast show part vol volume morning evening night
    best reads reading list lists notes thread open happened happening things stuff monday
    tuesday wednesday thursday friday saturday sunday january february march april may june july
    august september october november december jan feb mar apr jun jul aug sep sept oct nov dec
    """.split()  # noqa: SIM905
)


@dataclass(frozen=True, slots=True)
class _Doc:
    index: int
    article: ArticleText
    time: float  # seconds since the epoch
    title: frozenset[str]  # title words (stemmed, no stopwords, numbers included)
    generic: bool  # the title says nothing specific
    vector: dict[str, float]  # tf-idf over title + excerpt, unit length
    title_vector: dict[str, float]  # tf-idf over the title alone, unit length
    names: frozenset[str]  # every name and version number in title and excerpt
    rare_names: frozenset[str]  # title names found in very few articles of the batch
    rare_mentions: frozenset[str]  # ... and such names anywhere in title and excerpt
    named: frozenset[str]  # names and version numbers in the title: "coinvault", "microsoft", "3.14"
    anchors: frozenset[str]  # what the title names, known spellings of the taxonomy too: "npm", "pypi"
    events: frozenset[str]  # company events the title reports: "~layoff", "~earnings"
    kinds: frozenset[str]  # every kind of event the title reports, launches too
    evergreen: bool  # the title reads as a how-to, an explainer or an opinion, not an event


class StoryAssignments(dict[int, int]):
    """Article id → story id (the id of the story's representative article).

    It also remembers each article's source, so `story_sizes` can count distinct sources.
    """

    def __init__(
        self, items: Iterable[tuple[int, int]] = (), sources: Mapping[int, int] | None = None
    ) -> None:
        super().__init__(items)
        self.sources: dict[int, int] = dict(sources or {})


def cluster_stories(
    articles: Sequence[ArticleText], *, window: timedelta = DEFAULT_WINDOW
) -> StoryAssignments:
    """Map every article id to its story id: the id of the story's earliest article.

    Ties on time go to the longer excerpt (the more complete article), then to the lower id.
    Articles of the same source stay apart unless their titles are near-identical (a re-post);
    articles further apart than `window` never share a story. Same input, same ids.
    """
    ordered = sorted(articles, key=lambda a: (a.published, -len(a.excerpt), a.id))
    if len({a.id for a in ordered}) != len(ordered):
        raise ValueError("cluster_stories: article ids must be unique")
    docs, df = _documents(ordered)
    limit = window.total_seconds()

    edges = _similar_pairs(docs, df, limit)
    parent = list(range(len(docs)))
    members: dict[int, list[int]] = {i: [i] for i in range(len(docs))}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sims = {(a, b): s for s, a, b in edges}
    for _, a, b in edges:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        if not _may_merge(docs, members[ra], members[rb], sims, limit):
            continue
        keep, gone = (ra, rb) if ra < rb else (rb, ra)
        parent[gone] = keep
        members[keep] += members.pop(gone)

    assignments = StoryAssignments(sources={a.id: a.source_id for a in ordered})
    for group in members.values():
        representative = ordered[min(group)].id  # `ordered` is earliest first
        for i in group:
            assignments[ordered[i].id] = representative
    return assignments


def story_sizes(assignments: Mapping[int, int], sources: Mapping[int, int] | None = None) -> dict[int, int]:
    """Story id → how many distinct sources covered it (a popularity signal).

    Sources come from `sources` (article id → source id) or from the assignments themselves when
    `cluster_stories` made them; without either, articles are counted.
    """
    if sources is None and isinstance(assignments, StoryAssignments):
        sources = assignments.sources
    seen: dict[int, set[int]] = {}
    for article_id, story_id in assignments.items():
        origin = sources.get(article_id, -article_id - 1) if sources is not None else -article_id - 1
        seen.setdefault(story_id, set()).add(origin)
    return {story_id: len(origins) for story_id, origins in seen.items()}


def story_members(assignments: Mapping[int, int]) -> dict[int, list[int]]:
    """Story id → its article ids, the representative first, then the others ("also covered by")."""
    stories: dict[int, list[int]] = {}
    for article_id, story_id in sorted(assignments.items()):
        stories.setdefault(story_id, []).append(article_id)
    for story_id, ids in stories.items():
        ids.remove(story_id)
        ids.insert(0, story_id)
    return stories


# -- features ------------------------------------------------------------------------------------


def _documents(ordered: Sequence[ArticleText]) -> tuple[list[_Doc], Counter[str]]:
    """The articles as word vectors and names, and each word's document frequency."""
    raw_titles = [_TOKEN_RE.findall(a.title) for a in ordered]
    raw_excerpts = [_TOKEN_RE.findall(a.excerpt) for a in ordered]
    spellings = Counter(chain.from_iterable((*raw_titles, *raw_excerpts)))  # words as written
    stems: dict[str, str] = {}  # as written → stem ("" for stopwords)
    entities = _entity_spellings()
    famous: set[str] = set()  # stems of the taxonomy's spellings: "npm", "kubernet"
    for token in spellings:
        lower = token.lower()
        stem = "" if lower in _STOPWORDS else _stem(lower)
        stem = stems[token] = _EVENT_WORDS.get(stem, stem)
        if lower in entities and stem and stem[0] != "~":
            famous.add(stem)
    titles = [[stem for token in tokens if (stem := stems[token])] for tokens in raw_titles]
    excerpts = [[stem for token in tokens if (stem := stems[token])] for tokens in raw_excerpts]
    df = Counter(
        chain.from_iterable(
            set(title).union(excerpt) for title, excerpt in zip(titles, excerpts, strict=True)
        )
    )
    n = len(ordered)
    idf = {token: math.log((n + 1) / (count + 1)) + 1.0 for token, count in df.items()}
    names = {name for word in _proper_names(ordered, spellings) if (name := stems[word]) and name[0] != "~"}
    names.update(token for token in df if _VERSION_RE.match(token))
    known = names | famous
    rare_names = frozenset(name for name in names if df[name] <= RARE_NAME_DF)

    docs = []
    for i, article in enumerate(ordered):
        title = titles[i]
        counts: dict[str, float] = dict(Counter(excerpts[i]))
        title_counts = Counter(title)
        for token, count in title_counts.items():
            counts[token] = counts.get(token, 0.0) + TITLE_WEIGHT * count
        title_set = frozenset(title)
        all_names = (title_set | frozenset(excerpts[i])) & names
        rare = all_names & rare_names
        title_names = title_set & names
        specific = title_set - _GENERIC
        docs.append(
            _Doc(
                index=i,
                article=article,
                time=article.published.timestamp(),
                title=title_set,
                generic=sum(1 for t in specific if not t[0].isdigit()) < 2,
                vector=_unit({t: min(c, 4.0) * idf[t] for t, c in counts.items()}),
                title_vector=_unit({t: c * idf[t] for t, c in title_counts.items()}),
                names=all_names,
                rare_names=(rare & title_set) - famous,
                rare_mentions=rare,
                named=title_names,
                anchors=title_set & known,
                events=title_set & _COMPANY_EVENTS,
                kinds=title_set & _EVENT_KINDS,
                evergreen=bool(_EVERGREEN_RE.search(article.title.lower())),
            )
        )
    return docs, df


def _proper_names(articles: Sequence[ArticleText], spellings: Mapping[str, int]) -> list[str]:
    """Words (as spelled in `spellings`, the batch's word counts) that this batch writes as names:
    capitalised inside a sentence ("at Coinvault") or with capitals inside ("OpenAI", "iPhone",
    "AWS"), and written at least as often like that as in lowercase.

    Title-cased headlines ("Apple Faces EU Fine Over App Store Rules") capitalise everything, so
    only their inner capitals count.

    Some names are lowercase by choice ("npm", "curl"): a word the batch never capitalises is a
    name when it opens a headline that has capitals elsewhere ("npm supply-chain attack targets
    React UI kits"), where any other word would take a capital.
    """
    lower: Counter[str] = Counter()
    capital: Counter[str] = Counter()
    spelled: dict[str, list[str]] = {}
    for word, count in spellings.items():
        key = word.lower()
        spelled.setdefault(key, []).append(word)
        if word == key:
            lower[key] += count
        elif not word[1:].islower():  # a capital inside: "OpenAI", "iPhone", "AWS"
            capital[key] += count
    sentences = "\n".join(
        [a.excerpt for a in articles] + [a.title for a in articles if not _is_title_case(a.title)]
    )
    capital.update(word.lower() for word in _MID_SENTENCE_CAP_RE.findall(sentences))
    names = [word for key, count in capital.items() if count >= lower[key] for word in spelled.get(key, ())]

    heads = {
        head.group(1)
        for article in articles
        if (head := _HEAD_RE.match(article.title)) and not article.title.islower()
    }
    names += [word for word in heads if spelled.get(word) == [word]]  # never capitalised
    return names


@cache
def _entity_spellings() -> frozenset[str]:
    """The shipped taxonomy's one-word names for things, lowercase: topic names and the aliases
    feeds tag them with ("npm", "pypi", "kubernetes"; not its key phrases, such as "lunar")."""
    words: set[str] = set()
    for topic in load_taxonomy().topics:
        if topic.kind == "topic":
            for spelling in (topic.slug, topic.name, *topic.aliases):
                tokens = phrase_tokens(spelling)
                if len(tokens) == 1 and _TOKEN_RE.fullmatch(tokens[0]):
                    words.add(tokens[0])
    return frozenset(words)


def _is_title_case(title: str) -> bool:
    long_words = [w for w in title.split() if len(w) >= 4 and w[0].isalpha()]
    return len(long_words) >= 3 and sum(w[0].isupper() for w in long_words) >= 0.7 * len(long_words)


def _stem(token: str) -> str:
    """A light suffix stripper: releases/released/releasing → releas, fines/fined → fin."""
    if token[0].isdigit() or len(token) <= 3:
        return token
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith("s") and not token.endswith(("ss", "us", "is")):
        token = token[:-1]
    for suffix in ("ing", "ed", "e"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            return token[: -len(suffix)]
    return token


def _unit(vector: dict[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(w * w for w in vector.values()))
    return {t: w / norm for t, w in vector.items()} if norm else {}


def _dot(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    return sum(a[t] * b[t] for t in a.keys() & b.keys())


# -- candidate pairs -----------------------------------------------------------------------------


def _similar_pairs(docs: Sequence[_Doc], df: Mapping[str, int], limit: float) -> list[tuple[float, int, int]]:
    """Pairs (similarity, i, j), i < j, that may be one story; most similar first.

    Only words shared by at most `cap` articles generate pairs (a word in 10% of the batch tells
    nothing about which event it is); their partial dot product picks the pairs worth scoring.
    """
    n = len(docs)
    if n < 2:
        return []
    cap = max(8, min(60, n // 20))
    eligible = {token for token, count in df.items() if 2 <= count <= cap}
    postings: dict[str, list[tuple[int, float]]] = {}
    for doc in docs:
        vector = doc.vector
        for token in vector.keys() & eligible:
            postings.setdefault(token, []).append((doc.index, vector[token]))
    by_size: dict[int, list[list[tuple[int, float]]]] = {}
    for posting in postings.values():
        by_size.setdefault(len(posting), []).append(posting)
    times = np.array([doc.time for doc in docs], dtype=np.float64)

    keys: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.float64]] = []
    for size, group in by_size.items():
        ids = np.array([[i for i, _ in posting] for posting in group], dtype=np.int64)
        weights = np.array([[w for _, w in posting] for posting in group], dtype=np.float64)
        first, second = np.triu_indices(size, k=1)
        a = ids[:, first].ravel()
        b = ids[:, second].ravel()
        product = (weights[:, first] * weights[:, second]).ravel()
        near = np.abs(times[a] - times[b]) <= limit
        keys.append(a[near] * n + b[near])
        values.append(product[near])
    if not keys:
        return []
    unique, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    partial = np.bincount(inverse, weights=np.concatenate(values))
    chosen = unique[partial >= CANDIDATE_FLOOR]

    edges = []
    for key in chosen.tolist():
        i, j = divmod(key, n)
        first_doc, second_doc = docs[i], docs[j]
        similarity = _dot(first_doc.vector, second_doc.vector)
        if _is_edge(first_doc, second_doc, similarity):
            edges.append((round(similarity, 9), i, j))
    edges.sort(key=lambda e: (-e[0], e[1], e[2]))
    return edges


def _is_edge(a: _Doc, b: _Doc, similarity: float) -> bool:
    """May these two articles report the same story? (Groups are checked again when merging.)"""
    shared_rare = a.rare_names & b.rare_names  # both titles name the same little-known company
    if _names_conflict(a, b) and not shared_rare:
        return False
    if a.article.source_id == b.article.source_id:
        return _same_title(a, b) and similarity >= MERGE_SIMILARITY
    if a.generic or b.generic or a.evergreen or b.evergreen:
        # a roundup, or two tutorials on one tool: the same story only when copied
        return similarity >= COPY_SIMILARITY
    if similarity >= STRONG_SIMILARITY:
        return True
    if (a.named & b.named) and (a.events & b.events):
        # the same company and the same kind of event in both titles: "Intel lays off 15,000"
        # and "Intel to cut 20% of staff" (one company seldom has two layoffs in two days)
        return similarity >= EVENT_SIMILARITY
    if shared_rare:
        return similarity >= NAMED_SIMILARITY
    if similarity >= NAMED_SIMILARITY and _names_agree(a, b):
        # both titles name one thing ("npm"), neither names what the other article never
        # mentions, and the articles share another name, one the batch seldom mentions: "Researchers
        # find 12 poisoned packages on npm" and "npm supply-chain attack targets React UI kits",
        # both about the kits
        return True
    return similarity >= MERGE_SIMILARITY and _dot(a.title_vector, b.title_vector) >= TITLE_SIMILARITY


def _names_conflict(a: _Doc, b: _Doc) -> bool:
    """Each title names something the other article never mentions: "Coinvault confirms breach"
    and "Northwind Health confirms breach" are two stories, however alike the words."""
    return bool(a.named - b.names) and bool(b.named - a.names)


def _names_agree(a: _Doc, b: _Doc) -> bool:
    """Do the names of two articles vouch for one story?

    Both titles name one thing (a name, or a spelling the taxonomy knows: "npm"); every name in
    either title is mentioned by the other article; they share a second name, and one of their
    shared names is rare in the batch; and the titles report no different kinds of event
    ("Meta lays off ..." and "Meta launches ...").
    """
    if not a.anchors & b.anchors or not a.named <= b.names or not b.named <= a.names:
        return False
    if not a.rare_mentions & b.rare_mentions or len((a.names & b.names) | (a.anchors & b.anchors)) < 2:
        return False
    return not (a.kinds and b.kinds and not a.kinds & b.kinds)


def _same_title(a: _Doc, b: _Doc) -> bool:
    if a.generic or b.generic or not a.title or not b.title:
        return False
    return len(a.title & b.title) / len(a.title | b.title) >= SAME_SOURCE_TITLES


def _may_merge(
    docs: Sequence[_Doc],
    left: Sequence[int],
    right: Sequence[int],
    sims: Mapping[tuple[int, int], float],
    limit: float,
) -> bool:
    """Would these two groups still be one tight story?

    Within the window from first to last, no two articles of one source (unless re-posts), and
    either every pair across the groups could have merged on its own, or they are alike on
    average: so A~B and B~C do not chain A and C into one story when A and C are unrelated.
    """
    times = [docs[i].time for i in (*left, *right)]
    if max(times) - min(times) > limit:
        return False
    total = 0.0
    every_pair = True
    for i in left:
        for j in right:
            pair = (i, j) if i < j else (j, i)
            a, b = docs[pair[0]], docs[pair[1]]
            if a.article.source_id == b.article.source_id and not _same_title(a, b):
                return False
            if pair in sims:
                total += sims[pair]
            else:
                every_pair = False
                similarity = _dot(a.vector, b.vector)
                if similarity < LINK_FLOOR:
                    return False
                total += similarity
    return every_pair or total / (len(left) * len(right)) >= GROUP_SIMILARITY
