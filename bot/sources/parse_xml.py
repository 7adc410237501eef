"""The fast XML reader: an lxml tree of RSS 0.9x/1.0/2.0 or Atom 0.3/1.0 → `RawFeed`."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urljoin

from lxml import etree

from bot.sources.parse_raw import RawEntry, RawFeed

Element = etree._Element


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


def read_xml_feed(root: Element, url: str, *, utf8: bool) -> RawFeed | None:
    tag = root.tag
    if not isinstance(tag, str):
        return None
    base = _rebase(url, root)
    if tag == "rss" or tag.endswith("}rss"):
        return _read_rss(root, RawFeed(format="rss2", base=base, utf8=utf8))
    if tag == f"{{{_RDF}}}RDF":
        return _read_rss(root, RawFeed(format="rss1", base=base, utf8=utf8))
    if tag in _ATOM_FEED:
        return _read_atom(root, RawFeed(format="atom", base=base, utf8=utf8))
    return None


def _rebase(base: str | None, element: Element) -> str | None:
    xml_base = element.get(_XML_BASE)
    if xml_base is None:
        return base
    return urljoin(base, xml_base.strip()) if base else xml_base.strip()


def _read_rss(root: Element, feed: RawFeed) -> RawFeed:
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


def _read_atom(root: Element, feed: RawFeed) -> RawFeed:
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


def _read_entry(element: Element, base: str | None) -> RawEntry:
    """One RSS item or Atom entry. The first of repeated fields counts."""
    raw = RawEntry(base=base, guid=element.get(_RDF_ABOUT))
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


def _read_media(raw: RawEntry, element: Element, meaning: str) -> None:
    """Media RSS: thumbnails, images, keywords, and the description YouTube puts in a group."""
    if meaning == "media_thumbnail":
        raw.thumbnail = raw.thumbnail or element.get("url")
    elif meaning == "media_content":
        if raw.media_image is None and is_image(element.get("medium"), element.get("type")):
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


def _read_enclosure(raw: RawEntry, href: str | None, mime: str | None) -> None:
    if raw.enclosure_image is None and href and is_image(None, mime):
        raw.enclosure_image = href


def is_image(medium: str | None, mime: str | None) -> bool:
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
