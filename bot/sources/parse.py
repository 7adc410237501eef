"""Feed bytes → `ParsedFeed`: RSS 0.9x/1.0/2.0, Atom 0.3/1.0 and JSON Feed 1.0/1.1.

Two readers feed one normalization (`_finish_entry`):

- the fast path reads XML with lxml and JSON Feed with `json`. XML that lxml refuses is first
  mended the way every feed reader reads it (a bare "&" is text, `&nbsp;` is a no-break space,
  control characters and junk after the root element are noise) and read again;
- the fallback hands what is still broken to feedparser, whose forgiving parser recovers what it
  can; its entries are mapped into the same raw shape, so both paths give the same entries for
  the same feed (tests parse every fixture both ways).

Hostile input is refused before either parser sees it: a DOCTYPE that declares entities (the
"billion laughs" bomb, external entities) is an error, and lxml never resolves entities, loads a
DTD or touches the network.

`parse_feed` is a plain top-level function of picklable arguments: ingest runs it in a
ProcessPoolExecutor worker.
"""

from __future__ import annotations

import codecs
import html.entities
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urljoin

from lxml import etree

from bot.errors import FeedParseError
from bot.sources.normalize import (
    canonical_url,
    clean_title,
    content_hash,
    excerpt_from_html,
    excerpt_from_text,
    first_image_url,
    looks_like_url,
    parse_datetime,
    person_name,
    repair_mojibake,
    title_from_excerpt,
)
from bot.sources.types import ParsedEntry, ParsedFeed

__all__ = ["EXCERPT_LIMIT", "parse_feed"]

EXCERPT_LIMIT: Final = 300
ENTITY_ATTACK: Final = "XML declares entities (possible entity-expansion attack)"
HTML_PAGE: Final = "not a feed: looks like an HTML page"

Element = etree._Element


def parse_feed(
    body: bytes,
    *,
    url: str,
    content_type: str | None = None,
    force_feedparser: bool = False,
) -> ParsedFeed:
    """Parse a fetched feed body into normalized entries.

    `url` is where the body came from: relative links resolve against it. `content_type` is the
    HTTP header; its charset counts when the document does not declare an encoding.
    `force_feedparser` skips the fast path (tests compare both paths with it).

    Raises FeedParseError with a one-line reason when the bytes are not a feed we can read.
    """
    prepared = _prepare(body, content_type)
    if prepared.is_json:
        if force_feedparser:
            raise FeedParseError("feedparser cannot read JSON Feed; use the fast path")
        return _finish_feed(_read_json_feed(prepared.body, url), parser="fast", warning=None)
    _refuse_entity_declarations(prepared.body)
    if force_feedparser:
        return _parse_with_feedparser(prepared, url, reason=None)

    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        recover=False,
        load_dtd=False,
        remove_comments=True,
        remove_pis=True,
    )
    warning = prepared.warning
    try:
        root = etree.fromstring(prepared.body, parser)
    except etree.XMLSyntaxError as exc:
        if _looks_like_html(prepared.body):
            raise FeedParseError(HTML_PAGE) from None
        reason = f"XML is not well-formed ({_first_line(exc.msg or str(exc))})"
        repaired = _repair(prepared.body)
        if repaired is None:
            return _parse_with_feedparser(prepared, url, reason=reason)
        try:
            root = etree.fromstring(repaired, parser)
        except etree.XMLSyntaxError:
            return _parse_with_feedparser(prepared, url, reason=reason)
        warning = f"repaired: {reason}"
    except (LookupError, ValueError) as exc:  # an encoding libxml2 does not know
        reason = f"cannot decode the document ({_first_line(str(exc))})"
        return _parse_with_feedparser(prepared, url, reason=reason)

    dtd: Any = root.getroottree().docinfo.internalDTD  # the stubs lack DTD.iterentities
    if dtd is not None and any(True for _ in dtd.iterentities()):  # belt and braces
        raise FeedParseError(ENTITY_ATTACK)
    raw = _read_xml_feed(root, url, utf8=prepared.utf8)
    if raw is None:
        local = etree.QName(root).localname.lower()
        if local == "html":
            raise FeedParseError(HTML_PAGE)
        # Well-formed but no dialect we know: feedparser knows a few odd ones.
        reason = f"unknown root element <{local}>"
        return _parse_with_feedparser(prepared, url, reason=reason, need_entries=True)
    return _finish_feed(raw, parser="fast", warning=warning)


# ---------------------------------------------------------------------------------------------
# What both readers produce: an entry's fields as the feed wrote them, before normalization.


