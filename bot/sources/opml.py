"""OPML 2.0 import and export of feed subscriptions, folders kept.

OPML files are user input: the parser never loads a DTD, never reaches the network and refuses
documents that declare XML entities (an entity bomb has no business in a subscription list).

Import is forgiving where it can be: an outline that is not a usable feed becomes a problem line
("line 12: outline 'Foo' has no xmlUrl") and the rest of the file still counts. Only a file that is
not OPML at all raises `OPMLError`.

Export writes one folder outline per category (nested by "/") and round-trips:
`parse_opml(export_opml(feeds))[0] == feeds` for feeds as `parse_opml` returns them (names and
categories stripped, no empty category segments), grouped by category in first-seen order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from bot.errors import OPMLError

__all__ = ["OutlineFeed", "export_opml", "parse_opml"]


@dataclass(frozen=True)
class OutlineFeed:
    """One feed subscription as an OPML outline holds it."""

    url: str
    name: str
    site_url: str | None
    category: str | None  # folder path, nested folders joined with "/": "Tech/Python"
    topics: tuple[str, ...] = ()
    weight: float = 1.0


# XML 1.0 has no place for most control characters or lone surrogates; lxml refuses them.
_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LIBXML_POSITION = re.compile(r", line \d+, column \d+$")


def parse_opml(data: bytes, *, origin: str = "<opml>") -> tuple[list[OutlineFeed], list[str]]:
    """Read an OPML document: the usable feeds, in document order, and one line per problem.

    Raises OPMLError (naming `origin` and the line) when the bytes are not well-formed XML, declare
    entities, have a root other than <opml> or have no <body>.
    """
    root = _parse_document(data, origin)
    body = root.find("body")
    if body is None:
        raise OPMLError(f"{origin}: line {_line(root)}: <opml> has no <body>")

    feeds: list[OutlineFeed] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for outline, folders in _walk_outlines(body):
        line = _line(outline)
        url = _attr(outline, "xmlUrl")
        if not url:
            # An outline with outlines inside is a folder, not a broken feed.
            if next(outline.iterchildren("outline"), None) is None:
                label = _attr(outline, "text") or _attr(outline, "title")
                what = f"outline '{label}'" if label else "an outline without a name"
                problems.append(f"line {line}: {what} has no xmlUrl")
            continue
        if not _is_http_url(url):
            problems.append(f"line {line}: xmlUrl '{url}' is not http(s)")
            continue
        key = _dedupe_key(url)
        if key in first_line:
            problems.append(f"line {line}: duplicate xmlUrl '{url}' (first on line {first_line[key]})")
            continue
        first_line[key] = line

        site_url = _attr(outline, "htmlUrl") or None
        if site_url is not None and not _is_http_url(site_url):
            problems.append(f"line {line}: htmlUrl '{site_url}' is not http(s); ignored")
            site_url = None
        category = _join_path(folders) or _category_attribute(_attr(outline, "category"))
        weight, weight_problem = _weight(_attr(outline, "weight"))
        if weight_problem:
            problems.append(f"line {line}: {weight_problem}")
        feeds.append(
            OutlineFeed(
                url=url,
                name=_attr(outline, "text") or _attr(outline, "title") or _host(url),
                site_url=site_url,
                category=category,
                topics=_split_topics(_attr(outline, "topics")),
                weight=weight,
            )
        )
    return feeds, problems


def export_opml(
    feeds: Iterable[OutlineFeed],
    *,
    title: str = "FlareStart sources",
    now: datetime | None = None,
) -> bytes:
    """OPML 2.0 (UTF-8, indented) with one folder outline per category, nested by "/"."""
    created = now if now is not None else datetime.now(UTC)
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)

    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = _xml_text(title)
    etree.SubElement(head, "dateCreated").text = format_datetime(created)
    etree.SubElement(head, "docs").text = "https://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")

    tree = _Folder("")
    for feed in feeds:
        tree.folder_at(_split_path(feed.category)).items.append(feed)
    _write_folder(body, tree)

    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data


# Reading


def _parse_document(data: bytes, origin: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root: etree._Element | None = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or 1
        reason = _LIBXML_POSITION.sub("", str(exc.msg))  # the line is said once, up front
        raise OPMLError(f"{origin}: line {line}: not well-formed XML: {reason}") from None
    if root is None:
        raise OPMLError(f"{origin}: line 1: not well-formed XML: the document is empty")

    if _declares_entities(root.getroottree().docinfo.internalDTD):
        at = data.find(b"<!ENTITY")
        line = data[:at].count(b"\n") + 1 if at >= 0 else 1
        raise OPMLError(
            f"{origin}: line {line}: the document declares XML entities (<!ENTITY>); "
            "OPML never needs them, so the file is refused"
        )

    if not isinstance(root.tag, str) or root.tag != "opml":
        found = root.tag if isinstance(root.tag, str) else "?"
        raise OPMLError(f"{origin}: line {_line(root)}: the root element is <{found}>, not <opml>")
    return root


def _declares_entities(dtd: Any) -> bool:
    # lxml-stubs does not know DTD.iterentities(); lxml has had it since 2.3.
    return dtd is not None and any(True for _ in dtd.iterentities())


def _walk_outlines(body: etree._Element) -> Iterator[tuple[etree._Element, tuple[str, ...]]]:
    """Every <outline> in document order with the folder names above it.

    Iterative, so a deeply nested file cannot exhaust the Python stack.
    """
    stack: list[tuple[etree._Element, tuple[str, ...]]] = [
        (child, ()) for child in reversed(list(body.iterchildren("outline")))
    ]
    while stack:
        outline, folders = stack.pop()
        yield outline, folders
        children = list(outline.iterchildren("outline"))
        if not children:
            continue
        inner = folders
        if not _attr(outline, "xmlUrl"):  # a folder: its name becomes part of the path
            name = _attr(outline, "text") or _attr(outline, "title")
            inner = (*folders, *_split_path(name))
        stack.extend((child, inner) for child in reversed(children))


def _line(element: etree._Element) -> int:
    line: Any = element.sourceline  # lxml-stubs types it as `...`; lxml gives int | None
    return int(line or 0)


def _attr(element: etree._Element, name: str) -> str:
    value = element.get(name)
    return value.strip() if value is not None else ""


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _dedupe_key(url: str) -> str:
    """Scheme and host are case-insensitive; the rest of a URL is not."""
    parts = urlsplit(url)
    return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def _split_path(path: str | None) -> tuple[str, ...]:
    if not path:
        return ()
    return tuple(part.strip() for part in path.split("/") if part.strip())


def _join_path(parts: Iterable[str]) -> str | None:
    return "/".join(parts) or None


def _category_attribute(value: str) -> str | None:
    """OPML 2.0: a comma-separated list of "/"-delimited paths; the first path is the folder.

    Entries that start with "/" are paths and win over bare words (which the spec calls tags);
    a file that only has bare words ("category="Tech"") still gets a folder from the first one.
    """
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if not entries:
        return None
    chosen = next((entry for entry in entries if entry.startswith("/")), entries[0])
    return _join_path(_split_path(chosen))


def _split_topics(value: str) -> tuple[str, ...]:
    return tuple(topic.strip() for topic in value.split(",") if topic.strip())


def _weight(value: str) -> tuple[float, str | None]:
    if not value:
        return 1.0, None
    try:
        weight = float(value)
    except ValueError:
        return 1.0, f"weight '{value}' is not a number; using 1.0"
    if not math.isfinite(weight) or weight <= 0:  # as for configured sources: weight > 0
        return 1.0, f"weight '{value}' is not a positive number; using 1.0"
    return weight, None


# Writing


@dataclass
class _Folder:
    """A category folder: feeds and subfolders in the order they were first seen."""

    name: str
    items: list[OutlineFeed | _Folder] = field(default_factory=list)
    subfolders: dict[str, _Folder] = field(default_factory=dict)

    def folder_at(self, path: tuple[str, ...]) -> _Folder:
        folder = self
        for name in path:
            child = folder.subfolders.get(name)
            if child is None:
                child = folder.subfolders[name] = _Folder(name)
                folder.items.append(child)
            folder = child
        return folder


def _write_folder(parent: etree._Element, folder: _Folder) -> None:
    for item in folder.items:
        if isinstance(item, _Folder):
            name = _xml_text(item.name)
            element = etree.SubElement(parent, "outline", text=name, title=name)
            _write_folder(element, item)
            continue
        name = _xml_text(item.name)
        attributes = {"type": "rss", "text": name, "title": name, "xmlUrl": _xml_text(item.url)}
        if item.site_url:
            attributes["htmlUrl"] = _xml_text(item.site_url)
        if item.topics:
            attributes["topics"] = _xml_text(",".join(item.topics))
        if item.weight != 1.0:
            attributes["weight"] = repr(item.weight)  # shortest text that reads back exactly
        etree.SubElement(parent, "outline", attributes)


def _xml_text(value: str) -> str:
    return _NOT_XML_CHARS.sub("", value)
