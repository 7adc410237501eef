"""Stories: the same event covered by several sources, clustered so a digest shows it once.

Real outlets phrase one event in dozens of ways ("Flappy Bird could return", "Dong Nguyen speaks
out", "The flap is back?"), so a story is found by what its headlines share that English seldom
says, not by their wording as a whole:

- every word is weighed by its rarity in general English (wordfreq, see rarity.py) and by its
  burst: how many articles of the last day already used it. "Plosser", "taper" and "Snowden"
  carry a story; "says", "stocks" and "new" carry nothing;
- an article is a unit vector of those weights over title and excerpt (light stemming, the title
  counting double, newsroom verbs folded into event words: "lays off" and "to cut staff" both read
  "~layoff");
- clustering is online (single pass, in publication order): each article joins the open story
  whose centroid it is most like (or whose recurring words carry most of its weight), or opens a
  new one. Every decision reads only the articles before it, and a story keeps its id (its first
  article's) as it grows. The one move: an article that could join two open stories whose
  centroids agree shows they were one, and the younger folds into the older (which keeps its
  id). Without such a fold, clustering the first k articles of a batch gives those k the same
  stories as clustering the whole batch.

Precision guards, checked before an article may join a story:

- time: a story stays open for `window` (48 h) from its first article;
- names: when the article's title names something (a capitalised word inside a sentence, inner
  capitals as "OpenAI", a lower-case name opening a headline as "npm", a spelling of the
  taxonomy) that the story never mentions, while the story's own headline names something the
  article never mentions, they are two stories ("Coinvault confirms breach" and "Northwind
  Health confirms breach");
- events: a company seldom has two layoffs (or breaches, or results) in two days, but it may
  launch one thing and be fined the same day: different company events never join;
- one source: a source's second article on a story joins only as a near-identical re-post, until
  the story is developing (DEVELOPING_SOURCES outlets cover it), when outlets run follow-ups
  ("Snowden speaks at SXSW", then "Snowden: I would do it again") that are the same story;
- generic titles ("Weekly roundup") and evergreen ones (tutorials, opinions) stay on their own.

Roundups ("Business Highlights", "Business in Brief", "Markets: as it happened") report several
of the day's stories under a headline that names none: `StoryAssignments.roundups` lists them, and
the candidate pool ranks them after the articles that say what happened (one of the stories a
roundup holds is likely already in the digest, under its own headline).

Once the batch is placed, stories a digest must not hold together are marked *related*
(`StoryAssignments.related`), the second guard against a merge clustering missed:

- two articles (within the window) whose telling words agree (cosine ≥ ALIKE_SIMILARITY, one
  sparse product), unless each names something the other never mentions and they share no full
  name ("Neil Young to take on Apple …", "Apple's Newest Competitor: Neil Young?"); an opinion or
  a question on an event relates to it, a tutorial never does (it teaches, it reports nothing);
- an article whose headline names a rare name that a story of several articles keeps using
  ("FX fixing scandal: BoE claims …" and the hearing where a quarter of the headlines say "BoE"),
  unless the two report different kinds of event;
- market reports less than a day apart ("Wall St closes lower", "Most Asian stock markets flat"):
  one day's trading, however each outlet headlines it.

Cost: a story is found through an inverted index of its centroid's words, restricted to words
that English does not use everywhere, so 5,000 articles never cost 12.5 million comparisons.
"""

from __future__ import annotations

import math
import re
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from itertools import pairwise
from typing import Final

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]

from bot.ranking.rarity import rarity
from bot.ranking.topics import load_taxonomy, phrase_tokens
from bot.ranking.types import ArticleText, Topic

__all__ = [
    "StoryAssignments",
    "StoryClusterer",
    "cluster_stories",
    "is_roundup",
    "story_members",
    "story_sizes",
]

DEFAULT_WINDOW: Final = timedelta(hours=48)
BURST_WINDOW: Final = timedelta(hours=24)  # "today's" articles, for how bursty a word is
TITLE_WEIGHT: Final = 2.0  # a title word counts as two excerpt words
BURST_FACTOR: Final = 0.25  # weight × (1 + BURST_FACTOR × log(1 + earlier articles using it today))
JOIN_SIMILARITY: Final = 0.45  # cosine to a story's centroid for an article to join it
COVERAGE: Final = 0.6  # ... or share of its weight in words the story keeps using
COVERED_COSINE: Final = 0.3  # ... when the cosine is at least this
CORE_SHARE: Final = 0.25  # a word a story "keeps using": in at least this share of its articles
NAMED_FACTOR: Final = 0.75  # either, this much of the way, when a rare name in its title agrees
STORY_SIMILARITY: Final = 0.5  # centroid cosine for two open stories bridged by an article to merge
DEVELOPING_SOURCES: Final = 3  # a story this many outlets cover is developing: follow-ups join
ALIKE_SIMILARITY: Final = 0.38  # telling words this alike: never two of them in one digest
ALIKE_MIN_CAP: Final = 50  # ... counting words in at most max(this, a tenth of the batch) articles
SAME_SOURCE_TITLES: Final = 0.75  # same source: only near-identical titles (token Jaccard)
LEDE_CHARS: Final = 200  # the excerpt's opening says which event; the rest costs without telling
VECTOR_WORDS: Final = 16  # an article is its this many most telling words
CANDIDATE_WORDS: Final = 4  # an article's most telling words look up candidate stories
CANDIDATES: Final = 8  # stories scored in full per article
CANDIDATE_CAP: Final = 20  # ... unless that many open stories use the word (it tells nothing)
INDEX_RARITY: Final = 1.5  # words at least this rare find candidate stories (Zipf ≤ 5.5)
RARE_NAME: Final = 3.0  # a name at least this rare (Zipf ≤ 4) vouches for a story on its own
CORE_STORY: Final = 3  # a story of this many articles tells which rare names it keeps using