@dataclass(slots=True)
class _RawEntry:
    base: str | None  # what relative links in this entry resolve against
    guid: str | None = None
    link: str | None = None
    guid_is_link: bool = False  # an RSS guid without isPermaLink="false", or an Atom id
    title: str | None = None
    summary: str | None = None
    summary_is_html: bool = True
    summary_base: str | None = None  # the summary's own xml:base, when it has one
    content: str | None = None
    content_is_html: bool = True
    content_base: str | None = None
    media_description: str | None = None  # plain text; the summary of last resort
    author: str | None = None
    published: str | None = None
    updated: str | None = None
    created: str | None = None
    tags: list[str] = field(default_factory=list)
    thumbnail: str | None = None
    media_image: str | None = None
    enclosure_image: str | None = None


@dataclass(slots=True)
class _RawFeed:
    format: str
    base: str | None
    utf8: bool = False  # a UTF-8 document: its text may hold UTF-8 read as Latin-1 ("Ã©")
    title: str | None = None
    site_url: str | None = None
    ttl: str | None = None
    author: str | None = None  # Atom: entries without an author inherit the feed's
    entries: list[_RawEntry] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Bytes: encodings, sniffing, hostile input


@dataclass(frozen=True, slots=True)
class _Prepared:
    body: bytes  # UTF-8 (or an encoding only libxml2 may know), nothing before the prolog
    utf8: bool = True  # the bytes were UTF-8 as fetched
    warning: str | None = None
    is_json: bool = False


_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_XML_DECL_RE: Final = re.compile(rb"<\?xml\b[^>]*?\?>")
_DECL_ENCODING_RE: Final = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_CHARSET_RE: Final = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.IGNORECASE)


def _prepare(body: bytes, content_type: str | None) -> _Prepared:
    """Bytes lxml reads right, whatever the encoding: UTF-8 as it comes; UTF-16/32 and 8-bit
    encodings decoded here and re-encoded as UTF-8; leading whitespace (fatal before "<?xml")
    gone. The document's own declaration wins; the Content-Type charset counts without one."""
    if not body or body.isspace():
        raise FeedParseError("not a feed: the body is empty")
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            if encoding != "utf-8":
                return _as_utf8(body[len(bom) :].decode(encoding, errors="replace"))
            body = body[len(bom) :]
            break
    else:
        if body.startswith(b"<\x00"):  # UTF-16 without a BOM
            return _as_utf8(body.decode("utf-16-le", errors="replace"))
        if body.startswith(b"\x00<"):
            return _as_utf8(body.decode("utf-16-be", errors="replace"))
    if body[:1].isspace():
        body = body.lstrip()
    if body.startswith(b"{"):
        return _Prepared(body, is_json=True)

    declaration = _XML_DECL_RE.match(body)
    declared = _DECL_ENCODING_RE.search(declaration.group()) if declaration else None
    if declared:
        name = declared.group(1).decode("ascii").lower()
        codec = _codec(name)
        if codec == "utf-8":  # also a label libxml2 would hold the bytes to, like us-ascii
            return _Prepared(body if name in ("utf-8", "utf8") else _declare_utf8(body))
        if codec is None:  # unknown to Python: libxml2 may know it, else feedparser tries
            return _Prepared(body, utf8=False)
        if codec.startswith(("utf-16", "utf-32")):
            # No BOM and no NULs up front: the bytes are ASCII-compatible, the label is wrong.
            warning = f"document declared as {name}, but parsed as utf-8"
            return _Prepared(_declare_utf8(body), warning=warning)
        return _as_utf8(body.decode(codec, errors="replace"))

    codec = _codec(_charset(content_type))
    if codec is None or codec == "utf-8" or codec.startswith(("utf-16", "utf-32")):
        return _Prepared(body)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return _as_utf8(body.decode(codec, errors="replace"))
    # Valid UTF-8 under another label is UTF-8: servers mislabel, while UTF-8 hardly ever
    # happens by accident. (Pure ASCII reads the same either way.)
    return _Prepared(body)


def _as_utf8(text: str) -> _Prepared:
    """A document decoded here, as UTF-8 bytes whose declaration (if any) says so."""
    data = text.lstrip().encode("utf-8")
    if data.startswith(b"{"):
        return _Prepared(data, utf8=False, is_json=True)
    return _Prepared(_declare_utf8(data), utf8=False)


def _declare_utf8(body: bytes) -> bytes:
    declaration = _XML_DECL_RE.match(body)
    declared = _DECL_ENCODING_RE.search(body, 0, declaration.end()) if declaration else None
    if declared is None:
        return body
    return body[: declared.start(1)] + b"utf-8" + body[declared.end(1) :]


def _charset(content_type: str | None) -> str | None:
    match = _CHARSET_RE.search(content_type) if content_type else None
    return match.group(1).lower() if match else None


