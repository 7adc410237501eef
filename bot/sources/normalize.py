"""Normalize what feeds say into the plain values the store keeps.

Every function here is pure and cheap on small input; the ones that see whole article bodies
(`excerpt_from_html`, `content_hash`, `first_image_url`) only do what their result needs, because
ingest runs them on every entry of every feed.
"""

from __future__ import annotations

import hashlib
import html
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit, urlunsplit

__all__ = [
    "AUTHOR_LIMIT",
    "TITLE_LIMIT",
    "TRACKING_PARAMS",
    "canonical_url",
    "clean_title",
    "content_hash",
    "entry_key",
    "excerpt_from_html",
    "excerpt_from_text",
    "first_image_url",
    "fold_whitespace",
    "looks_like_url",
    "parse_datetime",
    "person_name",
    "repair_mojibake",
    "shorten",
    "title_from_excerpt",
]

# Query parameters that only say where a click came from; the same article with or without them is
# the same article. Keys are compared lower-cased; every "utm_*" key is tracking too.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "igshid",
        "yclid",
        "ref_src",
        "ref_url",
        "twclid",
        "ttclid",
        "li_fat_id",
        "mkt_tok",
        "_ga",
        "_gl",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        "srsltid",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Lower-case host, no port, user, query or fragment: nothing to change but maybe an empty path.
_SIMPLE_URL_RE = re.compile(r"https?://[a-z0-9.-]+\.[a-z0-9-]+(/[^?#\s\\]*)?\Z")
# urljoin leaves an absolute http(s) URL as it is; skipping it saves two urlparse calls.
_ABSOLUTE_RE = re.compile(r"https?://", re.IGNORECASE)


def canonical_url(link: str, base: str | None = None) -> str | None:
    """The absolute http(s) form of `link` that two mentions of one article share.

    Relative links are resolved against `base`; scheme and host are lower-cased, a user name and
    password, the default port, the fragment and tracking parameters (utm_*, fbclid, …) are dropped; every other query
    parameter stays, in order and spelled as it was. A "#!" fragment is kept: on such sites it
    names the page. Anything that is not an http(s) URL gives None.
    """
    link = link.strip()
    if not link:
        return None
    simple = _SIMPLE_URL_RE.match(link)
    if simple:  # already canonical, the common case: skip the general machinery
        return link if simple.group(1) else link + "/"
    if base and not _ABSOLUTE_RE.match(link):
        try:
            link = urljoin(base, link)
        except ValueError:
            return None
    try:
        parts = urlsplit(link)
        port = parts.port
    except ValueError:  # a bad port or an unbalanced IPv6 bracket
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    # No user name or password: "https://trusted.example@evil.example/" shows one host to a
    # reader and goes to the other. The host that answers is the one kept.
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    query = parts.query
    if query:
        query = "&".join(
            pair for pair in query.split("&") if pair and not _is_tracking(pair.partition("=")[0])
        )
    fragment = parts.fragment if parts.fragment.startswith("!") else ""
    return urlunsplit((scheme, netloc, parts.path or "/", query, fragment))


def _is_tracking(key: str) -> bool:
    key = key.lower()
    return key.startswith("utm_") or key in TRACKING_PARAMS


def repair_mojibake(text: str | None) -> str | None:
    """Text that was UTF-8 but got read as Latin-1 ("Ã©" for "é"), decoded right; other text as
    it is. Valid UTF-8 hardly ever arises by accident from real Latin-1 text, so the guess is
    safe, and it is cheap: both codecs stop at the first character that rules it out."""
    if not text or text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


def looks_like_url(text: str) -> bool:
    """True for an absolute http(s) URL (what an RSS guid must be to stand in for a link)."""
    head = text[:8].lower()
    return head.startswith(("http://", "https://")) and len(text) > len("http://x")


def fold_whitespace(text: str) -> str:
    """Runs of whitespace (including no-break spaces) become one space; ends are trimmed."""
    return " ".join(text.split())


# Titles are plain text that often carries a little markup ("<em>New</em>: …"). Only real HTML
# inline tags are stripped so that "Vec<T>" or "a <-> b" in a title survive.
_TITLE_TAG_RE = re.compile(
    r"</?(?:a|abbr|b|bdi|big|br|cite|code|del|dfn|div|em|font|i|img|ins|kbd|mark|p|q|s|samp|"
    r"small|span|strike|strong|sub|sup|time|tt|u|var|wbr)\b[^<>]*>",
    re.IGNORECASE,
)


# What a feed may put in one field is hostile: a 2 MB title once stalled `preview` for minutes.
# Titles fit Discord's embed title (256 characters, the strictest place one is shown); a byline
# fits an embed's author name. Excerpts are cut by their callers (parse.EXCERPT_LIMIT).
TITLE_LIMIT = 256
AUTHOR_LIMIT = 200


