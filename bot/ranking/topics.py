"""Topics: the taxonomy (shipped data + user topics) and the tagger that weighs articles by topic.

The taxonomy lives in `bot/data/topics.toml`: developer topics (a slug, a display name, the
spellings feeds use as tags, key phrases, broader topics) and FlareStart's kinds of article
(news, how-to, opinion) with the title patterns that reveal them.

`Tagger` is built once from a `Taxonomy` and then tags articles fast enough to run on ingest
(thousands of articles a second, pure Python): feed tags go through a folded alias table, title
and excerpt words through a phrase index, and every phrase carries an IDF-like weight.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any, Final

from bot.errors import ConfigError
from bot.ranking.types import ArticleText, Topic, TopicMatch

__all__ = [
    "KINDS",
    "KindRules",
    "Tagger",
    "Taxonomy",
    "UnknownTopicError",
    "fold_alias",
    "load_taxonomy",
    "phrase_tokens",
    "topic_from_settings",
]

KINDS: Final = ("news", "how-to", "opinion")

_SLUG_RE: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# Folding for tags and aliases: case, "-", "_", spaces, dots and camelCase all disappear.
_FOLD_RE: Final = re.compile(r"[^\w+#]|_")
# Words for phrase matching: version numbers stay whole ("3.14"), ".net"/".js" keep their dot,
# "c++" and "c#" keep their marks.
_TOKEN_RE: Final = re.compile(r"\d+(?:\.\d+)+|[^\W_][\w+#]*|\.[^\W\d_]\w*")
_TAG_SPLIT_RE: Final = re.compile(r"\s*[/|>:,;]\s*")


class UnknownTopicError(ConfigError):
    """Topics asked for by a name the taxonomy does not know; the message lists the closest ones."""

    def __init__(self, unknown: Sequence[str], suggestions: Mapping[str, Sequence[str]]) -> None:
        self.unknown = tuple(unknown)
        self.suggestions = {name: tuple(close) for name, close in suggestions.items()}
        parts = []
        for name in self.unknown:
            close = self.suggestions.get(name, ())
            hint = f"closest: {', '.join(close)}" if close else "no close match (see `flarestart topics`)"
            parts.append(f"unknown topic '{name}'; {hint}")
        super().__init__("; ".join(parts))


def fold_alias(text: str) -> str:
    """The key a tag or alias is looked up by: "Machine_Learning", "machine-learning" → "machinelearning"."""
    return _FOLD_RE.sub("", text.lower())


def phrase_tokens(text: str) -> tuple[str, ...]:
    """The words of a phrase or a text, as the phrase index compares them."""
    return tuple(_TOKEN_RE.findall(text.lower()))


# -- taxonomy ------------------------------------------------------------------------------------


class Taxonomy:
    """The topics and kinds FlareStart knows, looked up by slug, name or alias (case-insensitive)."""

    __slots__ = ("_by_slug", "_lookup", "broader", "kind_rules", "topics")

    def __init__(
        self,
        topics: Iterable[Topic],
        *,
        broader: Mapping[str, Sequence[str]] | None = None,
        kind_rules: Mapping[str, KindRules] | None = None,
    ) -> None:
        self.topics: tuple[Topic, ...] = tuple(topics)
        self._by_slug: dict[str, Topic] = {}
        self._lookup: dict[str, str] = {}  # folded slug / name / alias → slug
        for topic in self.topics:
            _validate_topic(topic)
            _check_not_phrases(topic)
            if topic.slug in self._by_slug:
                raise ConfigError(f"topic '{topic.slug}' is defined twice")
            self._by_slug[topic.slug] = topic
        for topic in self.topics:
            for spelling in (topic.slug, topic.name, *topic.aliases):
                key = fold_alias(spelling)
                owner = self._lookup.setdefault(key, topic.slug)
                if owner != topic.slug:
                    raise ConfigError(
                        f"topic '{topic.slug}': '{spelling}' already names topic '{owner}'; "
                        f'use slug = "{owner}" to extend that topic instead'
                    )
        self.broader: dict[str, tuple[str, ...]] = {}
        for slug, parents in (broader or {}).items():
            for parent in parents:
                if parent not in self._by_slug or slug not in self._by_slug:
                    missing = parent if slug in self._by_slug else slug
                    raise ConfigError(f"topic '{slug}': broader topic '{missing}' is not defined")
            self.broader[slug] = tuple(parents)
        _check_acyclic(self.broader)
        self.kind_rules: dict[str, KindRules] = {}
        for slug, rules in (kind_rules or {}).items():
            if slug not in self._by_slug or self._by_slug[slug].kind != "kind":
                raise ConfigError(f"title rules given for '{slug}', which is not a kind of article")
            for pattern in rules.title_patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(f"kind '{slug}': bad title pattern {pattern!r}: {exc}") from None
            for word in rules.title_words:
                if not phrase_tokens(word):
                    raise ConfigError(f"kind '{slug}': title word {word!r} has no letters or digits")
            self.kind_rules[slug] = rules

    def __len__(self) -> int:
        return len(self.topics)

    def __iter__(self) -> Iterator[Topic]:
        return iter(self.topics)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    @property
    def slugs(self) -> tuple[str, ...]:
        return tuple(topic.slug for topic in self.topics)

    @property
    def kinds(self) -> tuple[Topic, ...]:
        return tuple(topic for topic in self.topics if topic.kind == "kind")

    def get(self, slug: str) -> Topic:
        """The topic with this slug (a name or alias works too); UnknownTopicError otherwise."""
        found = self._find(slug)
        if found is None:
            raise UnknownTopicError([slug], {slug: self.closest(slug)})
        return found

    def resolve(self, slugs: Iterable[str]) -> list[Topic]:
        """Topics for slugs, names or aliases, in the order given, without repeats.

        Raises one UnknownTopicError naming every unknown one with its closest known slugs.
        """
        found: list[Topic] = []
        unknown: list[str] = []
        for name in slugs:
            topic = self._find(name)
            if topic is None:
                if name not in unknown:
                    unknown.append(name)
            elif topic not in found:
                found.append(topic)
        if unknown:
            raise UnknownTopicError(unknown, {name: self.closest(name) for name in unknown})
        return found

    def closest(self, name: str, n: int = 3) -> list[str]:
        """Slugs of the known topics whose slug, name or alias is spelled most like `name`."""
        key = fold_alias(name)
        slugs: list[str] = []
        # Slugs first (what the user should type), then names and aliases.
        by_slug = {fold_alias(slug): slug for slug in self._by_slug}
        candidates = difflib.get_close_matches(key, list(by_slug), n=n, cutoff=0.6)
        candidates += difflib.get_close_matches(key, list(self._lookup), n=n * 2, cutoff=0.6)
        for candidate in candidates:
            slug = by_slug.get(candidate) or self._lookup[candidate]
            if slug not in slugs:
                slugs.append(slug)
        return slugs[:n]

    def _find(self, name: str) -> Topic | None:
        topic = self._by_slug.get(name)
        if topic is not None:
            return topic
        slug = self._lookup.get(fold_alias(name))
        return self._by_slug[slug] if slug is not None else None


def _validate_topic(topic: Topic) -> None:
    where = f"topic '{topic.slug}'"
    if not _SLUG_RE.match(topic.slug):
        raise ConfigError(f"{where}: a slug is lowercase words joined by '-', like 'machine-learning'")
    if not topic.name.strip():
        raise ConfigError(f"{where}: the name is empty")
    if topic.kind not in ("topic", "kind"):
        raise ConfigError(f"{where}: kind must be 'topic' or 'kind', not {topic.kind!r}")
    for alias in topic.aliases:
        if not fold_alias(alias):
            raise ConfigError(f"{where}: alias {alias!r} has no letters or digits")
    for phrase in topic.phrases:
        if not phrase_tokens(phrase):
            raise ConfigError(f"{where}: phrase {phrase!r} has no words")
    if topic.kind == "topic" and not topic.phrases and not topic.aliases:
        raise ConfigError(f"{where}: give at least one phrase or alias to recognise it by")


def _check_not_phrases(topic: Topic) -> None:
    """Checked in the taxonomy, once a user topic has extended the shipped one it names."""
    own = [phrase_tokens(phrase) for phrase in topic.phrases]
    for phrase in topic.not_phrases:
        tokens = phrase_tokens(phrase)
        if not any(_holds(tokens, inner) for inner in own if len(inner) < len(tokens)):
            raise ConfigError(
                f"topic '{topic.slug}': not-phrase {phrase!r} holds none of the topic's phrases; a "
                'not-phrase is a longer phrase that means something else ("apple pie" for "apple")'
            )


def _holds(tokens: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    size = len(inner)
    return any(tokens[i : i + size] == inner for i in range(len(tokens) - size + 1))


def _check_acyclic(broader: Mapping[str, Sequence[str]]) -> None:
    def visit(slug: str, path: tuple[str, ...]) -> None:
        for parent in broader.get(slug, ()):
            if parent in path:
                raise ConfigError(f"topic '{slug}': broader topics loop: {' → '.join((*path, parent))}")
            visit(parent, (*path, parent))

    for slug in broader:
        visit(slug, (slug,))


@dataclass(frozen=True, slots=True)
class KindRules:
    """How a title reveals a kind of article: words anywhere in it, or regular expressions."""

    title_words: tuple[str, ...] = ()  # "launches", "how to", "in defense of"
    title_patterns: tuple[str, ...] = ()  # tried on the lowercased title: r"^\s*why\b"


@dataclass(frozen=True, slots=True)
class _ShippedData:
    topics: tuple[Topic, ...]
    broader: dict[str, tuple[str, ...]]
    kind_rules: dict[str, KindRules]


@cache
def _shipped() -> _ShippedData:
    text = resources.files("bot").joinpath("data/topics.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # a packaging bug, but say where
        raise ConfigError(f"bot/data/topics.toml: not valid TOML: {exc}") from exc
    topics: list[Topic] = []
    broader: dict[str, tuple[str, ...]] = {}
    rules: dict[str, KindRules] = {}
    for section, kind in (("topic", "topic"), ("kind", "kind")):
        for entry in data.get(section, []):
            slug = str(entry["slug"])
            topics.append(
                Topic(
                    slug=slug,
                    name=str(entry["name"]),
                    kind="topic" if kind == "topic" else "kind",
                    aliases=tuple(str(a) for a in entry.get("aliases", ())),
                    phrases=tuple(str(p) for p in entry.get("phrases", ())),
                    not_phrases=tuple(str(p) for p in entry.get("not_phrases", ())),
                )
            )
            if entry.get("broader"):
                broader[slug] = tuple(str(b) for b in entry["broader"])
            if kind == "kind":
                rules[slug] = KindRules(
                    title_words=tuple(str(w) for w in entry.get("title_words", ())),
                    title_patterns=tuple(str(p) for p in entry.get("title_patterns", ())),
                )
    return _ShippedData(tuple(topics), broader, rules)


def load_taxonomy(extra: Sequence[Topic] = ()) -> Taxonomy:
    """The shipped taxonomy plus the user's topics.

    A user topic whose slug is already known extends that topic: its aliases and phrases are
    added and its name replaces the shipped one. Raises ConfigError naming the topic at fault.
    """
    shipped = _shipped()
    topics = {topic.slug: topic for topic in shipped.topics}
    for topic in extra:
        known = topics.get(topic.slug)
        if known is None:
            topics[topic.slug] = topic
        else:
            topics[topic.slug] = replace(
                known,
                name=topic.name or known.name,
                aliases=_unique(known.aliases + topic.aliases),
                phrases=_unique(known.phrases + topic.phrases),
                not_phrases=_unique(known.not_phrases + topic.not_phrases),
            )
    return Taxonomy(topics.values(), broader=shipped.broader, kind_rules=shipped.kind_rules)


def topic_from_settings(mapping: Mapping[str, Any]) -> Topic:
    """A user topic from the settings file: {name, phrases, slug?, aliases?, not_phrases?}.

    The slug is derived from the name when missing ("Home Lab" → "home-lab"); phrases default to
    the name when missing or empty. Raises ConfigError naming the topic when a value has the wrong shape.
    """
    allowed = {"slug", "name", "phrases", "aliases", "not_phrases"}
    label = str(mapping.get("slug") or mapping.get("name") or "?")
    where = f"topic '{label}'"
    unknown_keys = sorted(set(mapping) - allowed)
    if unknown_keys:
        raise ConfigError(f"{where}: unknown key '{unknown_keys[0]}' (allowed: {', '.join(sorted(allowed))})")
    name = mapping.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    slug = mapping.get("slug")
    if slug is None:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        if not slug:
            raise ConfigError(f"{where}: cannot derive a slug from the name; give 'slug'")
    elif not isinstance(slug, str) or not _SLUG_RE.match(slug):
        raise ConfigError(f"{where}: 'slug' must be lowercase words joined by '-', like 'home-lab'")
    phrases = _string_list(mapping.get("phrases") or [name], f"{where}: 'phrases'")
    aliases = _string_list(mapping.get("aliases") or [], f"{where}: 'aliases'")
    not_phrases = _string_list(mapping.get("not_phrases") or [], f"{where}: 'not_phrases'")
    if not phrases:
        raise ConfigError(f"{where}: 'phrases' holds only blanks; give at least one phrase")
    topic = Topic(slug=slug, name=name.strip(), aliases=aliases, phrases=phrases, not_phrases=not_phrases)
    _validate_topic(topic)
    return topic


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return _unique(tuple(v.strip() for v in value if v.strip()))


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


# -- tagging -------------------------------------------------------------------------------------

# Field weights (BM25F style): a phrase in the title counts 2.5 times one in the excerpt; a
# phrase inside a feed tag ("Azure Functions" → cloud) nearly as much.
TITLE_WEIGHT: Final = 2.5
EXCERPT_WEIGHT: Final = 1.0
TAG_TEXT_WEIGHT: Final = 2.0
K1: Final = 1.2  # term-frequency saturation
TAG_SCORE: Final = 2.5  # a feed tag that is an alias of the topic
SCALE: Final = 1.6  # raw score → weight: 1 - exp(-raw / SCALE)
BROADER_FACTOR: Final = 0.75  # an article about llms is about ai, a little less
DEFAULT_THRESHOLD: Final = 0.3
KIND_TAG: Final = 1.0  # evidence for a kind: a feed tag ("tutorial"), ...
KIND_TITLE: Final = {"how-to": 0.9, "opinion": 0.85, "news": 0.8}  # ... the title's wording, ...
KIND_CUE: Final = 0.3  # ... a cue phrase in the excerpt ("in this tutorial")
MAX_TERMS: Final = 6

# first word → (phrase words, id), longest phrase first
_Index = dict[str, tuple[tuple[tuple[str, ...], int], ...]]


def _build_index(entries: Iterable[tuple[tuple[str, ...], int]]) -> _Index:
    grouped: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for tokens, ident in entries:
        grouped.setdefault(tokens[0], []).append((tokens, ident))
    return {first: tuple(sorted(found, key=lambda e: (-len(e[0]), e[0]))) for first, found in grouped.items()}


def _scan(index: _Index, tokens: Sequence[str]) -> list[int]:
    """Ids of the phrases found in `tokens`, leftmost-longest, without overlaps."""
    found: list[int] = []
    end = 0
    n = len(tokens)
    for i in [i for i, token in enumerate(tokens) if token in index]:
        if i < end:
            continue
        for phrase, ident in index[tokens[i]]:
            size = len(phrase)
            if size == 1 or (i + size <= n and tuple(tokens[i : i + size]) == phrase):
                found.append(ident)
                end = i + size
                break
    return found


@dataclass(frozen=True, slots=True)
class _Phrase:
    text: str
    topics: tuple[tuple[int, float], ...]  # (topic index, weight of this phrase for it)


class Tagger:
    """Weighs articles by topic and kind. Build once per taxonomy (and corpus); tag many times.

    `corpus`, when given, supplies document frequencies: a phrase found in many of its articles
    ("cloud", "security") counts less than a rare one ("borrow checker"). Without it the weights
    come from the taxonomy alone: phrase length and how many topics share the phrase.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        *,
        corpus: Iterable[ArticleText] | None = None,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        self.taxonomy = taxonomy
        self.threshold = threshold
        topics = [t for t in taxonomy.topics if t.kind == "topic"]
        kinds = [t for t in taxonomy.topics if t.kind == "kind"]
        self._slugs = [t.slug for t in topics]
        self._kind_slugs = [k.slug for k in kinds]

        self._alias: dict[str, tuple[bool, int]] = {}  # folded tag → (is a kind, index)
        for i, topic in enumerate(topics):
            for spelling in (topic.slug, topic.name, *topic.aliases):
                self._alias[fold_alias(spelling)] = (False, i)
        for i, kind in enumerate(kinds):
            for spelling in (kind.slug, kind.name, *kind.aliases):
                self._alias[fold_alias(spelling)] = (True, i)

        # Topic phrases, with a weight each: shared by several topics → less telling for each;
        # longer → more specific.
        owners: dict[tuple[str, ...], list[int]] = {}
        texts: dict[tuple[str, ...], str] = {}
        for i, topic in enumerate(topics):
            for phrase in topic.phrases:
                for tokens in _variants(phrase_tokens(phrase)):
                    if i not in owners.setdefault(tokens, []):
                        owners[tokens].append(i)
                    texts.setdefault(tokens, phrase)

        # Not-phrases join the index owned by no topic: the longest match wins its span, so
        # "apple pie" hides "apple" from every topic, and speaks for none.
        meaningless: set[tuple[str, ...]] = set()
        for topic in topics:
            for phrase in topic.not_phrases:
                for tokens in _variants(phrase_tokens(phrase)):
                    owners.setdefault(tokens, [])
                    texts.setdefault(tokens, phrase)
                    meaningless.add(tokens)

        def phrase_weight(tokens: tuple[str, ...]) -> float:
            return min(1.0 + 0.3 * (len(tokens) - 1), 1.6) / math.sqrt(len(owners[tokens]))

        self._phrases: list[_Phrase] = []
        for tokens, topic_ids in owners.items():
            weights = dict.fromkeys(topic_ids, phrase_weight(tokens)) if topic_ids else {}
            if tokens in meaningless:
                self._phrases.append(_Phrase(texts[tokens], tuple(weights.items())))
                continue
            # The longest phrase wins a span of words, so it also speaks for the topics of the
            # phrases inside it: "pixel 10" (android) is also "pixel" (gadgets, google).
            for size in range(len(tokens) - 1, 0, -1):
                for start in range(len(tokens) - size + 1):
                    inner = tokens[start : start + size]
                    for owner in owners.get(inner, ()):
                        weights.setdefault(owner, phrase_weight(inner))
            self._phrases.append(_Phrase(texts[tokens], tuple(weights.items())))
        self._index = _build_index((tokens, pid) for pid, tokens in enumerate(owners))
        if corpus is not None:
            self._apply_corpus(corpus)

        # Ancestors through `broader`, with the factor their weight is passed on by.
        index_of = {slug: i for i, slug in enumerate(self._slugs)}
        self._ancestors: list[tuple[tuple[int, float], ...]] = []
        for topic in topics:
            found: dict[int, float] = {}
            frontier = [(topic.slug, 1.0)]
            while frontier:
                slug, factor = frontier.pop()
                for parent in taxonomy.broader.get(slug, ()):
                    f = factor * BROADER_FACTOR
                    if parent in index_of and f > found.get(index_of[parent], 0.0):
                        found[index_of[parent]] = f
                        frontier.append((parent, f))
            self._ancestors.append(tuple(sorted(found.items())))

        # Kinds: title words through their own index, title patterns as one regex per kind,
        # cue phrases as substrings of the excerpt.
        self._news = self._kind_slugs.index("news") if "news" in self._kind_slugs else None
        self._kind_words: list[tuple[int, str]] = []
        self._kind_patterns: list[tuple[int, re.Pattern[str]]] = []
        for k, kind in enumerate(kinds):
            rules = taxonomy.kind_rules.get(kind.slug, KindRules())
            self._kind_words += [(k, word) for word in rules.title_words]
            if rules.title_patterns:
                combined = "|".join(f"(?:{pattern})" for pattern in rules.title_patterns)
                self._kind_patterns.append((k, re.compile(combined)))
        self._kind_index = _build_index(
            (phrase_tokens(word), ident) for ident, (_, word) in enumerate(self._kind_words)
        )
        self._kind_cues = [tuple(phrase.lower() for phrase in kind.phrases) for kind in kinds]

    def _apply_corpus(self, corpus: Iterable[ArticleText]) -> None:
        """Scale each phrase by its IDF in the corpus, relative to a phrase in 1% of articles."""
        df = [0] * len(self._phrases)
        n = 0
        for article in corpus:
            n += 1
            seen = set(_scan(self._index, phrase_tokens(article.title)))
            seen.update(_scan(self._index, phrase_tokens(article.excerpt)))
            for pid in seen:
                df[pid] += 1
        if n < 20:  # too few articles to say anything about frequencies
            return

        def idf(count: float) -> float:
            return math.log(1.0 + (n - count + 0.5) / (count + 0.5))

        reference = idf(max(1.0, 0.01 * n))
        for pid, phrase in enumerate(self._phrases):
            factor = min(1.5, max(0.4, idf(df[pid]) / reference))
            self._phrases[pid] = _Phrase(phrase.text, tuple((t, w * factor) for t, w in phrase.topics))

    def tag(self, article: ArticleText) -> tuple[TopicMatch, ...]:
        """Weighted topics and kinds of one article, strongest first; weak matches are dropped."""
        raw: dict[int, float] = {}
        terms: dict[int, list[str]] = {}
        kind_evidence: dict[int, list[tuple[float, str, str]]] = {}

        # 1. Feed tags through the alias table (whole tag, then its parts: "Tech / AI").
        tag_text: list[str] = []
        for tag in article.tags:
            parts = [tag]
            if self._alias.get(fold_alias(tag)) is None and _TAG_SPLIT_RE.search(tag):
                parts = [part for part in _TAG_SPLIT_RE.split(tag) if part]
            for part in parts:
                hit = self._alias.get(fold_alias(part))
                if hit is None:
                    tag_text.append(part)
                elif hit[0]:
                    kind_evidence.setdefault(hit[1], []).append((KIND_TAG, part, "tag"))
                else:
                    raw[hit[1]] = raw.get(hit[1], 0.0) + TAG_SCORE
                    terms.setdefault(hit[1], []).append(part)

        # 2. Phrases in title, excerpt and the tags that were no alias, BM25F-saturated.
        index = self._index
        title_tokens = phrase_tokens(article.title)
        counts: dict[int, float] = {}
        for pid in _scan(index, title_tokens):
            counts[pid] = counts.get(pid, 0.0) + TITLE_WEIGHT
        for pid in _scan(index, phrase_tokens(article.excerpt)):
            counts[pid] = counts.get(pid, 0.0) + EXCERPT_WEIGHT
        if tag_text:
            for pid in _scan(index, phrase_tokens(" | ".join(tag_text))):
                counts[pid] = counts.get(pid, 0.0) + TAG_TEXT_WEIGHT
        phrases = self._phrases
        for pid, tf in sorted(counts.items(), key=lambda item: -item[1]):
            saturated = tf * (K1 + 1.0) / (tf + K1)
            phrase = phrases[pid]
            for topic, weight in phrase.topics:
                raw[topic] = raw.get(topic, 0.0) + weight * saturated
                terms.setdefault(topic, []).append(phrase.text)

        # 3. Raw scores → weights in (0, 1]; broader topics inherit a share.
        weights = {topic: 1.0 - math.exp(-score / SCALE) for topic, score in raw.items()}
        for topic in list(weights):
            for parent, factor in self._ancestors[topic]:
                inherited = weights[topic] * factor
                if inherited > weights.get(parent, 0.0):
                    weights[parent] = inherited
                    terms[parent] = terms.get(parent, []) + terms[topic]

        matches = [
            TopicMatch(self._slugs[topic], round(weight, 4), _unique(tuple(terms[topic]))[:MAX_TERMS])
            for topic, weight in weights.items()
            if weight >= self.threshold
        ]
        matches += self._kinds_of(article, title_tokens, kind_evidence)
        matches.sort(key=lambda m: (-m.weight, m.slug))
        return tuple(matches)

    def tag_many(self, articles: Iterable[ArticleText]) -> list[tuple[TopicMatch, ...]]:
        tag = self.tag
        return [tag(article) for article in articles]

    def _kinds_of(
        self,
        article: ArticleText,
        title_tokens: Sequence[str],
        evidence: dict[int, list[tuple[float, str, str]]],
    ) -> list[TopicMatch]:
        """News, how-to, opinion: from feed tags, the title's wording and cues in the excerpt.

        A title that reads as a how-to or an opinion ("Why we left Kubernetes") is not news by
        its wording, even when it holds an announcement verb; a feed's "News" tag still counts.
        """
        titled: dict[int, str] = {}
        for ident in _scan(self._kind_index, title_tokens):
            k, word = self._kind_words[ident]
            titled.setdefault(k, word)
        if len(titled) < len(self._kind_slugs):
            title = article.title.lower()
            for k, pattern in self._kind_patterns:
                if k not in titled:
                    hit = pattern.search(title)
                    if hit:
                        titled[k] = _short(hit.group(0))
        news = self._news
        if news in titled and len(titled) > 1:
            del titled[news]
        for k, word in titled.items():
            evidence.setdefault(k, []).append((KIND_TITLE.get(self._kind_slugs[k], 0.8), word, "title"))
        excerpt = article.excerpt.lower().replace("\u2019", "'")
        for k, cues in enumerate(self._kind_cues):
            for cue in cues:
                if cue in excerpt:
                    evidence.setdefault(k, []).append((KIND_CUE, cue, "excerpt"))
        if news is not None and news in evidence and len(titled) and news not in titled:
            # the title says how-to or opinion: only a feed's own tag still makes it news
            evidence[news] = [item for item in evidence[news] if item[2] == "tag"]
        matches = []
        for k, items in evidence.items():
            miss = 1.0
            for strength, _, _ in items:
                miss *= 1.0 - strength
            weight = 1.0 - miss
            if items and weight >= self.threshold:
                terms = _unique(tuple(text for _, text, _ in items))[:MAX_TERMS]
                matches.append(TopicMatch(self._kind_slugs[k], round(weight, 4), terms))
        return matches


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _variants(tokens: tuple[str, ...]) -> list[tuple[str, ...]]:
    """A phrase and its plural ("container" → "containers"), so excerpts need no stemming."""
    if not tokens:
        return []
    last = tokens[-1]
    if last[-1].isalpha() and not last.endswith("s") and len(last) > 2:
        return [tokens, (*tokens[:-1], last + "s")]
    return [tokens]