# Documents labelled Latin-1 are nearly always windows-1252 (curly quotes and dashes in
# 0x80-0x9f): browsers read them so (WHATWG Encoding), and feedparser maps those bytes alike.
# ASCII is read as UTF-8, its superset, since the label is often wrong.
_CODEC_STAND_INS: Final = {"iso8859-1": "cp1252", "ascii": "utf-8"}


def _codec(name: str | None) -> str | None:
    """Python's name for an encoding label, or None when it knows no such encoding."""
    if not name:
        return None
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    return _CODEC_STAND_INS.get(codec, codec)


_PROLOG_ITEM_RE: Final = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->)", re.DOTALL)
_DOCTYPE_RE: Final = re.compile(rb"\s*<!DOCTYPE\b", re.IGNORECASE)
_SUBSET_END_RE: Final = re.compile(rb"\]\s*>")
_ENTITY_DECL_RE: Final = re.compile(rb"<!ENTITY", re.IGNORECASE)
_FIRST_ELEMENT_RE: Final = re.compile(rb"<\w")


def _refuse_entity_declarations(body: bytes) -> None:
    """Refuse a document whose DOCTYPE declares entities, before any parser reads it.

    Feeds never need entities of their own: a declaration is a mistake or an attack (exponential
    "billion laughs" expansion, external entities that read local files). Two views are checked:
    the prolog as an XML parser reads it (comments and PIs skipped), and the head as feedparser
    cuts it (everything before the first "<name"). Only the start of the document is scanned.
    """
    pos = 0
    while match := _PROLOG_ITEM_RE.match(body, pos):
        pos = match.end()
    doctype = _DOCTYPE_RE.match(body, pos)
    if doctype:
        subset_end = _SUBSET_END_RE.search(body, doctype.end())
        declarations = body[doctype.end() : subset_end.end() if subset_end else len(body)]
        if _ENTITY_DECL_RE.search(declarations):
            raise FeedParseError(ENTITY_ATTACK)
    first_element = _FIRST_ELEMENT_RE.search(body)
    head = body[: first_element.start()] if first_element else body
    if _ENTITY_DECL_RE.search(head):
        raise FeedParseError(ENTITY_ATTACK)


_HTML_START_RE: Final = re.compile(rb"<!DOCTYPE\s+html|<(?:html|head|body)[\s>]", re.IGNORECASE)
_FEED_START_RE: Final = re.compile(rb"<(?:\w+:)?(?:rss|feed|RDF|channel)[\s>]", re.IGNORECASE)


def _looks_like_html(body: bytes) -> bool:
    head = body[:4096]
    return bool(_HTML_START_RE.search(head)) and not _FEED_START_RE.search(head)


# The usual breakage, mended the way feed readers (feedparser included) read it: a bare "&" is
# text, an HTML entity means its character, control characters and junk after the root element
# are noise. CDATA sections are matched first so that they pass through untouched.
_REPAIR_RE: Final = re.compile(
    rb"(<!\[CDATA\[.*?(?:\]\]>|\Z))"
    rb"|&(?!(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});)"
    rb"([A-Za-z][A-Za-z0-9]{0,31};)?"
    rb"|&#(?:0*(?:[0-8]|1[1-2]|1[4-9]|2[0-9]|3[01])|[xX]0*(?:[0-8bBcCeEfF]|1[0-9a-fA-F]));"
    rb"|[\x00-\x08\x0b\x0c\x0e-\x1f]",
    re.DOTALL,
)
_ROOT_END_RE: Final = re.compile(rb"</(?:[\w.-]+:)?(?:rss|feed|RDF)\s*>")


def _repair(body: bytes) -> bytes | None:
    """The body with the usual breakage mended, or None when there was nothing to mend."""
    repaired = _REPAIR_RE.sub(_repair_match, body)
    end = max((match.end() for match in _ROOT_END_RE.finditer(repaired)), default=None)
    if end is not None:
        repaired = repaired[:end]
    return repaired if repaired != body else None


def _repair_match(match: re.Match[bytes]) -> bytes:
    if match.group(1) is not None:
        return match.group(1)  # CDATA
    if match.group() == b"&":
        return b"&amp;"
    entity = match.group(2)
    if entity is None:  # a control character, raw or as a character reference
        return b""
    text = html.entities.html5.get(entity.decode("ascii"))
    if text is None:
        return b"&amp;" + entity
    return b"".join(b"&#%d;" % ord(char) for char in text)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "no details"


# ---------------------------------------------------------------------------------------------
# Fast path: lxml tree → raw feed