def clean_title(text: str, limit: int = TITLE_LIMIT) -> str:
    """A title as plain text: HTML tags stripped, entities decoded, whitespace folded, and at most
    `limit` characters (cut at a word boundary, with "…"). Only a prefix of a huge title is read."""
    window = 8 * limit + 256  # room for markup and entities around `limit` characters of text
    cut = len(text) > window
    if cut:
        text = text[:window]
        if text.rfind("<") > text.rfind(">"):  # a tag cut in half
            text = text[: text.rfind("<")]
    if "<" in text:
        text = _TITLE_TAG_RE.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return _cap(fold_whitespace(text), limit, cut=cut)


def _cap(text: str, limit: int, *, cut: bool) -> str:
    """`shorten`, for text that may already have lost its end (`cut`): then it ends in "…" too."""
    if not cut or len(text) > limit:
        return shorten(text, limit)
    whole_words = text.rpartition(" ")[0] or text  # the last word may be cut in half
    return whole_words.rstrip(" ,;:.-–—")[: limit - 1] + _ELLIPSIS


# Excerpts: drop what is never visible text, turn block boundaries into spaces, strip the rest.
_INVISIBLE_START_RE = re.compile(
    r"<(script|style|noscript|template|svg|math)\b|<!--|<!\[CDATA\[", re.IGNORECASE
)
_INVISIBLE_END_RE = {
    **{
        name: re.compile(rf"</{name}\s*>", re.IGNORECASE)
        for name in ("script", "style", "noscript", "template", "svg", "math")
    },
    "<!--": re.compile(r"-->"),
    "<![CDATA[": re.compile(r"\]\]>"),
}
_BLOCK_TAG_RE = re.compile(
    r"</?(?:address|article|aside|blockquote|br|caption|dd|div|dl|dt|figcaption|figure|footer|"
    r"h[1-6]|header|hr|li|main|nav|ol|p|pre|section|table|tbody|td|tfoot|th|thead|tr|ul)\b[^<>]*>",
    re.IGNORECASE,
)
# "[^<>]" rather than "[^>]": a stray "<" in text then costs one short scan, not one to the end.
_TAG_RE = re.compile(r"</?[a-zA-Z][^<>]*>|<[!?][^<>]*>")
_ELLIPSIS = "…"


def _html_text(fragment: str, *, partial: bool) -> str:
    """Visible text of an HTML fragment. `partial`: the fragment is a prefix of a longer document,
    so an unfinished tag, comment or script at its end is cut instead of read as text."""
    if "<" in fragment:
        fragment = _drop_invisible(fragment)
        if partial and fragment.rfind("<") > fragment.rfind(">"):
            fragment = fragment[: fragment.rfind("<")]
        fragment = _BLOCK_TAG_RE.sub(" ", fragment)
        fragment = _TAG_RE.sub("", fragment)
    if "&" in fragment:
        fragment = html.unescape(fragment)
    text = fold_whitespace(fragment)
    if partial:
        text = text.rpartition(" ")[0]  # the last word may be cut in half
    return text


def _drop_invisible(fragment: str) -> str:
    """The fragment without scripts, styles, comments and the like. One left open hides the rest
    of the fragment, as in a browser. A single forward pass: no rescans, whatever the input."""
    start = _INVISIBLE_START_RE.search(fragment)
    if start is None:
        return fragment
    kept: list[str] = []
    pos = 0
    while start is not None:
        kept.append(fragment[pos : start.start()])
        opener = start.group(1)
        end = _INVISIBLE_END_RE[opener.lower() if opener else start.group()].search(fragment, start.end())
        if end is None:
            return " ".join(kept)
        pos = end.end()
        start = _INVISIBLE_START_RE.search(fragment, pos)
    kept.append(fragment[pos:])
    return " ".join(kept)


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a word boundary, with "…" when it was cut."""
    if len(text) <= limit:
        return text
    limit = max(limit, 1)
    cut = text[: limit - 1]
    if text[limit - 1] != " ":  # the cut splits a word: end at the word before it
        space = cut.rfind(" ")
        if space > limit // 2:
            cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + _ELLIPSIS


def excerpt_from_html(html_text: str, limit: int = 300) -> str:
    """Plain-text excerpt of an HTML fragment, at most `limit` characters.

    Script, style and noscript contents are dropped, entities decoded, whitespace folded and the
    text cut at a word boundary with "…". Only a prefix of a long body is read: the window grows
    until it holds enough text, so a 200 KB article costs about as much as a short one.
    """
    window = 3 * limit + 256
    while True:
        partial = window < len(html_text)
        text = _html_text(html_text[:window] if partial else html_text, partial=partial)
        if not partial or len(text) > limit:
            return shorten(text, limit)
        window *= 4


def excerpt_from_text(text: str, limit: int = 300) -> str:
    """Excerpt of plain text (Atom type="text", JSON Feed content_text): folded and shortened."""
    if len(text) > 4 * limit + 512:
        text = text[: 4 * limit + 512]
        text = fold_whitespace(text).rpartition(" ")[0]
    return shorten(fold_whitespace(text), limit)


def title_from_excerpt(excerpt: str, limit: int = 80) -> str:
    """A stand-in title for an untitled entry (microblog posts): the first words of its text."""
    return shorten(excerpt.removesuffix(_ELLIPSIS), limit)


_IMG_SRC_RE = re.compile(r"""\ssrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'<>]+))""", re.IGNORECASE)
_MAX_IMAGES_TRIED = 20  # placeholders and pixels come first, but not for ever
_PIXEL_RE = re.compile(r"""\s(?:width|height)\s*=\s*["']?[01](?:px)?(?:["'\s/>]|$)""", re.IGNORECASE)