_TOKEN_RE: Final = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]{2,}")
# Titles of evergreen pieces (tutorials, explainers, opinions): articles of their own, not events.
_EVERGREEN_RE: Final = re.compile(
    r"^\s*(how|should|do|does)\b|\b(how to|guide|tutorial|tips|tricks|"
    r"step[- ]by[- ]step|in defen[cs]e of|opinion|lessons|explained|introduction to|getting started|"
    r"beginner|cheat ?sheet|walkthrough|in \d+ minutes|unpopular|overrated|the case (for|against))\b"
)
# ... of which tutorials: they teach a tool, whatever its news ("5 tips for Jetpack Compose" is no
# second take on "What's new in Compose 1.9"); an opinion, a question or an explainer ("Does Google
# need an Edward Snowden?", "How might forex market be rigged?") is a take on the event it names.
_TUTORIAL_RE: Final = re.compile(
    r"^\s*how (i|we)\b|\b(how to|guide|tutorial|tips|tricks|step[- ]by[- ]step|introduction to|"
    r"getting started|beginner|cheat ?sheet|walkthrough|in \d+ minutes)\b"
)
# Reports on the market as a whole ("Wall Street closes lower", "Asian stock markets flat", "FTSE
# aided by bullish US markets"): a daily beat, many outlets' versions of one event, the day's
# trading, whose headlines share no telling word (the day's worry, a mover or two).
_MARKET_RE: Final = re.compile(
    r"\b(stocks|stock markets?|wall st(reet)?|dow|nasdaq|s&p|ftse\w*|nikkei|dax|hang seng|sensex|"
    r"equities|bourses?)\b"
)
# ... the day's move, which is what a market report is about ("Stocks slip", "FTSE aided by …"),
# and not a company's news against the market ("beats Wall Street expectations").
_MARKET_MOVE_RE: Final = re.compile(
    r"\b(fall|falls|fell|rise|rises|rose|slip|slips|dip|dips|drop|drops|gain|gains|climb|climbs|"
    r"edges?|close|closes|closed|end|ends|flat|lower|higher|up|down|rally|rallies|retreats?|slides?|"
    r"slump|slumps|tumbles?|plunges?|surges?|jumps?|sinks?|steady|mixed|rebounds?|recovers?|weighs?|"
    r"fluctuates?|extends?|losses|declines?|opens?|aided|held back|hit|hits)\b"
)
_NOT_MARKET_RE: Final = re.compile(r"\b(nasdaq|nyse|amex)\s*:\s*\w+|\b(expectations|estimates|forecasts?)\b")
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
    according announced announces announce company video watch photos pictures live
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
# How much an event word weighs: as much as a fairly rare word (the kind of event matters, but
# "cut" is also common English).
_EVENT_RARITY: Final = 2.5
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

# What a roundup's headline says: that it gathers ("Highlights", "in Brief", "as it happened") ...
_ROUNDUP_RE: Final = re.compile(
    r"\b(highlights|in brief|brief|briefs|briefing|round-?up|recap|digest|newsletter|as it happened|"
    r"live blog|top stories|headlines|need to know|the day in)\b"
)
# ... and, besides those words, at most the section it covers, the day and filler.
_SECTION_WORDS: Final = frozenset(
    """
    highlights brief briefs briefing roundup round up recap digest newsletter happened live blog
    top stories headlines need know day business finance financial money market markets stock
    stocks economy economic tech technology science world national local international politics
    entertainment sports health today tonight week weekend morning afternoon evening daily weekly latest
    key big biggest main
    """.split()  # noqa: SIM905
)


def is_roundup(title: str) -> bool:
    """Does the headline gather several stories without naming one ("Business Highlights",
    "Business news and markets: as it happened - March 11, 2014")? "WWDC highlights" and
    "Titanfall review roundup" name what they gather: one story each."""
    lower = title.lower()
    if not _ROUNDUP_RE.search(lower):
        return False
    ignored = _STOPWORDS | _GENERIC | _SECTION_WORDS
    return all(word[0].isdigit() or word in ignored for word in _TOKEN_RE.findall(lower))