# Namespaces, in Clark notation ("{uri}local") as lxml spells tags.
_ATOM: Final = "http://www.w3.org/2005/Atom"
_ATOM03: Final = "http://purl.org/atom/ns#"
_RDF: Final = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_RSS_CORE: Final = (
    "",
    "http://purl.org/rss/1.0/",
    "http://my.netscape.com/rdf/simple/0.9/",
    "http://backend.userland.com/rss2",
)
_ATOMS: Final = (_ATOM, _ATOM03)
_CONTENT: Final = ("http://purl.org/rss/1.0/modules/content/",)
_DC: Final = ("http://purl.org/dc/elements/1.1/", "https://purl.org/dc/elements/1.1/")
_DCTERMS: Final = ("http://purl.org/dc/terms/", "https://purl.org/dc/terms/")
_MEDIA: Final = ("http://search.yahoo.com/mrss/", "http://search.yahoo.com/mrss")
_XML_BASE: Final = "{http://www.w3.org/XML/1998/namespace}base"
_RDF_ABOUT: Final = f"{{{_RDF}}}about"


def _tags(namespaces: tuple[str, ...], local: str) -> frozenset[str]:
    return frozenset(f"{{{ns}}}{local}" if ns else local for ns in namespaces)


# What a child of an item/entry means, whatever dialect wrote it. dc:date is "updated" because
# feedparser reads it so: published = pubDate/published/issued, else updated/dc:date/modified.
_ENTRY_FIELDS: Final = {
    tag: meaning
    for namespaces, local, meaning in [
        (_RSS_CORE, "title", "title"),
        (_RSS_CORE, "link", "link"),
        (_RSS_CORE, "guid", "guid"),
        (_RSS_CORE, "description", "summary"),
        (_RSS_CORE, "author", "author"),
        (_RSS_CORE, "pubDate", "published"),
        (_RSS_CORE, "updated", "updated"),
        (_RSS_CORE, "category", "category"),
        (_RSS_CORE, "enclosure", "enclosure"),
        (_CONTENT, "encoded", "html_content"),
        (_DC, "creator", "author"),
        (_DC, "date", "updated"),
        (_DC, "subject", "category"),
        (_DCTERMS, "issued", "published"),
        (_DCTERMS, "modified", "updated"),
        (_DCTERMS, "created", "created"),
        (_ATOMS, "title", "title"),
        (_ATOMS, "link", "atom_link"),
        (_ATOMS, "id", "id"),
        (_ATOMS, "summary", "summary"),
        (_ATOMS, "content", "content"),
        (_ATOMS, "author", "atom_author"),
        (_ATOMS, "published", "published"),
        ((_ATOM03,), "issued", "published"),
        (_ATOMS, "updated", "updated"),
        ((_ATOM03,), "modified", "updated"),
        ((_ATOM03,), "created", "created"),
        (_ATOMS, "category", "atom_category"),
        (_MEDIA, "thumbnail", "media_thumbnail"),
        (_MEDIA, "content", "media_content"),
        (_MEDIA, "group", "media_group"),
        (_MEDIA, "description", "media_description"),
        (_MEDIA, "keywords", "media_keywords"),
        (_MEDIA, "category", "category"),
    ]
    for tag in _tags(namespaces, local)
}
_RSS_ITEM: Final = _tags(_RSS_CORE, "item")
_RSS_CHANNEL: Final = _tags(_RSS_CORE, "channel")
_RSS_TITLE: Final = _tags(_RSS_CORE, "title")
_RSS_LINK: Final = _tags(_RSS_CORE, "link")
_RSS_TTL: Final = _tags(_RSS_CORE, "ttl")
_ATOM_FEED: Final = _tags(_ATOMS, "feed")
_ATOM_ENTRY: Final = _tags(_ATOMS, "entry")
_ATOM_TITLE: Final = _tags(_ATOMS, "title")
_ATOM_LINK: Final = _tags(_ATOMS, "link")
_ATOM_AUTHOR: Final = _tags(_ATOMS, "author")
_ATOM_NAME: Final = _tags(_ATOMS, "name")
_ATOM_EMAIL: Final = _tags(_ATOMS, "email")
_HTML_LINK_TYPES: Final = frozenset({"", "text/html", "application/xhtml+xml"})


def _read_xml_feed(root: Element, url: str, *, utf8: bool) -> _RawFeed | None:
    tag = root.tag
    if not isinstance(tag, str):
        return None
    base = _rebase(url, root)
    if tag == "rss" or tag.endswith("}rss"):
        return _read_rss(root, _RawFeed(format="rss2", base=base, utf8=utf8))
    if tag == f"{{{_RDF}}}RDF":
        return _read_rss(root, _RawFeed(format="rss1", base=base, utf8=utf8))
    if tag in _ATOM_FEED:
        return _read_atom(root, _RawFeed(format="atom", base=base, utf8=utf8))
    return None


def _rebase(base: str | None, element: Element) -> str | None:
    xml_base = element.get(_XML_BASE)
    if xml_base is None:
        return base
    return urljoin(base, xml_base.strip()) if base else xml_base.strip()