def first_image_url(html_text: str, base: str | None = None) -> str | None:
    """Canonical URL of the first <img> with an http(s) src in an HTML fragment.

    Images inside script/noscript and 1×1 tracking pixels do not count.
    """
    pos = _find_img(html_text, 0)
    for _ in range(_MAX_IMAGES_TRIED):
        if pos < 0:
            break
        end = html_text.find(">", pos)
        tag = html_text[pos : end if end >= 0 else len(html_text)]
        match = _IMG_SRC_RE.search(tag)
        if match and not _PIXEL_RE.search(tag) and not _is_hidden(html_text, pos):
            src = match.group(1) or match.group(2) or match.group(3) or ""
            if "&" in src:
                src = html.unescape(src)
            url = canonical_url(src, base)
            if url:
                return url
        pos = _find_img(html_text, pos + 4)
    return None


_HIDING_TAGS = (
    ("<noscript", "</noscript"),
    ("<NOSCRIPT", "</NOSCRIPT"),
    ("<script", "</script"),
    ("<SCRIPT", "</SCRIPT"),
)


def _is_hidden(html_text: str, pos: int) -> bool:
    """Whether `pos` lies inside a noscript or script element (looking back, not scanning all)."""
    for opening, closing in _HIDING_TAGS:
        start = html_text.rfind(opening, 0, pos)
        if start >= 0 and html_text.find(closing, start, pos) < 0:
            return True
    return False


def _find_img(html_text: str, start: int) -> int:
    # str.find runs at memory speed; a case-insensitive regex search would test every position.
    lower = html_text.find("<img", start)
    upper = html_text.find("<IMG", start, lower if lower >= 0 else len(html_text))
    if upper < 0 or 0 <= lower < upper:
        return lower
    return upper


# Whitespace does not count for the content hash: a feed that reflows or re-indents the same
# article has not changed it. bytes.translate deletes it at memory speed; a regex over every
# article body would cost more than parsing the XML.
_WHITESPACE_BYTES = b" \t\n\r\f\v"


def content_hash(title: str, content: str) -> str:
    """sha256 hex of an entry's title and content (whitespace ignored).

    It changes when the entry's words or markup change, not when only its line breaks or
    indentation do.
    """
    digest = hashlib.sha256(title.strip().encode().translate(None, _WHITESPACE_BYTES))
    digest.update(b"\x00")
    digest.update(content.strip().encode().translate(None, _WHITESPACE_BYTES))
    return digest.hexdigest()


def entry_key(guid: str | None, link: str | None, title: str, content: str) -> str:
    """An entry's identity inside its source: "guid:…", else "link:<canonical>", else "hash:…"."""
    if guid and guid.strip():
        return f"guid:{guid.strip()}"
    canonical = canonical_url(link) if link else None
    if canonical:
        return f"link:{canonical}"
    return f"hash:{content_hash(title, content)}"


_MAX_NAME = AUTHOR_LIMIT + 100  # read no more than this: a byline, and the address regex stays cheap
_EMAIL_RE = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")


def person_name(text: str) -> str | None:
    """A person's display name from "Jane Doe", "jane@example.com (Jane Doe)",
    "Jane Doe <jane@example.com>" or "Jane Doe (jane@example.com)"; a bare address stays as is.
    At most AUTHOR_LIMIT characters, with "…" when cut."""
    cut = len(text) > _MAX_NAME
    text = fold_whitespace(text[:_MAX_NAME])
    if not text:
        return None
    if "@" in text:
        name = _EMAIL_RE.sub("", text).strip(" ()<>[],;\"'")
        if name:
            text = fold_whitespace(name)
    return _cap(text, AUTHOR_LIMIT, cut=cut)