class StoryAssignments(dict[int, int]):
    """Article id → story id (the id of the story's first article).

    It also remembers each article's source, so `story_sizes` can count distinct sources,
    `related`: story id → the stories too alike to share a digest with it (both directions; see
    `StoryClusterer.relate_alike`), and `roundups`: the articles whose headline gathers several
    stories and names none (see `is_roundup`).
    """

    def __init__(
        self,
        items: Iterable[tuple[int, int]] = (),
        sources: Mapping[int, int] | None = None,
        related: Mapping[int, Iterable[int]] | None = None,
    ) -> None:
        super().__init__(items)
        self.sources: dict[int, int] = dict(sources or {})
        self.related: dict[int, set[int]] = {story: set(ids) for story, ids in (related or {}).items()}
        self.roundups: set[int] = set()


@dataclass(frozen=True, slots=True)
class _Doc:
    """What clustering reads of one article."""

    article: ArticleText
    time: float  # seconds since the epoch
    title: frozenset[str]  # title stems (no stopwords; numbers and event words included)
    vector: dict[str, float]  # rarity × burst over title + excerpt, unit length
    named: frozenset[str]  # what the title names: "coinvault", "npm", "3.14"
    mentions: frozenset[str]  # every name and word of title and excerpt (for "never mentions")
    rare_named: frozenset[str]  # title names at least RARE_NAME rare
    events: frozenset[str]  # company events the title reports: "~layoff", "~earnings"
    kinds: frozenset[str]  # every kind of event the title reports, launches too
    special: bool  # a generic or evergreen title: an article of its own
    generic: bool  # ... generic ("Business Highlights"): its words say nothing of which event


@dataclass(slots=True)
class _Story:
    ident: int  # the first article's id
    first: float  # its time
    head: _Doc  # the first article (its title names what the story is about)
    centroid: dict[str, float] = field(default_factory=dict)  # sum of the members' vectors
    norm2: float = 0.0  # |centroid|²
    mentions: set[str] = field(default_factory=set)
    df: Counter[str] = field(default_factory=Counter)  # word → members using it
    titles_by_source: dict[int, list[frozenset[str]]] = field(default_factory=dict)
    members: list[int] = field(default_factory=list)  # article ids
    size: int = 0