def _read_rss(root: Element, feed: _RawFeed) -> _RawFeed:
    """RSS 0.9x/2.0 (<rss><channel><item>) and RSS 0.90/1.0 (<rdf:RDF><channel/><item>)."""
    items: list[tuple[Element, str | None]] = []
    alternate = None
    for child in root:
        if child.tag in _RSS_ITEM:  # RSS 1.0, and RSS 0.9x written loosely
            items.append((child, feed.base))
        elif child.tag in _RSS_CHANNEL:
            channel_base = _rebase(feed.base, child)
            for part in child:
                tag = part.tag
                if tag in _RSS_ITEM:
                    items.append((part, channel_base))
                elif tag in _RSS_TITLE:
                    feed.title = feed.title or _text(part)
                elif tag in _RSS_LINK:
                    feed.site_url = feed.site_url or _text(part) or None
                elif tag in _RSS_TTL:
                    feed.ttl = _text(part)
                elif tag in _ATOM_LINK:
                    alternate = alternate or _alternate_href(part, channel_base)
            feed.base = channel_base
    feed.site_url = feed.site_url or alternate
    feed.entries = [_read_entry(item, _rebase(base, item)) for item, base in items]
    return feed


def _read_atom(root: Element, feed: _RawFeed) -> _RawFeed:
    for child in root:
        tag = child.tag
        if tag in _ATOM_ENTRY:
            feed.entries.append(_read_entry(child, _rebase(feed.base, child)))
        elif tag in _ATOM_TITLE:
            feed.title = feed.title or _text_construct(child)[0]
        elif tag in _ATOM_LINK:
            feed.site_url = feed.site_url or _alternate_href(child, feed.base)
        elif tag in _ATOM_AUTHOR:
            feed.author = feed.author or _atom_person(child)
    if feed.author:
        for entry in feed.entries:
            entry.author = entry.author or feed.author
    return feed


def _read_entry(element: Element, base: str | None) -> _RawEntry:
    """One RSS item or Atom entry. The first of repeated fields counts."""
    raw = _RawEntry(base=base, guid=element.get(_RDF_ABOUT))
    for child in element:
        meaning = _ENTRY_FIELDS.get(child.tag)
        if meaning is None:
            continue
        if meaning == "title":
            raw.title = raw.title or _text_construct(child)[0]
        elif meaning == "link":
            raw.link = raw.link or _text(child) or None
        elif meaning == "atom_link":
            rel = child.get("rel", "alternate")
            if rel == "alternate":
                raw.link = raw.link or _alternate_href(child, base)
            elif rel == "enclosure":
                _read_enclosure(raw, child.get("href"), child.get("type"))
        elif meaning == "guid":
            raw.guid = _text(child)
            raw.guid_is_link = child.get("isPermaLink", "true").strip().lower() != "false"
        elif meaning == "id":
            raw.guid = _text(child)
            raw.guid_is_link = True  # an http(s) id without a link is the permalink
        elif meaning == "summary":
            if raw.summary is None:
                raw.summary, raw.summary_is_html = _text_construct(child, rss_html=True)
                if child.get(_XML_BASE) is not None:
                    raw.summary_base = _rebase(base, child)
        elif meaning == "content":
            if raw.content is None and child.get("src") is None:
                raw.content, raw.content_is_html = _text_construct(child)
                if child.get(_XML_BASE) is not None:
                    raw.content_base = _rebase(base, child)
        elif meaning == "html_content":
            if raw.content is None:
                raw.content, raw.content_is_html = _inner_markup(child), True
        elif meaning == "author":
            raw.author = raw.author or _text(child) or None
        elif meaning == "atom_author":
            raw.author = raw.author or _atom_person(child)
        elif meaning == "published":
            raw.published = raw.published or _text(child)
        elif meaning == "updated":
            raw.updated = raw.updated or _text(child)
        elif meaning == "created":
            raw.created = raw.created or _text(child)
        elif meaning == "category":
            raw.tags.append(_text(child))
        elif meaning == "atom_category":
            raw.tags.append(child.get("term") or child.get("label") or "")
        elif meaning == "enclosure":
            _read_enclosure(raw, child.get("url"), child.get("type"))
        else:
            _read_media(raw, child, meaning)
    return raw


def _read_media(raw: _RawEntry, element: Element, meaning: str) -> None:
    """Media RSS: thumbnails, images, keywords, and the description YouTube puts in a group."""
    if meaning == "media_thumbnail":
        raw.thumbnail = raw.thumbnail or element.get("url")
    elif meaning == "media_content":
        if raw.media_image is None and _is_image(element.get("medium"), element.get("type")):
            raw.media_image = element.get("url")
        for child in element:  # media:content may hold its own thumbnail
            if _ENTRY_FIELDS.get(child.tag) == "media_thumbnail":
                raw.thumbnail = raw.thumbnail or child.get("url")
    elif meaning == "media_description":
        if raw.media_description is None:
            raw.media_description = _text(element)
    elif meaning == "media_keywords":
        raw.tags.extend(_text(element).split(","))
    elif meaning == "media_group":
        for child in element:
            inner = _ENTRY_FIELDS.get(child.tag)
            if inner in ("media_thumbnail", "media_content", "media_description"):
                _read_media(raw, child, inner)


