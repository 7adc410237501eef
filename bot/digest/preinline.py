"""Inlining the stylesheet into an email template once, when it loads, instead of into every page.

Only when it gives byte-for-byte the HTML that inlining each page gives: the template's jinja tags
are swapped for markers, the stylesheet is inlined into that skeleton, the tags go back, and their
values are escaped the way the inliner's HTML serializer writes text and attributes. Sample
digests (hostile text included) rendered both ways decide (see DigestRenderer._preinline).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from markupsafe import Markup

from bot.digest.view import ConfirmView, DigestItemView, DigestView

# -- inlining the stylesheet into a template, once -----------------------------------------

SPAN = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_EXPRESSION = re.compile(r"\{\{([-+]?)(.*?)([-+]?)\}\}", re.DOTALL)
INCLUDE = re.compile(r"""\{%([-+]?)\s*include\s+(["'])([^"'{}%]+)\2\s*([-+]?)%\}""")
OTHER_TEMPLATES = re.compile(r"\{%[-+]?\s*(raw|extends|import|from|include)\b")
MARK_START, MARK_END = "\ue000", "\ue001"  # private-use characters: no parser touches them
IN_TEXT, IN_ATTRIBUTE = "text", "attribute"
TEXT_FILTER, ATTR_FILTER = "_html_text", "_html_attribute"
# Characters the HTML parser would drop, replace or normalise in a value: such a render takes the
# per-page inlining path instead.
_PARSER_CHANGES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# What markupsafe writes for text that contains no markup.
_ESCAPED_TEXT = re.compile(r"&(?:amp|lt|gt|quot|#34|#39|#x27);")
_ESCAPE_CACHE = 1 << 16  # distinct field values remembered escaped (a day of articles, many times over)
_RAW_TEXT_TAGS = frozenset(
    {"style", "script", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"}
)


class CannotVouch(Exception):
    """A value the pre-inlined template cannot render exactly as per-page inlining would."""


def _plain(value: Any) -> str:
    if hasattr(value, "__html__"):  # markup: only escaped text (what join() and friends return) is plain
        markup = str(value.__html__())
        if "<" in markup or ">" in markup or "&" in _ESCAPED_TEXT.sub("", markup):
            raise CannotVouch("markup")
        text = Markup(markup).unescape()
    else:
        text = str(value)
    if _PARSER_CHANGES.search(text):
        raise CannotVouch("control characters")
    return text


def escape_text(value: Any) -> Markup:
    """A value in text, escaped as the inliner's serializer writes text (quotes stay as they are)."""
    if type(value) is str:  # the same titles, sources and excerpts recur in digest after digest
        return _escaped_text(value)
    return _escaped_text(_plain(value))


def escape_attr(value: Any) -> Markup:
    """A value in an attribute, escaped as the inliner's serializer writes attributes."""
    if type(value) is str:
        return _escaped_attr(value)
    return _escaped_attr(_plain(value))


@lru_cache(maxsize=_ESCAPE_CACHE)
def _escaped_text(value: str) -> Markup:
    text = _plain(value)
    return Markup(
        text.replace("&", "&amp;").replace("\xa0", "&nbsp;").replace("<", "&lt;").replace(">", "&gt;")
    )


@lru_cache(maxsize=_ESCAPE_CACHE)
def _escaped_attr(value: str) -> Markup:
    text = _plain(value)
    return Markup(text.replace("&", "&amp;").replace("\xa0", "&nbsp;").replace('"', "&quot;"))


def escaped_span(span: str, where: str) -> str:
    """A jinja span as it goes back into the inlined template: expressions get our escaping."""
    match = _EXPRESSION.fullmatch(span)
    if match is None:
        return span
    before, expression, after = match.groups()
    escape = TEXT_FILTER if where == IN_TEXT else ATTR_FILTER
    return f"{{{{{before} ({expression.strip()})|{escape} {after}}}}}"


def marker_contexts(skeleton: str, count: int) -> list[str] | None:
    """Where each marker sits: in text, or inside a quoted attribute value. None when one sits
    anywhere else (in a tag itself, an HTML comment, a <style> or <script>)."""
    found: list[str | None] = [None] * count
    state, quote, raw_tag = "text", "", ""
    position, end = 0, len(skeleton)
    while position < end:
        char = skeleton[position]
        if char == MARK_START:
            close = skeleton.index(MARK_END, position)
            number = int(skeleton[position + 1 : close])
            found[number] = {"text": IN_TEXT, "value": IN_ATTRIBUTE}.get(state)
            if found[number] is None:
                return None
            position = close + 1
            continue
        if state == "text":
            if skeleton.startswith("<!--", position):
                close = skeleton.find("-->", position + 4)
                if close < 0 or MARK_START in skeleton[position:close]:
                    return None
                position = close + 3
                continue
            tag = re.match(r"<(/?)([A-Za-z][A-Za-z0-9-]*)", skeleton[position : position + 40])
            if tag is not None:
                state = "tag"
                raw_tag = tag.group(2).lower() if not tag.group(1) else ""
                position += tag.end()
                continue
            if skeleton.startswith("<!", position) or skeleton.startswith("<?", position):
                state, raw_tag = "tag", ""
        elif state == "tag":
            if char in "\"'":
                state, quote = "value", char
            elif char == ">":
                state = "raw" if raw_tag in _RAW_TEXT_TAGS else "text"
        elif state == "value":
            if char == quote:
                state = "tag"
        elif state == "raw" and skeleton[position : position + 2 + len(raw_tag)].lower() == f"</{raw_tag}":
            state = "tag"
            raw_tag = ""
            position += 2
            continue
        position += 1
    if any(where is None for where in found) or state != "text":
        return None
    return [str(where) for where in found]


_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
_SIMPLE_SELECTOR = re.compile(r"[A-Za-z0-9_.#*-]+")


def simple_selectors(skeleton: str) -> bool:
    """True when every rule that gets inlined selects by the element alone (tag, class, id): then
    it matches the same elements in the skeleton as in any page, whatever loops and conditions
    do around them. Markers must not be in class, id or style attributes, nor remote styles."""
    if re.search(r"<link\b", skeleton, re.IGNORECASE):
        return False
    if re.search(r"\b(class|id|style)\s*=\s*[\"'][^\"']*" + MARK_START, skeleton, re.IGNORECASE):
        return False
    for css in _STYLE.findall(skeleton):
        css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
        position = 0
        while True:
            opening = css.find("{", position)
            if opening < 0:
                break
            prelude = css[position:opening].strip()
            if prelude.startswith("@"):  # kept in <style>, not inlined: skip its block
                depth, position = 1, opening + 1
                while depth and position < len(css):
                    depth += {"{": 1, "}": -1}.get(css[position], 0)
                    position += 1
                continue
            if not all(_SIMPLE_SELECTOR.fullmatch(part.strip()) for part in prelude.split(",")):
                return False
            closing = css.find("}", opening)
            if closing < 0:
                return False
            position = closing + 1
        if "@import" in css:
            return False
    return True


def _sample_digests() -> tuple[DigestView, ...]:
    """Digests that exercise every branch of a digest template and every escape (see
    `DigestRenderer._same_as_inlining_each_page`)."""
    now = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    hostile = 'Tom & Jerry\'s <b>"bold"</b> a\xa0b &amp; &lt;x&gt; → ünïcödé 🚀 ="\''

    def item(number: int, **changes: Any) -> DigestItemView:
        values: dict[str, Any] = {
            "title": f"{hostile} story {number}",
            "url": f'https://news.example.com/{number}?a=1&b="2"&c=<3>',
            "source": f"Source & Co {number}",
            "author": 'Ada "Countess" Lovelace',
            "published": now - timedelta(hours=number + 1),
            "excerpt": f"{hostile} " * 8,
            "chip": "C++ & <Rust>",
            "reason": 'because you follow Python & "AI"',
            "also_covered_by": (("Other & Sons", "https://other.example.com/x?y=1&z=2"), ("No link", "")),
            "image_url": "https://cdn.example.com/i.png?w=1&h=2",
        }
        return DigestItemView(**(values | changes))

    items = (
        item(0),
        item(1, url="javascript:alert(1)", image_url=None, author=None, also_covered_by=()),
        item(2, url="", excerpt="", image_url="data:x", chip=""),
        item(30, title="", source="", reason=""),
    )
    full = DigestView(
        subscriber_name=hostile,
        subscriber_email="ada+x@example.com",
        period="2026-11-27",
        date=now.date(),
        items=items,
        preferences_url='https://flarestart.example.com/p/abc?x=1&y="2"',
        unsubscribe_url="https://flarestart.example.com/u/abc?x=1&y=2",
        now=now,
    )
    return (
        full,
        replace(full, items=items[:1], subscriber_name=""),
        replace(full, items=(), quiet=True),
        replace(full, items=items[1:], subscriber_name="Zoë"),
    )


def _sample_confirms() -> tuple[ConfirmView, ...]:
    now = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    hostile = 'Tom & Jerry\'s <b>"bold"</b> a\xa0b &amp; → ü 🚀'
    full = ConfirmView(
        subscriber_name=hostile,
        subscriber_email="ada+x@example.com",
        confirm_url='https://flarestart.example.com/c/abc?x=1&y="2"',
        topics=(hostile, "Python"),
        expires_hours=48,
        now=now,
    )
    return (full, replace(full, subscriber_name="", topics=(), expires_hours=None))


SAMPLE_DIGESTS = _sample_digests()
SAMPLE_CONFIRMS = _sample_confirms()
