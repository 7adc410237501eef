"""Find the feed behind a web page URL, the way feed readers do when given a blog's home page.

The page's own `<link rel="alternate" type="application/rss+xml" href="…">` declarations come
first, in page order; when none of them parse, a few paths that blog engines commonly use
(`/feed`, `/rss.xml`, …) are tried on the page's host.

Fetching and parsing are passed in, so this module stays independent of how either is done:

    url, feed = await discover_feed(
        page_url,
        fetch=lambda u: fetcher.fetch(u, trusted=False),
        parse=lambda body, u, content_type: parse_feed(body, url=u, content_type=content_type),
    )
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
from lxml import etree

from bot.errors import FeedParseError, SourceError
from bot.sources.types import FetchResult, ParsedFeed

__all__ = [
    "COMMON_FEED_PATHS",
    "FEED_TYPES",
    "MAX_DECLARED_LINKS",
    "FeedLink",
    "Fetch",
    "Parse",
    "discover_feed",
    "find_feed_links",
]

FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/feed+json",
        "application/json",
        "application/rdf+xml",
        "text/xml",
    }
)
# Plain JSON is a feed only when the page calls the link an alternate version of itself; under
# rel="feed" alone it is more often an API endpoint.
_ALTERNATE_ONLY_TYPES = frozenset({"application/json"})

# Tried on the page's host, in this order, after the links the page declares.
COMMON_FEED_PATHS = (
    "/feed",
    "/rss",
    "/rss.xml",
    "/atom.xml",
    "/feed.xml",
    "/index.xml",
    "/feed.json",
)

# A page may declare any number of links; a hostile one should not turn into hundreds of fetches.
MAX_DECLARED_LINKS = 10

Fetch = Callable[[str], Awaitable[FetchResult]]
Parse = Callable[[bytes, str, str | None], ParsedFeed]


@dataclass(frozen=True)
class FeedLink:
    """A feed a page declares: absolute URL, its title if any, and the declared media type."""

    url: str
    title: str | None
    type: str


def find_feed_links(html: bytes, base_url: str) -> list[FeedLink]:
    """The feeds an HTML page declares with <link rel="alternate">, in page order, deduplicated.

    Hrefs are resolved against the page's <base href> (itself resolved against `base_url`), and
    only http(s) results are kept. Broken HTML is read as browsers would read it.
    """
    root = _parse_html(html)
    if root is None:
        return []
    base = _document_base(root, base_url)

    links: list[FeedLink] = []
    seen: set[str] = set()
    for link in root.iter("link"):
        rel = {token.lower() for token in (link.get("rel") or "").split()}
        kind = (link.get("type") or "").split(";", 1)[0].strip().lower()
        if kind not in FEED_TYPES:
            continue
        if "alternate" not in rel and ("feed" not in rel or kind in _ALTERNATE_ONLY_TYPES):
            continue
        url = _absolute_http_url(base, link.get("href"))
        if url is None or url in seen:
            continue
        seen.add(url)
        title = (link.get("title") or "").strip() or None
        links.append(FeedLink(url=url, title=title, type=kind))
    return links


async def discover_feed(
    url: str,
    *,
    fetch: Fetch,
    parse: Parse,
) -> tuple[str, ParsedFeed]:
    """The URL of the feed at (or declared by) `url`, and that feed parsed.

    `url` may be a feed itself, or an HTML page that declares its feeds; failing those, the
    common paths of COMMON_FEED_PATHS are tried on the page's host. Raises SourceError saying
    what was tried when nothing parses, and with the fetch's own words when `url` cannot be
    fetched.
    """
    result = await fetch(url)
    if result.outcome != "ok":
        raise SourceError(f"could not fetch {url}: {_fetch_failure(result)}")
    page_url = result.final_url or url

    try:
        return page_url, await _parse(parse, result, page_url)
    except FeedParseError as exc:
        not_a_feed = str(exc)
    if not _looks_like_html(result):
        kind = result.content_type or "no Content-Type"
        raise SourceError(
            f"no feed found at {url}: the response ({kind}) is neither a feed "
            f"({not_a_feed}) nor an HTML page that could declare one"
        )

    declared = [link.url for link in find_feed_links(result.body, page_url)]
    skipped = max(0, len(declared) - MAX_DECLARED_LINKS)
    declared = declared[:MAX_DECLARED_LINKS]
    guessed = [urljoin(page_url, path) for path in COMMON_FEED_PATHS]

    failures: dict[str, str] = {}
    for candidate in _unique([*declared, *guessed], skip=page_url):
        found = await _try_candidate(candidate, fetch, parse)
        if isinstance(found, str):
            failures[candidate] = found
            continue
        return found

    raise SourceError(_nothing_found(url, declared, skipped, failures))


async def _try_candidate(candidate: str, fetch: Fetch, parse: Parse) -> tuple[str, ParsedFeed] | str:
    """The feed at `candidate`, or one short reason why there is none."""
    try:
        result = await fetch(candidate)
    except SourceError as exc:  # e.g. a declared link that points somewhere we may not go
        return str(exc)
    if result.outcome != "ok":
        return _fetch_failure(result)
    final_url = result.final_url or candidate
    try:
        return final_url, await _parse(parse, result, final_url)
    except FeedParseError as exc:
        return str(exc)  # the parser says "not a feed: …" itself


async def _parse(parse: Parse, result: FetchResult, url: str) -> ParsedFeed:
    # Parsing is CPU work: keep it off the event loop.
    return await asyncio.to_thread(parse, result.body, url, result.content_type)


def _nothing_found(url: str, declared: list[str], skipped: int, failures: dict[str, str]) -> str:
    paths = ", ".join(COMMON_FEED_PATHS)
    if not declared:
        return (
            f"no feed found at {url}: the page declares no <link rel=alternate> feed "
            f"and none of {paths} parse"
        )
    reasons = "; ".join(f"{link}: {failures.get(link, 'same as the page')}" for link in declared)
    more = f" (and {skipped} more not tried)" if skipped else ""
    count = "1 feed" if len(declared) == 1 else f"{len(declared)} feeds"
    return (
        f"no feed found at {url}: the page declares {count}{more} but none parse ({reasons}), "
        f"and none of {paths} parse"
    )


def _fetch_failure(result: FetchResult) -> str:
    if result.error:
        return result.error
    if result.status:
        return f"HTTP {result.status}"
    return result.outcome


def _looks_like_html(result: FetchResult) -> bool:
    if result.content_type and "html" in result.content_type.lower():
        return True
    head = result.body[:1024].lower()
    return b"<!doctype html" in head or b"<html" in head


def _parse_html(html: bytes) -> etree._Element | None:
    if not html.strip():
        return None
    parser = lxml.html.HTMLParser(no_network=True, remove_comments=True)
    try:
        root: etree._Element | None = etree.fromstring(html, parser)
    except etree.LxmlError:  # recover=True makes this rare: only input libxml2 cannot start on
        return None
    return root


def _document_base(root: etree._Element, page_url: str) -> str:
    """The page URL, or its first <base href> resolved against it (as browsers do)."""
    for base in root.iter("base"):
        href = base.get("href")
        if href is not None and href.strip():
            resolved = _absolute_http_url(page_url, href)
            return resolved if resolved is not None else page_url
    return page_url


def _absolute_http_url(base: str, href: str | None) -> str | None:
    if href is None:
        return None
    # Browsers drop tabs and newlines anywhere in a URL and spaces around it.
    cleaned = href.strip().replace("\t", "").replace("\n", "").replace("\r", "")
    if not cleaned:
        return None
    try:
        absolute, _fragment = urldefrag(urljoin(base, cleaned))
        parts = urlsplit(absolute)
    except ValueError:  # e.g. an invalid IPv6 host
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return absolute


def _unique(urls: list[str], *, skip: str) -> list[str]:
    seen = {urldefrag(skip)[0]}
    unique: list[str] = []
    for url in urls:
        if url not in seen:
            seen.add(url)
            unique.append(url)
    return unique