def _read_enclosure(raw: _RawEntry, href: str | None, mime: str | None) -> None:
    if raw.enclosure_image is None and href and _is_image(None, mime):
        raw.enclosure_image = href


def _is_image(medium: str | None, mime: str | None) -> bool:
    return medium == "image" or bool(mime and mime.strip().lower().startswith("image/"))


def _text(element: Element) -> str:
    """An element's text, stripped; markup left unescaped inside it (broken, but common) is kept
    as markup."""
    if len(element):
        return _inner_markup(element).strip()
    return (element.text or "").strip()


def _inner_markup(element: Element) -> str:
    text = element.text or ""
    if len(element):
        text += "".join(etree.tostring(child, encoding="unicode") for child in element)
    return text


def _text_construct(element: Element, *, rss_html: bool = False) -> tuple[str, bool]:
    """(value, is_html) of an Atom text construct (type text, html or xhtml; Atom 0.3 mode) or
    of an RSS element, which is HTML where `rss_html` says so."""
    kind = element.get("type")
    if kind is None:
        mode = element.get("mode")  # Atom 0.3
        if mode == "escaped":
            return _text(element), True
        if mode == "xml":
            return _inner_markup(element), True
        tag = element.tag
        is_atom = isinstance(tag, str) and tag.startswith(("{" + _ATOM, "{" + _ATOM03))
        return _text(element), rss_html and not is_atom
    kind = kind.strip().lower()
    if kind in ("xhtml", "application/xhtml+xml"):
        return _xhtml_markup(element), True
    return _text(element), kind in ("html", "text/html")


_XHTML_DIV: Final = "{http://www.w3.org/1999/xhtml}div"
_XMLNS_RE: Final = re.compile(r"""\sxmlns(?::[\w.-]+)?=(?:"[^"]*"|'[^']*')""")


def _xhtml_markup(element: Element) -> str:
    """The markup of an Atom type="xhtml" construct, inside its wrapper div, serialized without
    namespace declarations (so the same text as feedparser's)."""
    if len(element) == 1 and element[0].tag == _XHTML_DIV and not (element.text or "").strip():
        element = element[0]
    return _XMLNS_RE.sub("", _inner_markup(element)).strip()


def _alternate_href(element: Element, base: str | None) -> str | None:
    href = element.get("href")
    if not href or element.get("rel", "alternate") != "alternate":
        return None
    if (element.get("type") or "").strip().lower() not in _HTML_LINK_TYPES:
        return None
    link_base = _rebase(base, element)
    return urljoin(link_base, href.strip()) if link_base else href.strip()


def _atom_person(element: Element) -> str | None:
    name = email = None
    for child in element:
        if child.tag in _ATOM_NAME:
            name = _text(child)
        elif child.tag in _ATOM_EMAIL:
            email = _text(child)
    return name or email or None


# ---------------------------------------------------------------------------------------------
# Fast path: JSON Feed 1.0 / 1.1


def _read_json_feed(body: bytes, url: str) -> _RawFeed:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FeedParseError(f"invalid JSON Feed: {_first_line(str(exc))}") from None
    if not isinstance(document, dict):
        raise FeedParseError("invalid JSON Feed: the top level is not an object")
    version = document.get("version")
    items = document.get("items")
    if items is None and not (isinstance(version, str) and "jsonfeed.org" in version):
        raise FeedParseError("invalid JSON Feed: no jsonfeed.org version and no items")
    if not isinstance(items, list):
        raise FeedParseError("invalid JSON Feed: items is not a list")
    feed = _RawFeed(
        format="json",
        base=url,
        utf8=True,
        title=_json_str(document.get("title")),
        site_url=_json_str(document.get("home_page_url")),
        author=_json_author(document),
    )
    for item in items:
        if isinstance(item, dict):
            feed.entries.append(_read_json_item(item, url, feed.author))
    return feed