# Zone names as feeds write them, in minutes east of UTC. Unknown names read as UTC (as in
# email.utils); ambiguous ones (IST, CST) keep their most common meaning in English-language feeds.
_ZONE_MINUTES = {
    "UT": 0,
    "UTC": 0,
    "GMT": 0,
    "Z": 0,
    "WET": 0,
    "AST": -240,
    "ADT": -180,
    "EST": -300,
    "EDT": -240,
    "CST": -360,
    "CDT": -300,
    "MST": -420,
    "MDT": -360,
    "PST": -480,
    "PDT": -420,
    "AKST": -540,
    "AKDT": -480,
    "HST": -600,
    "NST": -210,
    "NDT": -150,
    "CET": 60,
    "CEST": 120,
    "MET": 60,
    "MEST": 120,
    "BST": 60,
    "WEST": 60,
    "EET": 120,
    "EEST": 180,
    "MSK": 180,
    "IST": 330,
    "SGT": 480,
    "HKT": 480,
    "AWST": 480,
    "JST": 540,
    "KST": 540,
    "ACST": 570,
    "AEST": 600,
    "AEDT": 660,
    "NZST": 720,
    "NZDT": 780,
}
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}
# "Thu, 18 Sep 2025 14:30:00 +0000" and its everyday variants: no weekday, "Sept", two-digit
# years, no seconds, no time, "GMT+2", "-05:00", zone names. Anything else goes to feedparser.
_RFC822_RE = re.compile(
    r"(?:[A-Za-z]+\.?,?\s*)?(\d{1,2})[\s-]+([A-Za-z]{3})[A-Za-z]*\.?[\s-]+(\d{4}|\d{2})"
    r"(?:[\sT]+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?)?\s*"
    r"(?:([+-])(\d{2}):?(\d{2})|(?:GMT|UTC|UT)\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?|([A-Za-z]{1,5}))?"
    r"\s*\Z"
)
_EARLIEST_YEAR = 1900
_ISO_START_RE = re.compile(r"\d{4}-?\d{2}-?\d{2}")
_UTC = UTC


def parse_datetime(value: str | None) -> datetime | None:
    """An aware UTC datetime from an RFC 822 or ISO 8601 date as feeds write them, or None.

    Handles odd zones ("EST", "CEST", "GMT+2"), missing zones (read as UTC) and dates without a
    time; feedparser's date helpers cover the rarer formats.
    """
    if not value:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        parsed = _parse_iso(text) if _ISO_START_RE.match(text) else _parse_rfc822(text)
        if parsed is None:
            parsed = _parse_with_feedparser(text)
    except OverflowError:  # year 1 minus an hour
        return None
    if parsed is None or parsed.year < _EARLIEST_YEAR:  # "0001-01-01" means "no date"
        return None
    return parsed


def _parse_iso(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=_UTC)
    return parsed.astimezone(_UTC)


def _parse_rfc822(text: str) -> datetime | None:
    match = _RFC822_RE.match(text)
    if match is None:
        return None
    day, month_name, year_text, hour, minute, second = match.groups()[:6]
    sign, offset_hours, offset_minutes, gmt_sign, gmt_hours, gmt_minutes, zone = match.groups()[6:]
    month = _MONTHS.get(month_name.lower())
    if month is None:
        return None
    year = int(year_text)
    if len(year_text) == 2:
        year += 1900 if year > 68 else 2000
    if sign:
        offset = int(offset_hours) * 60 + int(offset_minutes)
        offset = -offset if sign == "-" else offset
    elif gmt_sign:
        offset = int(gmt_hours) * 60 + int(gmt_minutes or 0)
        offset = -offset if gmt_sign == "-" else offset
    else:
        offset = _ZONE_MINUTES.get(zone.upper(), 0) if zone else 0
    hours = int(hour or 0)
    if zone and zone.upper() in ("AM", "PM"):  # "7:08 pm": a 12-hour clock, not a zone
        hours = hours % 12 + (12 if zone.upper() == "PM" else 0)
    try:
        local = datetime(year, month, int(day), hours, int(minute or 0), int(second or 0), tzinfo=_UTC)
    except ValueError:  # 31 February and friends
        return None
    return local - timedelta(minutes=offset)


def _parse_with_feedparser(text: str) -> datetime | None:
    from feedparser.datetimes import _parse_date  # a rare path: import only when needed

    try:
        fields = _parse_date(text)
    except (ValueError, TypeError):
        return None
    if fields is None:
        return None
    try:
        year, month, day, hour, minute, second = fields[:6]
        return datetime(year, month, day, hour, minute, second, tzinfo=_UTC)
    except ValueError:
        return None
