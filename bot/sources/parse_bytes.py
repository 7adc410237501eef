"""Feed bytes before any parser sees them: encodings and charsets, JSON or XML, HTML pages told
apart, entity declarations refused (the "billion laughs" bomb, external entities), and the mending
of XML that lxml refuses the way every feed reader reads it."""

from __future__ import annotations

import codecs
import html.entities
import re
from dataclasses import dataclass
from typing import Final

from bot.errors import FeedParseError

ENTITY_ATTACK: Final = "XML declares entities (possible entity-expansion attack)"
HTML_PAGE: Final = "not a feed: looks like an HTML page"


# ---------------------------------------------------------------------------------------------
# Bytes: encodings, sniffing, hostile input


@dataclass(frozen=True, slots=True)
class Prepared:
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


def prepare(body: bytes, content_type: str | None) -> Prepared:
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
        return Prepared(body, is_json=True)

    declaration = _XML_DECL_RE.match(body)
    declared = _DECL_ENCODING_RE.search(declaration.group()) if declaration else None
    if declared:
        name = declared.group(1).decode("ascii").lower()
        codec = _codec(name)
        if codec == "utf-8":  # also a label libxml2 would hold the bytes to, like us-ascii
            return Prepared(body if name in ("utf-8", "utf8") else _declare_utf8(body))
        if codec is None:  # unknown to Python: libxml2 may know it, else feedparser tries
            return Prepared(body, utf8=False)
        if codec.startswith(("utf-16", "utf-32")):
            # No BOM and no NULs up front: the bytes are ASCII-compatible, the label is wrong.
            warning = f"document declared as {name}, but parsed as utf-8"
            return Prepared(_declare_utf8(body), warning=warning)
        return _as_utf8(body.decode(codec, errors="replace"))

    codec = _codec(_charset(content_type))
    if codec is None or codec == "utf-8" or codec.startswith(("utf-16", "utf-32")):
        return Prepared(body)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return _as_utf8(body.decode(codec, errors="replace"))
    # Valid UTF-8 under another label is UTF-8: servers mislabel, while UTF-8 hardly ever
    # happens by accident. (Pure ASCII reads the same either way.)
    return Prepared(body)


def _as_utf8(text: str) -> Prepared:
    """A document decoded here, as UTF-8 bytes whose declaration (if any) says so."""
    data = text.lstrip().encode("utf-8")
    if data.startswith(b"{"):
        return Prepared(data, utf8=False, is_json=True)
    return Prepared(_declare_utf8(data), utf8=False)


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


def refuse_entity_declarations(body: bytes) -> None:
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


def looks_like_html(body: bytes) -> bool:
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


def repair(body: bytes) -> bytes | None:
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


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "no details"