def _read_json_item(item: dict[str, Any], url: str, feed_author: str | None) -> _RawEntry:
    item_id = item.get("id")
    if isinstance(item_id, int | float) and not isinstance(item_id, bool):
        item_id = str(item_id)  # the spec says string; numbers are common
    raw = _RawEntry(
        base=url,
        guid=_json_str(item_id),
        link=_json_str(item.get("url")) or _json_str(item.get("external_url")),
        title=_json_str(item.get("title")),
        author=_json_author(item) or feed_author,
        published=_json_str(item.get("date_published")),
        updated=_json_str(item.get("date_modified")),
        media_image=_json_str(item.get("image")) or _json_str(item.get("banner_image")),
    )
    summary = _json_str(item.get("summary"))  # plain text, per the spec
    if summary:
        raw.summary, raw.summary_is_html = summary, False
    content_html = _json_str(item.get("content_html"))
    content_text = _json_str(item.get("content_text"))
    if content_html:
        raw.content, raw.content_is_html = content_html, True
    elif content_text:
        raw.content, raw.content_is_html = content_text, False
    tags = item.get("tags")
    if isinstance(tags, list):
        raw.tags = [tag for tag in tags if isinstance(tag, str)]
    return raw


def _json_str(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _json_author(obj: dict[str, Any]) -> str | None:
    authors = obj.get("authors")  # 1.1; 1.0 has a single "author"
    candidates = authors if isinstance(authors, list) else [obj.get("author")]
    for author in candidates:
        if isinstance(author, dict):
            name = _json_str(author.get("name"))
            if name:
                return name
    return None


# ---------------------------------------------------------------------------------------------
# Fallback: feedparser → raw feed

# feedparser's version strings → our format names (unknown ones pass through).
_FEEDPARSER_FORMATS: Final = {
    "rss090": "rss1",
    "rss10": "rss1",
    "rss091n": "rss2",
    "rss091u": "rss2",
    "rss092": "rss2",
    "rss093": "rss2",
    "rss094": "rss2",
    "rss20": "rss2",
    "rss": "rss2",
    "atom01": "atom",
    "atom02": "atom",
    "atom03": "atom",
    "atom10": "atom",
    "atom": "atom",
}
_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml", "html"})
_ITUNES_SCHEME: Final = "http://www.itunes.com/"


def _parse_with_feedparser(
    prepared: _Prepared, url: str, *, reason: str | None, need_entries: bool = False
) -> ParsedFeed:
    import feedparser  # only broken feeds pay for importing it

    # The media type is settled (we sniffed XML) and so is the encoding (the body is UTF-8 now,
    # or declares what it is): tell feedparser no more. No content-location either, else it
    # turns relative guids into URLs; links are resolved against `url` afterwards, as on the
    # fast path.
    result = feedparser.parse(
        prepared.body,
        sanitize_html=False,
        resolve_relative_uris=False,
        response_headers={"content-type": "application/xml"},
    )
    bozo = result.get("bozo_exception") if result.get("bozo") else None
    version = result.get("version") or ""
    fp_feed = result.get("feed", {})
    feed_author = fp_feed.get("author_detail") or {}
    raw = _RawFeed(
        format=_FEEDPARSER_FORMATS.get(version, version or "unknown"),
        base=url,
        title=fp_feed.get("title"),
        site_url=fp_feed.get("link"),
        ttl=fp_feed.get("ttl"),
        entries=[_raw_from_feedparser(entry, url) for entry in result.get("entries", [])],
    )
    if raw.format == "atom" and feed_author.get("name"):
        for entry in raw.entries:
            entry.author = entry.author or feed_author.get("name")
    if not raw.entries and (need_entries or not raw.title):
        detail = reason or (f"feedparser: {_first_line(str(bozo))}" if bozo else "no entries")
        raise FeedParseError(f"not a feed: {detail}")
    warning = prepared.warning
    if warning is None and (reason is not None or bozo is not None):
        why = _first_line(str(bozo)) if bozo is not None else reason
        warning = f"recovered by feedparser: {why}"
    return _finish_feed(raw, parser="feedparser", warning=warning)


def _raw_from_feedparser(entry: Any, url: str) -> _RawEntry:
    raw = _RawEntry(base=url, guid=entry.get("id"), title=entry.get("title"))
    link = entry.get("link")
    # feedparser copies a guid that is no URL ("1234") into link; the fast path does not.
    if entry.get("guidislink") and link and raw.guid and not looks_like_url(raw.guid):
        link = None if canonical_url(link, url) == canonical_url(raw.guid, url) else link
    raw.link = link
    summary = entry.get("summary_detail")
    if summary is not None and summary.get("value") is not None:
        raw.summary = summary.get("value")
        raw.summary_is_html = summary.get("type") in _HTML_TYPES
        raw.summary_base = urljoin(url, summary.get("base") or "")
    contents = entry.get("content") or []
    if contents:
        raw.content = contents[0].get("value")
        raw.content_is_html = contents[0].get("type") in _HTML_TYPES
        raw.content_base = urljoin(url, contents[0].get("base") or "")
    author = entry.get("author_detail") or {}
    raw.author = author.get("name") or author.get("email") or entry.get("author")
    # dict.get: FeedParserDict.get("updated") falls back to "published", with a warning.
    raw.published = dict.get(entry, "published")
    raw.updated = dict.get(entry, "updated")
    raw.created = dict.get(entry, "created")
    raw.tags = [
        tag.get("term") or tag.get("label") or ""
        for tag in entry.get("tags") or []
        if tag.get("scheme") != _ITUNES_SCHEME
    ]
    raw.thumbnail = next(
        (thumb.get("url") for thumb in entry.get("media_thumbnail") or [] if thumb.get("url")),
        None,
    )
    for media in entry.get("media_content") or []:
        if media.get("url") and _is_image(media.get("medium"), media.get("type")):
            raw.media_image = media.get("url")
            break
    for link_detail in entry.get("links") or []:
        is_enclosure = link_detail.get("rel") == "enclosure" and link_detail.get("href")
        if is_enclosure and _is_image(None, link_detail.get("type")):
            raw.enclosure_image = link_detail.get("href")
            break
    return raw


# ---------------------------------------------------------------------------------------------
# Both paths: raw → normalized


def _finish_feed(raw: _RawFeed, *, parser: str, warning: str | None) -> ParsedFeed:
    entries: list[ParsedEntry] = []
    seen: set[str] = set()
    for raw_entry in raw.entries:
        entry = _finish_entry(raw_entry, utf8=raw.utf8)
        if entry.key not in seen:  # the same entry twice in one feed: the first one counts
            seen.add(entry.key)
            entries.append(entry)
    title = raw.title
    if raw.utf8:
        title = repair_mojibake(title)
    return ParsedFeed(
        format=raw.format,
        title=(clean_title(title) or None) if title else None,
        site_url=canonical_url(raw.site_url, raw.base) if raw.site_url else None,
        ttl_minutes=_ttl_minutes(raw.ttl),
        entries=tuple(entries),
        warning=warning,
        parser=parser,
    )


def _ttl_minutes(value: str | None) -> int | None:
    value = value.strip() if value else ""
    if not value.isdigit():
        return None
    minutes = int(value)
    return minutes if 0 < minutes <= 60 * 24 * 366 else None


def _finish_entry(raw: _RawEntry, *, utf8: bool) -> ParsedEntry:
    if utf8:  # feedparser repairs this on its own; the fast path does it here
        raw.title = repair_mojibake(raw.title)
        raw.summary = repair_mojibake(raw.summary)
        raw.content = repair_mojibake(raw.content)
        raw.author = repair_mojibake(raw.author)

    guid = raw.guid.strip() if raw.guid else None
    url = canonical_url(raw.link, raw.base) if raw.link else None
    if url is None and guid and raw.guid_is_link and looks_like_url(guid):
        url = canonical_url(guid)

    excerpt = ""
    if raw.summary:
        excerpt = _excerpt(raw.summary, raw.summary_is_html)
    if not excerpt and raw.content:
        excerpt = _excerpt(raw.content, raw.content_is_html)
    if not excerpt and raw.media_description:
        excerpt = _excerpt(raw.media_description, False)

    title = clean_title(raw.title) if raw.title else ""
    if not title:
        title = title_from_excerpt(excerpt)

    tags: list[str] = []
    for tag in raw.tags:
        tag = tag.strip()
        if tag and tag not in tags:
            tags.append(tag)

    body = raw.content or raw.summary or raw.media_description or ""
    digest = content_hash(title, body)
    if guid:
        key = f"guid:{guid}"
    elif url:
        key = f"link:{url}"
    else:
        key = f"hash:{digest}"
    return ParsedEntry(
        key=key,
        guid=guid or None,
        url=url,
        title=title,
        excerpt=excerpt,
        author=person_name(raw.author) if raw.author else None,
        published=(
            parse_datetime(raw.published) or parse_datetime(raw.updated) or parse_datetime(raw.created)
        ),
        tags=tuple(tags),
        image_url=_image_url(raw),
        content_hash=digest,
    )


def _image_url(raw: _RawEntry) -> str | None:
    """media:thumbnail, else an image media:content, else an image enclosure, else the first
    <img> of the content or summary."""
    for candidate in (raw.thumbnail, raw.media_image, raw.enclosure_image):
        url = canonical_url(candidate, raw.base) if candidate else None
        if url:
            return url
    if raw.content and raw.content_is_html:
        url = first_image_url(raw.content, raw.content_base or raw.base)
        if url:
            return url
    if raw.summary and raw.summary_is_html:
        return first_image_url(raw.summary, raw.summary_base or raw.base)
    return None


def _excerpt(value: str, is_html: bool) -> str:
    if is_html:
        return excerpt_from_html(value, EXCERPT_LIMIT)
    return excerpt_from_text(value, EXCERPT_LIMIT)
