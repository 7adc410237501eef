"""Feed bytes → `ParsedFeed`: RSS 0.9x/1.0/2.0, Atom 0.3/1.0 and JSON Feed 1.0/1.1.

Two readers feed one normalization (`finish_entry`):

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

Each part is a module of its own: parse_bytes.py (encodings, sniffing, hostile input, mending),
parse_xml.py (RSS and Atom with lxml), parse_json.py (JSON Feed), parse_fallback.py (feedparser)
and parse_raw.py (the raw shapes and the one normalization step).
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from bot.errors import FeedParseError
from bot.sources.parse_bytes import (
    ENTITY_ATTACK,
    HTML_PAGE,
    first_line,
    looks_like_html,
    prepare,
    refuse_entity_declarations,
    repair,
)
from bot.sources.parse_fallback import parse_with_feedparser
from bot.sources.parse_json import read_json_feed
from bot.sources.parse_raw import EXCERPT_LIMIT, finish_feed
from bot.sources.parse_xml import read_xml_feed
from bot.sources.types import ParsedFeed

__all__ = ["EXCERPT_LIMIT", "parse_feed"]


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
    prepared = prepare(body, content_type)
    if prepared.is_json:
        if force_feedparser:
            raise FeedParseError("feedparser cannot read JSON Feed; use the fast path")
        return finish_feed(read_json_feed(prepared.body, url), parser="fast", warning=None)
    refuse_entity_declarations(prepared.body)
    if force_feedparser:
        return parse_with_feedparser(prepared, url, reason=None)

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
        if looks_like_html(prepared.body):
            raise FeedParseError(HTML_PAGE) from None
        reason = f"XML is not well-formed ({first_line(exc.msg or str(exc))})"
        repaired = repair(prepared.body)
        if repaired is None:
            return parse_with_feedparser(prepared, url, reason=reason)
        try:
            root = etree.fromstring(repaired, parser)
        except etree.XMLSyntaxError:
            return parse_with_feedparser(prepared, url, reason=reason)
        warning = f"repaired: {reason}"
    except (LookupError, ValueError) as exc:  # an encoding libxml2 does not know
        reason = f"cannot decode the document ({first_line(str(exc))})"
        return parse_with_feedparser(prepared, url, reason=reason)

    dtd: Any = root.getroottree().docinfo.internalDTD  # the stubs lack DTD.iterentities
    if dtd is not None and any(True for _ in dtd.iterentities()):  # belt and braces
        raise FeedParseError(ENTITY_ATTACK)
    raw = read_xml_feed(root, url, utf8=prepared.utf8)
    if raw is None:
        local = etree.QName(root).localname.lower()
        if local == "html":
            raise FeedParseError(HTML_PAGE)
        # Well-formed but no dialect we know: feedparser knows a few odd ones.
        reason = f"unknown root element <{local}>"
        return parse_with_feedparser(prepared, url, reason=reason, need_entries=True)
    return finish_feed(raw, parser="fast", warning=warning)