class StoryClusterer:
    """Online story clustering: `add` one article at a time, oldest first; it returns the story id.

    An article that arrives out of order (older than one already added) is still placed; the
    burst counts and open stories are those of the moment it is added.
    """

    def __init__(self, *, window: timedelta = DEFAULT_WINDOW) -> None:
        self.window = window.total_seconds()
        self.assignments = StoryAssignments()
        self._stories: dict[int, _Story] = {}
        self._open: deque[int] = deque()  # story ids, oldest first: closed ones leave from the left
        self._index: dict[str, set[int]] = {}  # word → open stories whose centroid has it
        self._recent: deque[tuple[float, tuple[str, ...]]] = deque()  # today's articles' telling words
        self._today: Counter[str] = Counter()  # word → today's articles using it
        self._placed: list[_Doc] = []  # every article added, for `relate_alike`

    def add(self, article: ArticleText) -> int:
        """Place one article: join the most similar open story it may join, else open a new one."""
        if article.id in self.assignments:
            raise ValueError(f"cluster_stories: article ids must be unique (id {article.id} twice)")
        now = article.published.timestamp()
        self._expire(now)
        doc = self._document(article, now)
        best, also = self._choose(doc)
        if best is not None:
            for twin in also:  # the article bridges two open stories: they were one all along
                best = self._merge(best, twin)
        if best is None:
            best = _Story(ident=article.id, first=now, head=doc)
            self._stories[article.id] = best
            self._open.append(article.id)
        self._join(best, doc)
        self.assignments[article.id] = best.ident
        self.assignments.sources[article.id] = article.source_id
        if is_roundup(article.title):
            self.assignments.roundups.add(article.id)
        self._placed.append(doc)
        return best.ident

    def relate_alike(self, threshold: float | None = None) -> None:
        """Mark as related the stories of any two articles (within the window) whose telling words
        agree this much (cosine): a digest then holds at most one of them, even where clustering
        kept them apart or never compared them. One sparse product over the batch, not online."""
        docs = self._placed
        if len(docs) < 2:
            return
        if threshold is None:
            threshold = ALIKE_SIMILARITY
        # a word in a tenth of the batch says little about two articles being one event, and
        # would make the product dense; unless English seldom uses it: then it is the name of the
        # day's big story ("Snowden" in every seventh headline)
        words = [word for doc in docs for word in doc.vector]
        usage = Counter(words)
        cap = max(ALIKE_MIN_CAP, len(docs) // 10)
        columns = {
            word: n
            for n, word in enumerate(
                w
                for w, k in usage.items()
                if rarity_of_stem(w) >= INDEX_RARITY and (k <= cap or rarity_of_stem(w) >= RARE_NAME)
            )
        }
        cols = np.fromiter((columns.get(word, -1) for word in words), dtype=np.int64, count=len(words))
        rows = np.repeat(np.arange(len(docs)), [len(doc.vector) for doc in docs])
        values = np.fromiter(
            (w for doc in docs for w in doc.vector.values()), dtype=np.float64, count=len(words)
        )
        kept = cols >= 0
        matrix = sp.csr_matrix(
            (values[kept], (rows[kept], cols[kept])), shape=(len(docs), max(1, len(columns)))
        )
        product = sp.triu(matrix @ matrix.T, k=1).tocoo()
        stories = np.fromiter(
            (self.assignments[doc.article.id] for doc in docs), dtype=np.int64, count=len(docs)
        )
        times = np.fromiter((doc.time for doc in docs), dtype=np.float64, count=len(docs))
        i, j = product.row, product.col
        near = (
            (product.data >= threshold)
            & (stories[i] != stories[j])
            & (np.abs(times[i] - times[j]) <= self.window)
        )
        related = self.assignments.related
        for first, second in zip(i[near].tolist(), j[near].tolist(), strict=True):
            one, other = docs[first], docs[second]
            if one.generic or other.generic or one.article.source_id == other.article.source_id:
                continue  # a roundup's words tell nothing; one source's two pieces: as in clustering
            if (one.special and other.special) or _is_tutorial(one) or _is_tutorial(other):
                continue  # tutorials teach, they report nothing (an opinion on an event relates)
            if (
                (one.named - other.mentions)
                and (other.named - one.mentions)
                and not _same_full_name(one.article.title, other.article.title)
            ):
                continue  # alike words, different names: "Halden raises …", "Patchwise raises …"
            a, b = int(stories[first]), int(stories[second])
            related.setdefault(a, set()).add(b)
            related.setdefault(b, set()).add(a)
        self._relate_core_names()
        self._relate_product_names()
        self._relate_market_reports()

    def _relate_core_names(self) -> None:
        """Relate an article to a story of several articles that keeps using a rare name its
        headline names: "FX fixing scandal: BoE claims …" and the story where a quarter of the
        headlines on Carney's hearing say "BoE" are one news cycle, though no word of the first
        headline is in the second."""
        holders: dict[str, list[_Story]] = {}
        for story in self._stories.values():
            if story.size < CORE_STORY:
                continue
            floor = CORE_SHARE * story.size
            for word, count in story.df.items():
                if count >= floor and word[0].isalpha() and rarity_of_stem(word) >= RARE_NAME:
                    holders.setdefault(word, []).append(story)
        kinds: dict[int, set[str]] = {}  # story → the kinds of event its headlines report
        for doc in self._placed:
            if doc.kinds:
                kinds.setdefault(self.assignments[doc.article.id], set()).update(doc.kinds)
        related = self.assignments.related
        for doc in self._placed:
            if not doc.rare_named or doc.generic or _is_tutorial(doc):
                continue
            own = self.assignments[doc.article.id]
            mine = kinds.get(own)
            for name in doc.rare_named & holders.keys():
                for story in holders[name]:
                    if story.ident == own or abs(doc.time - story.first) > self.window:
                        continue
                    theirs = kinds.get(story.ident)
                    if mine and theirs and not mine & theirs:
                        continue  # one name, two kinds of event: "OpenAI raises …", "OpenAI launches …"
                    related.setdefault(own, set()).add(story.ident)
                    related.setdefault(story.ident, set()).add(own)

    def _relate_product_names(self) -> None:
        """Relate an article to a story of several articles that keeps naming a product its
        headline names ("You Can Now AirPlay to the Apple TV …" and the day's Apple TV update,
        where most headlines say "Apple TV"): the day's news of that product, in a digest once.
        A pair of capitalised words is a name only where a sentence-case headline of the batch
        capitalises it ("restart your Apple TV"): in title case "Apple Faces …" is no name. A
        platform named now and then ("Google Cloud") heads no story: nothing relates."""
        confirmed: set[tuple[str, str]] = set()
        named: list[tuple[_Doc, set[tuple[str, str]]]] = []
        for doc in self._placed:
            title = doc.article.title
            pairs = _product_pairs(title)
            if pairs:
                if not _is_title_case(title):
                    confirmed.update(pairs - {_first_pair(title)})
                named.append((doc, pairs))
        if not confirmed:
            return
        uses: dict[int, Counter[tuple[str, str]]] = {}
        for doc, pairs in named:
            uses.setdefault(self.assignments[doc.article.id], Counter()).update(pairs & confirmed)
        holders: dict[tuple[str, str], list[_Story]] = {}
        for ident, counts in uses.items():
            story = self._stories[ident]
            if story.size >= CORE_STORY:
                for pair, count in counts.items():
                    if count >= CORE_SHARE * story.size:
                        holders.setdefault(pair, []).append(story)
        # per story that keeps naming a product: itself and the stories of the headlines naming it
        groups: dict[int, set[int]] = {}
        for doc, pairs in named:
            if doc.generic or _is_tutorial(doc):
                continue
            for pair in pairs & holders.keys():
                for story in holders[pair]:
                    if abs(doc.time - story.first) <= self.window:
                        groups.setdefault(story.ident, {story.ident}).add(self.assignments[doc.article.id])
        related = self.assignments.related
        for group in groups.values():
            for ident in group if len(group) > 1 else ():
                related.setdefault(ident, set()).update(group - {ident})

    def _relate_market_reports(self) -> None:
        """Relate the stories of market reports less than BURST_WINDOW apart: a digest holds one
        report of a day's trading, however differently outlets headline it."""
        reports = sorted(
            (doc.time, self.assignments[doc.article.id])
            for doc in self._placed
            if not doc.special and _is_market_report(doc.article.title.lower(), doc.title)
        )
        span = BURST_WINDOW.total_seconds()
        recent: deque[tuple[float, int]] = deque()
        related = self.assignments.related
        for time, story in reports:
            while recent and time - recent[0][0] > span:
                recent.popleft()
            for other in {other for _, other in recent if other != story}:
                related.setdefault(story, set()).add(other)
                related.setdefault(other, set()).add(story)
            recent.append((time, story))

    # -- the decision ----------------------------------------------------------------------------

    def _choose(self, doc: _Doc) -> tuple[_Story | None, list[_Story]]:
        """The story `doc` joins (None: a new one) and the other open stories it could have
        joined as well."""
        # candidates: the open stories that use one of the article's most telling words
        index, stories, vector = self._index, self._stories, doc.vector
        telling = sorted(vector.items(), key=lambda item: (-item[1], item[0]))[:CANDIDATE_WORDS]
        partial: dict[int, float] = {}
        for word, weight in telling:
            holders = index.get(word)
            if holders is not None and len(holders) <= CANDIDATE_CAP:
                for ident in holders:
                    story = stories[ident]
                    partial[ident] = partial.get(ident, 0.0) + weight * story.centroid[word] / story.size
        # only the few stories with the most of those words in common are scored in full
        candidates = sorted(partial, key=lambda ident: (-partial[ident], ident))[:CANDIDATES]
        best: _Story | None = None
        best_score = 0.0
        joinable: list[_Story] = []
        total = sum(vector.values())
        for ident in sorted(candidates):
            story = stories[ident]
            centroid = story.centroid
            dot = 0.0
            for word, weight in vector.items():
                if word in centroid:
                    dot += weight * centroid[word]
            cosine = dot / math.sqrt(story.norm2) if story.norm2 else 0.0
            if cosine < COVERED_COSINE and cosine < NAMED_FACTOR * JOIN_SIMILARITY:
                continue  # too far for any way of joining
            similarity = cosine / JOIN_SIMILARITY
            if total and cosine >= COVERED_COSINE:  # coverage speaks only for words really shared
                # how much of the article's weight lies in words the story keeps using: the
                # first article's, and those at least two articles and CORE_SHARE of them use
                floor = max(2.0, CORE_SHARE * story.size)
                df, head = story.df, story.head.vector
                covered = sum(
                    w * (1.0 if word in head else min(1.0, df[word] / floor))
                    for word, w in vector.items()
                    if word in df
                )
                similarity = max(similarity, covered / total / COVERAGE)
            if self._may_join(story, doc, similarity):
                joinable.append(story)
                if similarity > best_score:
                    best, best_score = story, similarity
        also = sorted(
            (s for s in joinable if s is not best and best is not None and self._alike(best, s)),
            key=lambda s: s.ident,
        )
        return best, also

    def _alike(self, one: _Story, other: _Story) -> bool:
        """May two open stories be merged? Their centroids agree and no source would hold two
        different articles of it."""
        small, large = (one, other) if len(one.centroid) <= len(other.centroid) else (other, one)
        dot = sum(w * large.centroid.get(word, 0.0) for word, w in small.centroid.items())
        if dot < STORY_SIMILARITY * math.sqrt(one.norm2 * other.norm2):
            return False
        a, b = one.head, other.head
        if (a.named - other.mentions) and (b.named - one.mentions):
            return False
        if a.kinds and b.kinds and not a.kinds & b.kinds:
            return False  # two kinds of event: two stories, whatever an article in between says
        if min(len(one.titles_by_source), len(other.titles_by_source)) >= DEVELOPING_SOURCES:
            return True  # two developing stories: one outlet may well cover both halves
        return not (one.titles_by_source.keys() & other.titles_by_source.keys())

    def _merge(self, one: _Story, other: _Story) -> _Story:
        """Fold the younger story into the older: the older keeps its id."""
        keep, gone = (one, other) if (one.first, one.ident) <= (other.first, other.ident) else (other, one)
        centroid = keep.centroid
        for word, weight in gone.centroid.items():
            if word in centroid:
                centroid[word] += weight
            else:
                centroid[word] = weight
            holders = self._index.get(word)
            if holders is not None and gone.ident in holders:
                holders.discard(gone.ident)
                holders.add(keep.ident)
        keep.norm2 = sum(w * w for w in centroid.values())
        keep.mentions |= gone.mentions
        keep.df.update(gone.df)
        for source, titles in gone.titles_by_source.items():
            keep.titles_by_source.setdefault(source, []).extend(titles)
        keep.members += gone.members
        keep.size += gone.size
        for article_id in gone.members:
            self.assignments[article_id] = keep.ident
        del self._stories[gone.ident]
        self._open.remove(gone.ident)
        return keep

    def _may_join(self, story: _Story, doc: _Doc, similarity: float) -> bool:
        if doc.time - story.first > self.window:
            return False
        head = story.head
        same_source = story.titles_by_source.get(doc.article.source_id)
        if same_source is not None and len(story.titles_by_source) < DEVELOPING_SOURCES:
            # a source's second article on a story: only a re-post of one it already ran
            return similarity >= 1.0 and any(_same_title(doc, title) for title in same_source)
        if doc.special or head.special:
            return False  # a roundup, a tutorial, an opinion: an article of its own, not an event
        shared_rare = bool(doc.rare_named & story.mentions)  # "Snowden" in both: they may differ elsewhere
        if (doc.named - story.mentions) and (head.named - doc.mentions) and not shared_rare:
            return False  # each names something the other never mentions: two stories
        if doc.kinds and head.kinds and not doc.kinds & head.kinds and doc.named & head.named:
            return False  # one company, two different events ("OpenAI launches …", "OpenAI raises …")
        if similarity >= 1.0:
            return True
        # a rare name in both headlines (and nothing contradicting it above): "Plosser", "Keibler"
        if not shared_rare:
            return False
        # a rare name the story keeps using, in the article's headline: "Snowden", "Plosser"
        floor = CORE_SHARE * story.size
        core = any(story.df[name] >= floor for name in doc.rare_named)
        return similarity >= (NAMED_FACTOR if core else 1.0)

    def _join(self, story: _Story, doc: _Doc) -> None:
        centroid = story.centroid
        dot = sum(weight * centroid.get(word, 0.0) for word, weight in doc.vector.items())
        story.norm2 += 2.0 * dot + sum(weight * weight for weight in doc.vector.values())
        for word, weight in doc.vector.items():
            if word not in centroid:
                centroid[word] = weight
                if rarity_of_stem(word) >= INDEX_RARITY:
                    self._index.setdefault(word, set()).add(story.ident)
            else:
                centroid[word] += weight
        story.mentions |= doc.mentions
        story.df.update(doc.vector.keys())
        story.members.append(doc.article.id)
        story.titles_by_source.setdefault(doc.article.source_id, []).append(doc.title)
        story.size += 1

    def _expire(self, now: float) -> None:
        """Close the stories older than the window; forget yesterday's burst counts."""
        while self._open and now - self._stories[self._open[0]].first > self.window:
            story = self._stories[self._open.popleft()]
            for word in story.centroid:
                holders = self._index.get(word)
                if holders is not None:
                    holders.discard(story.ident)
                    if not holders:
                        del self._index[word]
        horizon = now - BURST_WINDOW.total_seconds()
        while self._recent and self._recent[0][0] < horizon:
            _, words = self._recent.popleft()
            self._today.subtract(words)

    # -- features --------------------------------------------------------------------------------

    def _document(self, article: ArticleText, now: float) -> _Doc:
        title_tokens = _TOKEN_RE.findall(article.title)
        excerpt_tokens = _TOKEN_RE.findall(article.excerpt[:LEDE_CHARS])
        title = [stem for token in title_tokens if (stem := _stem_token(token))]
        counts: dict[str, float] = dict(Counter(filter(None, map(_stem_token, excerpt_tokens))))
        for word in title:
            counts[word] = counts.get(word, 0.0) + TITLE_WEIGHT
        base = {word: min(count, 4.0) * rarity_of_stem(word) for word, count in counts.items()}
        if len(base) > VECTOR_WORDS:  # a long excerpt: its most telling words say which event
            base = dict(sorted(base.items(), key=lambda item: (-item[1], item[0]))[:VECTOR_WORDS])
        today = self._today
        vector = _unit(
            {word: w * (1.0 + BURST_FACTOR * math.log1p(today.get(word, 0))) for word, w in base.items()}
        )
        self._recent.append((now, tuple(base)))
        today.update(base.keys())
        words = frozenset(counts)

        title_set = frozenset(title)
        named = frozenset(_title_names(article.title, title_tokens))
        specific = title_set - _GENERIC
        generic = sum(1 for word in specific if not word[0].isdigit()) < 2
        return _Doc(
            article=article,
            time=now,
            title=title_set,
            vector=vector,
            named=named,
            mentions=words | named,
            rare_named=frozenset(
                name for name in named if rarity_of_stem(name) >= RARE_NAME and name not in _entity_stems()
            ),
            events=title_set & _COMPANY_EVENTS,
            kinds=frozenset(word for word in title_set if word[0] == "~"),
            special=generic or bool(_EVERGREEN_RE.search(article.title.lower())),
            generic=generic,
        )


def cluster_stories(
    articles: Sequence[ArticleText], *, window: timedelta = DEFAULT_WINDOW
) -> StoryAssignments:
    """Map every article id to its story id: the id of the story's first article.

    Articles are added oldest first (ties on time: the longer excerpt, the more complete article,
    first; then the lower id), so the same input in any order gives the same stories, and a story
    keeps its first article's id as later ones join it. Articles further apart than `window`
    never share a story. Then `relate_alike` marks the stories a digest must not hold together.
    """
    ordered = sorted(articles, key=lambda a: (a.published, -len(a.excerpt), a.id))
    clusterer = StoryClusterer(window=window)
    for article in ordered:
        clusterer.add(article)
    clusterer.relate_alike()
    return clusterer.assignments


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


# -- words ---------------------------------------------------------------------------------------


@cache
def stem_of(lower: str) -> str:
    """A word's stem as clustering compares it: "" for stopwords, "~layoff" for event verbs."""
    if lower in _STOPWORDS:
        return ""
    stem = _stem(lower)
    return _EVENT_WORDS.get(stem, stem)


@cache
def _stem_token(token: str) -> str:
    """`stem_of` a token as written (cached by spelling: most words repeat across a batch)."""
    return stem_of(token.lower())


@cache
def rarity_of_stem(stem: str) -> float:
    """How much a stem weighs: its rarity in English (event words weigh as a fairly rare word)."""
    if stem[0] == "~":
        return _EVENT_RARITY
    if stem[0].isdigit():
        return rarity(stem)
    # the stem's most common reading: "releas" reads as "release", "employe" as "employee",
    # "sery" as "series"
    found = min(rarity(stem + ending) for ending in _ENDINGS)
    if stem.endswith("y"):
        found = min(found, rarity(stem[:-1] + "ies"))
    if stem in _entity_stems():
        # what the taxonomy names ("npm", "kubernetes") is everyday vocabulary in the feeds
        # FlareStart reads, however rare in general English
        return min(found, ENTITY_RARITY)
    return found


_ENDINGS: Final = ("", "e", "s", "es", "ed", "ing")


def _title_names(title: str, tokens: Sequence[str]) -> list[str]:
    """Stems of what a headline names, read from the headline alone.

    Capitalised words inside a sentence ("at Coinvault"), words with inner capitals ("OpenAI",
    "iPhone", "AWS"), a lower-case word opening a headline that has capitals elsewhere ("npm
    supply-chain attack …", where any other word would take a capital), version numbers, and the
    taxonomy's one-word spellings ("npm", "pypi"). A title-cased headline ("Apple Faces EU Fine
    Over App Store Rules") capitalises everything, so there only inner capitals and rare
    capitalised words count.
    """
    found: list[str] = []
    title_case = _is_title_case(title)
    for token in tokens:
        stem = _token_name(token, title_case)
        if stem:
            found.append(stem)
    if not title_case:
        found += [stem for word in _MID_SENTENCE_CAP_RE.findall(title) if (stem := stem_of(word.lower()))]
    head = _HEAD_RE.match(title)
    if head and not title.islower() and (stem := stem_of(head.group(1))) and stem[0] != "~":
        found.append(stem)  # "npm supply-chain attack …"
    first = _FIRST_WORD_RE.match(title)
    if (
        first
        and not title_case
        and (stem := stem_of(first.group(1).lower()))
        and stem[0] != "~"
        and rarity(first.group(1).lower()) >= HEAD_NAME
    ):
        found.append(stem)  # "Intel lays off …": a rarer capitalised first word is a name
    return found


_FIRST_WORD_RE: Final = re.compile(r"[\W_]*([A-Z][a-z]+)\b")
HEAD_NAME: Final = 2.5
ENTITY_RARITY: Final = 2.5  # a capitalised first word this rare (Zipf ≤ 4.5) names something


@cache
def _entity_stems() -> frozenset[str]:
    """The taxonomy's spellings as stems: well-known names ("npm"), never rare in a tech batch."""
    return frozenset(stem for word in _entity_spellings() if (stem := stem_of(word)))


@cache
def _token_name(token: str, title_case: bool) -> str:
    """The stem of a headline word when its spelling alone makes it a name, else ""."""
    lower = token.lower()
    stem = stem_of(lower)
    if not stem or stem[0] == "~":
        return ""
    if token[0].isdigit():
        return stem if "." in token else ""  # a version ("3.14") names a release
    if (
        token[1:] != token[1:].lower()
        or lower in _entity_spellings()
        or (title_case and token[0].isupper() and rarity(lower) >= RARE_NAME)
    ):
        return stem
    return ""


@cache
def _company_spellings() -> frozenset[str]:
    """The one-word names of the taxonomy's companies (the topics under big-tech): "apple",
    "google", "msft". Topic words such as "go" or "business" name no product."""
    taxonomy = load_taxonomy()
    return _one_word_spellings(t for t in taxonomy.topics if "big-tech" in taxonomy.broader.get(t.slug, ()))


@cache
def _entity_spellings() -> frozenset[str]:
    """The shipped taxonomy's one-word names for things, lowercase: topic names and the aliases
    feeds tag them with ("npm", "pypi", "kubernetes"; not its key phrases, such as "lunar")."""
    return _one_word_spellings(topic for topic in load_taxonomy().topics if topic.kind == "topic")


def _one_word_spellings(topics: Iterable[Topic]) -> frozenset[str]:
    words: set[str] = set()
    for topic in topics:
        for spelling in (topic.slug, topic.name, *topic.aliases):
            tokens = phrase_tokens(spelling)
            if len(tokens) == 1 and _TOKEN_RE.fullmatch(tokens[0]):
                words.add(tokens[0])
    return frozenset(words)


def _is_tutorial(doc: _Doc) -> bool:
    """Is the article a tutorial (an evergreen piece that teaches, not a take on an event)?"""
    return doc.special and not doc.generic and bool(_TUTORIAL_RE.search(doc.article.title.lower()))


def _is_market_report(title: str, stems: frozenset[str]) -> bool:
    """Does a (lowercase) headline report the day's move of a market as a whole?"""
    if not _MARKET_RE.search(title) or stems & _COMPANY_EVENTS or _NOT_MARKET_RE.search(title):
        return False  # a company's results, deal or fine, or its listing ("NASDAQ:MSFT")
    return bool(_MARKET_MOVE_RE.search(title))


def _same_full_name(one: str, other: str) -> bool:
    """Do two headlines name one person or product by a full name ("Neil Young", "Edward
    Snowden"): two neighbouring words a sentence-case headline capitalises, found side by side
    in the other? Each word alone may be common ("Young"); together they name someone."""
    for title, rest in ((one, other), (other, one)):
        if _is_title_case(title):
            continue  # a title-cased headline capitalises everything: no name can be told
        tokens = _TOKEN_RE.findall(title)
        names = {
            (first.lower(), second.lower())
            for first, second in pairwise(tokens)
            if first[0].isupper() and second[0].isupper()
        }
        names = {pair for pair in names if not set(pair) & (_STOPWORDS | _GENERIC)}
        if names:
            words = [token.lower() for token in _TOKEN_RE.findall(rest)]
            if names & set(pairwise(words)):
                return True
    return False


# After a company's name: the company itself or one of its people, not a product ("Google Inc",
# "Microsoft Corporation", "Facebook CEO" each head many of one day's stories).
_NO_PRODUCT: Final = frozenset(
    """
    inc corp corporation co company ltd plc llc ag sa group holdings stock stocks shares share
    ceo cfo coo cto chief founder cofounder president executive exec boss chairman chairwoman
    """.split()  # noqa: SIM905
)


def _product_pairs(title: str) -> set[tuple[str, str]]:
    """Neighbouring capitalised words of which one is a known company and the other no filler:
    ("apple", "tv"), ("google", "docs")."""
    entities = _company_spellings()
    pairs = set()
    for first, second in pairwise(_TOKEN_RE.findall(title)):
        if not (first[0].isupper() and second[0].isupper()):
            continue
        pair = (first.lower(), second.lower())
        if (pair[0] in entities) == (pair[1] in entities):
            continue  # two companies ("Apple Google") or none
        if set(pair) & (_STOPWORDS | _GENERIC | _NO_PRODUCT) or any(stem_of(w)[:1] == "~" for w in pair):
            continue  # "Apple Launches", "Google Says", "Google Inc", "Facebook CEO"
        pairs.add(pair)
    return pairs


def _first_pair(title: str) -> tuple[str, str] | None:
    """A headline's first two words: capitalised as its opening, not as a name."""
    tokens = _TOKEN_RE.findall(title)[:2]
    return (tokens[0].lower(), tokens[1].lower()) if len(tokens) == 2 else None


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
    return {t: w / norm for t, w in vector.items() if w > 0} if norm else {}


def _same_title(doc: _Doc, title: frozenset[str]) -> bool:
    if doc.special or not doc.title or not title:
        return False
    return len(doc.title & title) / len(doc.title | title) >= SAME_SOURCE_TITLES
