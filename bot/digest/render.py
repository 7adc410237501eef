"""Render digests and confirm mails from jinja2 templates into a subject, inlined HTML and text.

    renderer = DigestRenderer(settings.email, base_url=settings.web.base_url)
    rendered = renderer.render(view)          # RenderedDigest(subject, html, text, preheader)

Templates are looked up in the user's folder (`email.template_dir`) first, then in FlareStart's
own `templates/email`; a user folder may override just one file. Templates are compiled once, at
construction, so a broken template fails at start with its file and line, not at 7 am.

Everything that came from a feed is untrusted: it is cleaned (control characters dropped,
whitespace collapsed, lengths capped), links are kept only when they are absolute http(s) URLs
(javascript:, data: and relative article links are dropped; our own relative links are joined to
the public base URL), and HTML templates autoescape. StrictUndefined turns a misspelt variable
into an error instead of a silent blank.

What a digest template gets (a user template may use any of it):
    brand, subject, preheader, name, email, period, date_label, date_iso, count, quiet,
    preferences_url, unsubscribe_url, postal_address, and items, each with
    number, title, url (None when unsafe), source, author, age ("3h ago"), published_iso, byline
    ("The Verge · Ada · 3h ago"), excerpt, chip, reason ("Because you follow Python."),
    also (name, url), image_url, image_alt.
A confirm template gets brand, subject, preheader, name, email, topics, confirm_url,
expires_hours and postal_address. `_base.css` is the stylesheet both HTML templates include.

Speed (a morning run renders every digest): the CSS is inlined into the HTML templates once, when
they load, rather than into every rendered page. That is only done when it gives byte-for-byte the
HTML that inlining each page gives: the template's jinja tags are swapped for markers, the
stylesheet is inlined into that skeleton, the tags go back, and their values are escaped the way
the inliner's HTML serializer writes text and attributes. At load, sample digests (hostile text
included) are rendered both ways and compared; a template that differs (a user template whose
styling depends on its data, say) keeps per-render inlining, and so does any single render with a
value the marker path cannot vouch for (control characters, markup). Feed text that many digests
share (an article's cleaned title, excerpt, links, the wrapped excerpt of the text part) is
prepared once per article and reused.
"""

from __future__ import annotations

import logging
import re
import string
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import css_inline
import jinja2
import jinja2.filters
from markupsafe import Markup

from bot.config import EmailSettings
from bot.digest.view import ConfirmView, DigestItemView, DigestView, RenderedDigest, humanize_age
from bot.errors import ConfigError, FlareStartError
from bot.resources import shipped_template_dir

log = logging.getLogger(__name__)

__all__ = [
    "DigestRenderer",
    "DigestTemplateError",
    "RenderError",
    "RenderedDigest",
    "default_template_dir",
    "safe_link",
    "should_send",
]

BRAND = "FlareStart"
DIGEST_HTML = "digest.html.j2"
DIGEST_TEXT = "digest.txt.j2"
CONFIRM_HTML = "confirm.html.j2"
CONFIRM_TEXT = "confirm.txt.j2"
SUBJECT_FIELDS = frozenset({"top_title", "date", "count", "name"})
SUBJECT_MAX = 150  # characters; inboxes show far fewer, and headers stay short
TOP_TITLE_MAX = 100
TITLE_MAX = 300
EXCERPT_MAX = 600
NAME_MAX = 80
PREHEADER_MAX = 140
CONFIRM_SUBJECT = "Confirm your FlareStart subscription"
QUIET_TITLE = "A quiet day"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_WHITESPACE = re.compile(r"\s+")
# Characters a URL may keep as they are; anything else (quotes, spaces, <, >, non-ASCII) is
# percent-encoded so a link can never break out of an attribute or a plain-text line.
_URL_SAFE = "/:?#[]@!$&'()*+,;=%~-._"
CACHE_LIMIT = 20_000  # entries of a per-article cache before it starts afresh


class RenderError(FlareStartError):
    """A digest could not be rendered as asked (a missing link, a bad template)."""


class DigestTemplateError(RenderError):
    """A template failed to compile or to render; the message names the file and the line."""

    def __init__(self, message: str, *, template: str, line: int | None) -> None:
        super().__init__(message)
        self.template = template
        self.line = line


def default_template_dir() -> Path:
    """FlareStart's own email templates: inside the installed package, or templates/email of a checkout."""
    return shipped_template_dir("email")


def should_send(view: DigestView, settings: EmailSettings) -> bool:
    """False for an empty period when the setting says to skip quiet days."""
    return not view.is_empty or settings.quiet_day == "note"


# -- cleaning untrusted text and links ------------------------------------------------------


def clean_text(value: str | None, limit: int) -> str:
    """One line of untrusted text: no control characters, whitespace collapsed, at most `limit`."""
    if not value:
        return ""
    text = _WHITESPACE.sub(" ", _CONTROL.sub("", value)).strip()
    return _shorten(text, limit)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-–—·") + "…"


def safe_link(url: str | None, *, base: str | None = None) -> str | None:
    """The URL if it is an absolute http(s) link (or a relative one joined to `base`), else None.

    Protocol-relative links get https; a user name and password are dropped. Unsafe characters are
    percent-encoded, so the result can
    go into an attribute or a text line as it is (HTML escaping still applies on top).
    """
    if not url:
        return None
    candidate = _CONTROL.sub("", url).strip()
    candidate = re.sub(r"\s", "%20", candidate)
    if candidate.startswith("//"):
        candidate = "https:" + candidate
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if not parts.scheme and base:
        if candidate.startswith(("\\", "/\\")):
            return None
        try:
            parts = urlsplit(urljoin(base, candidate))
        except ValueError:
            return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if "@" in parts.netloc:  # "https://trusted.example@evil.example/": keep only the real host
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    return quote(parts.geturl(), safe=_URL_SAFE)


# -- what the templates get -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkContext:
    name: str
    url: str | None


@dataclass(frozen=True, slots=True)
class ItemContext:
    """One item as the templates see it: cleaned text and safe links only."""

    number: int
    title: str
    url: str | None
    source: str
    author: str
    age: str
    published_iso: str
    byline: str  # "The Verge · Ada Lovelace · 3h ago"
    excerpt: str
    chip: str
    reason: str  # "Because you follow Python."
    also: tuple[LinkContext, ...]
    image_url: str | None
    image_alt: str


def _sentence(reason: str) -> str:
    text = clean_text(reason, 200)
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _item_context(number: int, item: DigestItemView, view: DigestView) -> ItemContext:
    return _with_age(number, _item_parts(item), item.published, view.now)


def _item_parts(item: DigestItemView) -> ItemContext:
    """Everything of an item's context but its number and age: the same in every digest."""
    title = clean_text(item.title, TITLE_MAX) or "(untitled)"
    also = tuple(
        LinkContext(name=clean_text(name, NAME_MAX) or "another source", url=safe_link(url))
        for name, url in item.also_covered_by
    )
    return ItemContext(
        number=0,
        title=title,
        url=safe_link(item.url),
        source=clean_text(item.source, NAME_MAX) or "the source",
        author=clean_text(item.author, NAME_MAX),
        age="",
        published_iso=item.published.isoformat(),
        byline="",
        excerpt=clean_text(item.excerpt, EXCERPT_MAX),
        chip=clean_text(item.chip, 40),
        reason=_sentence(item.reason),
        also=also,
        image_url=safe_link(item.image_url),
        image_alt=title,
    )


def _with_age(number: int, parts: ItemContext, published: datetime, now: datetime) -> ItemContext:
    """`parts` (see _item_parts) numbered and aged for one digest."""
    age = humanize_age(published, now)
    return ItemContext(
        number=number,
        title=parts.title,
        url=parts.url,
        source=parts.source,
        author=parts.author,
        age=age,
        published_iso=parts.published_iso,
        byline=" · ".join(part for part in (parts.source, parts.author, age) if part),
        excerpt=parts.excerpt,
        chip=parts.chip,
        reason=parts.reason,
        also=parts.also,
        image_url=parts.image_url,
        image_alt=parts.image_alt,
    )


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def date_label(day: date) -> str:
    """The date as "Tuesday, 7 May 2024", spelt out here so the server's locale cannot change it."""
    return f"{WEEKDAYS[day.weekday()]}, {day.day} {MONTHS[day.month - 1]} {day.year}"


def short_date(day: date) -> str:
    """The date as "7 May", for subjects."""
    return f"{day.day} {MONTHS[day.month - 1]}"


# -- the renderer ---------------------------------------------------------------------------


class DigestRenderer:
    """Compiles the email templates once and renders digests (and confirm mails) with them."""

    def __init__(
        self,
        settings: EmailSettings,
        *,
        template_dir: Path | None = None,
        base_url: str | None = None,
        preinline: bool = True,
    ) -> None:
        self.settings = settings
        self.base_url = base_url.rstrip("/") + "/" if base_url else None
        self._subject_template = _check_subject_template(settings.subject)
        self._postal_address = clean_text(settings.postal_address, 300)
        user_dir = template_dir if template_dir is not None else settings.template_dir
        folders: list[Path] = []
        if user_dir is not None:
            user_dir = user_dir.expanduser()
            if not user_dir.is_dir():
                raise ConfigError(f"email.template_dir {user_dir} is not a folder")
            folders.append(user_dir)
        folders.append(default_template_dir())
        self.search_path: tuple[Path, ...] = tuple(folders)
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(folder) for folder in folders]),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm", "xml", "html.j2", "htm.j2"),
                default_for_string=True,
                default=False,
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        # Per-article work shared by every digest that carries the article (see the docstring).
        self._parts: dict[DigestItemView, ItemContext] = {}
        self._env.filters["wordwrap"] = _cached_wordwrap({})
        self._env.filters[_TEXT_FILTER] = _escape_text
        self._env.filters[_ATTR_FILTER] = _escape_attr
        self._templates = {
            name: self._load(name) for name in (DIGEST_HTML, DIGEST_TEXT, CONFIRM_HTML, CONFIRM_TEXT)
        }
        # Rules are copied into style=""; @media (dark mode, small screens) stays in <style>.
        # Remote stylesheets are never fetched.
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        # HTML templates with the CSS inlined into them once (see the docstring), by name.
        self._preinlined: dict[str, jinja2.Template] = {}
        if preinline:
            for name in (DIGEST_HTML, CONFIRM_HTML):
                template = self._preinline(name)
                if template is not None and self._same_as_inlining_each_page(name, template):
                    self._preinlined[name] = template

    @property
    def preinlined(self) -> frozenset[str]:
        """The HTML templates whose CSS was inlined once, at load (the others inline per render)."""
        return frozenset(self._preinlined)

    # public ----------------------------------------------------------------------------

    def render(self, view: DigestView) -> RenderedDigest:
        """Subject, HTML (CSS inlined) and text for one digest. Raises RenderError."""
        context = self._digest_context(view)
        html = self._html(DIGEST_HTML, context)
        text = self._render(DIGEST_TEXT, context)
        return RenderedDigest(
            subject=context["subject"], html=html, text=text, preheader=context["preheader"]
        )

    def render_confirm(self, view: ConfirmView) -> RenderedDigest:
        """The double opt-in mail: one confirm link, in both parts."""
        context = self._confirm_context(view)
        html = self._html(CONFIRM_HTML, context)
        text = self._render(CONFIRM_TEXT, context)
        return RenderedDigest(subject=CONFIRM_SUBJECT, html=html, text=text, preheader=context["preheader"])

    def subject_for(self, *, top_title: str, day: date, count: int, name: str) -> str:
        """The configured subject with its fields filled in: one line, at most SUBJECT_MAX."""
        values = {
            "top_title": _shorten(top_title, TOP_TITLE_MAX),
            "date": short_date(day),
            "count": str(count),
            "name": name,
        }
        return clean_text(self._subject_template.format_map(values), SUBJECT_MAX) or "Your digest"

    # contexts --------------------------------------------------------------------------

    def _digest_context(self, view: DigestView) -> dict[str, Any]:
        preferences_url = self._own_link(view.preferences_url, "preferences")
        unsubscribe_url = self._own_link(view.unsubscribe_url, "unsubscribe")
        items = () if view.quiet else view.items
        contexts = tuple(
            _with_age(number, self._item_parts(item), item.published, view.now)
            for number, item in enumerate(items, 1)
        )
        quiet = not contexts
        name = clean_text(view.subscriber_name, NAME_MAX)
        top_title = contexts[0].title if contexts else QUIET_TITLE
        return {
            "brand": BRAND,
            "subject": self.subject_for(top_title=top_title, day=view.date, count=len(contexts), name=name),
            "preheader": _preheader(contexts),
            "name": name,
            "email": clean_text(view.subscriber_email, 320),
            "period": view.period,
            "date_label": date_label(view.date),
            "date_iso": view.date.isoformat(),
            "count": len(contexts),
            "items": contexts,
            "quiet": quiet,
            "preferences_url": preferences_url,
            "unsubscribe_url": unsubscribe_url,
            "postal_address": self._postal_address,
        }

    def _confirm_context(self, view: ConfirmView) -> dict[str, Any]:
        return {
            "brand": BRAND,
            "subject": CONFIRM_SUBJECT,
            "preheader": "One click confirms your FlareStart digest; without it you get nothing more.",
            "name": clean_text(view.subscriber_name, NAME_MAX),
            "email": clean_text(view.subscriber_email, 320),
            "topics": tuple(clean_text(topic, NAME_MAX) for topic in view.topics),
            "confirm_url": self._own_link(view.confirm_url, "confirm"),
            "expires_hours": view.expires_hours,
            "postal_address": self._postal_address,
        }

    def _item_parts(self, item: DigestItemView) -> ItemContext:
        parts = self._parts.get(item)
        if parts is None:
            if len(self._parts) >= CACHE_LIMIT:
                self._parts.clear()
            parts = self._parts[item] = _item_parts(item)
        return parts

    # private ---------------------------------------------------------------------------

    def _own_link(self, url: str, what: str) -> str:
        link = safe_link(url, base=self.base_url)
        if link is None:
            hint = "" if self.base_url else " (give DigestRenderer the public base_url for relative links)"
            raise RenderError(f"the {what} link {url!r} is not an absolute http(s) URL{hint}")
        return link

    def _load(self, name: str) -> jinja2.Template:
        try:
            return self._env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or exc.name or name
            raise DigestTemplateError(
                f"email template {where}, line {exc.lineno}: {exc.message}", template=where, line=exc.lineno
            ) from None
        except jinja2.TemplateNotFound as exc:
            folders = ", ".join(str(folder) for folder in self.search_path)
            raise DigestTemplateError(
                f"email template {exc.name} not found in {folders}", template=str(exc.name), line=None
            ) from None

    def _html(self, name: str, context: Mapping[str, Any]) -> str:
        """The HTML part with the CSS inlined: from the pre-inlined template when there is one."""
        template = self._preinlined.get(name)
        if template is not None:
            try:
                return template.render(context)
            except Exception:
                pass
        return self._inline(self._render(name, context))

    def _render(self, name: str, context: Mapping[str, Any]) -> str:
        template = self._templates[name]
        try:
            return template.render(context)
        except Exception as exc:  # user templates may fail in any way; name where
            raise self._explain(name, template, exc) from exc

    def _explain(self, name: str, template: jinja2.Template, exc: Exception) -> DigestTemplateError:
        if isinstance(exc, jinja2.TemplateSyntaxError):  # an included template failed to compile
            where = exc.filename or exc.name or name
            return DigestTemplateError(
                f"email template {where}, line {exc.lineno}: {exc.message}", template=where, line=exc.lineno
            )
        where, line = template.filename or name, None
        folders = tuple(str(folder) for folder in self.search_path)
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename.startswith(folders):
                where, line = frame.filename, frame.lineno
                break
        detail = str(exc) or type(exc).__name__
        at = f", line {line}" if line is not None else ""
        return DigestTemplateError(f"email template {where}{at}: {detail}", template=where, line=line)

    def _inline(self, html: str) -> str:
        try:
            return self._inliner.inline(html)
        except css_inline.InlineError as exc:  # a user stylesheet the inliner cannot read
            raise RenderError(f"cannot inline the email CSS: {exc}") from exc

    # inlining the CSS once -------------------------------------------------------------

    def _preinline(self, name: str) -> jinja2.Template | None:
        """The template `name` with its stylesheet inlined, or None when that cannot be done
        safely (then every page is inlined after rendering, as before)."""
        try:
            source = self._static_source(name)
        except (jinja2.TemplateError, OSError):
            return None
        if source is None or _MARK_START in source or _MARK_END in source:
            return None
        spans: list[str] = []

        def marker(match: re.Match[str]) -> str:
            spans.append(match.group())
            return _MARK_START + str(len(spans) - 1) + _MARK_END

        return self._inline_skeleton(_SPAN.sub(marker, source), spans)

    def _inline_skeleton(self, skeleton: str, spans: list[str]) -> jinja2.Template | None:
        contexts = _marker_contexts(skeleton, len(spans))
        if contexts is None or not _simple_selectors(skeleton):
            return None
        for number, (span, where) in enumerate(zip(spans, contexts, strict=True)):
            if where == _IN_ATTRIBUTE and not span.startswith("{{"):
                return None  # a tag or comment inside an attribute: the markup itself varies
            marker = _MARK_START + str(number) + _MARK_END
            skeleton = skeleton.replace(marker, f"<!--{marker}-->" if where == _IN_TEXT else marker, 1)
        try:
            inlined = self._inliner.inline(skeleton)
        except css_inline.InlineError:
            return None
        for number, (span, where) in enumerate(zip(spans, contexts, strict=True)):
            marker = _MARK_START + str(number) + _MARK_END
            forms = (f"<!--{marker}-->", f"&lt;!--{marker}--&gt;") if where == _IN_TEXT else (marker,)
            found = [form for form in forms if form in inlined]
            if len(found) != 1 or inlined.count(found[0]) != 1:
                return None  # the parser moved, copied or dropped it
            inlined = inlined.replace(found[0], _escaped_span(span, where), 1)
        if _MARK_START in inlined or _MARK_END in inlined:
            return None
        try:
            return self._env.from_string(inlined)
        except jinja2.TemplateError:
            return None

    def _static_source(self, name: str) -> str | None:
        """The template's source with `{% include "literal" %}` of jinja-free files pasted in
        (whitespace trimmed as jinja would); None for anything else that pulls in other templates."""
        loader = self._env.loader
        assert loader is not None
        source = loader.get_source(self._env, name)[0]
        pieces: list[str] = []
        position = 0
        for match in _INCLUDE.finditer(source):
            included = loader.get_source(self._env, match.group(3))[0]
            if _SPAN.search(included) or "\r" in included:
                return None
            before = source[position : match.start()]
            if match.group(1) == "-":
                before = before.rstrip()
            elif match.group(1) != "+":  # lstrip_blocks: the tag's indentation goes
                line_start = before.rfind("\n") + 1
                if not before[line_start:].strip(" \t"):
                    before = before[:line_start]
            pieces += [before, included]
            position = match.end()
            if match.group(4) == "-":
                while position < len(source) and source[position].isspace():
                    position += 1
            elif match.group(4) != "+" and source.startswith("\n", position):  # trim_blocks
                position += 1
        pieces.append(source[position:])
        resolved = "".join(pieces)
        if "\r" in resolved or _OTHER_TEMPLATES.search(resolved):
            return None
        return resolved

    def _same_as_inlining_each_page(self, name: str, template: jinja2.Template) -> bool:
        """Render sample pages (hostile text, every optional part) both ways; True if identical
        wherever the fast way renders at all (a value it cannot vouch for goes the slow way)."""
        digest = name == DIGEST_HTML
        compared = 0
        for view in _SAMPLE_DIGESTS if digest else _SAMPLE_CONFIRMS:
            try:
                context = (
                    self._digest_context(view)  # type: ignore[arg-type]
                    if digest
                    else self._confirm_context(view)  # type: ignore[arg-type]
                )
                expected = self._inline(self._render(name, context))
            except Exception:  # a user template that cannot render the samples: stay on the safe path
                return False
            try:
                fast = template.render(context)
            except _CannotVouch:
                continue
            except Exception:
                return False
            if fast != expected:
                log.debug("email template %s keeps per-render CSS inlining (samples differ)", name)
                return False
            compared += 1
        return compared > 0


# -- inlining the stylesheet into a template, once -----------------------------------------

_SPAN = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_EXPRESSION = re.compile(r"\{\{([-+]?)(.*?)([-+]?)\}\}", re.DOTALL)
_INCLUDE = re.compile(r"""\{%([-+]?)\s*include\s+(["'])([^"'{}%]+)\2\s*([-+]?)%\}""")
_OTHER_TEMPLATES = re.compile(r"\{%[-+]?\s*(raw|extends|import|from|include)\b")
_MARK_START, _MARK_END = "\ue000", "\ue001"  # private-use characters: no parser touches them
_IN_TEXT, _IN_ATTRIBUTE = "text", "attribute"
_TEXT_FILTER, _ATTR_FILTER = "_html_text", "_html_attribute"
# Characters the HTML parser would drop, replace or normalise in a value: such a render takes the
# per-page inlining path instead.
_PARSER_CHANGES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# What markupsafe writes for text that contains no markup.
_ESCAPED_TEXT = re.compile(r"&(?:amp|lt|gt|quot|#34|#39|#x27);")
_ESCAPE_CACHE = 1 << 16  # distinct field values remembered escaped (a day of articles, many times over)
_RAW_TEXT_TAGS = frozenset(
    {"style", "script", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"}
)


class _CannotVouch(Exception):
    """A value the pre-inlined template cannot render exactly as per-page inlining would."""


def _plain(value: Any) -> str:
    if hasattr(value, "__html__"):  # markup: only escaped text (what join() and friends return) is plain
        markup = str(value.__html__())
        if "<" in markup or ">" in markup or "&" in _ESCAPED_TEXT.sub("", markup):
            raise _CannotVouch("markup")
        text = Markup(markup).unescape()
    else:
        text = str(value)
    if _PARSER_CHANGES.search(text):
        raise _CannotVouch("control characters")
    return text


def _escape_text(value: Any) -> Markup:
    """A value in text, escaped as the inliner's serializer writes text (quotes stay as they are)."""
    if type(value) is str:  # the same titles, sources and excerpts recur in digest after digest
        return _escaped_text(value)
    return _escaped_text(_plain(value))


def _escape_attr(value: Any) -> Markup:
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


def _escaped_span(span: str, where: str) -> str:
    """A jinja span as it goes back into the inlined template: expressions get our escaping."""
    match = _EXPRESSION.fullmatch(span)
    if match is None:
        return span
    before, expression, after = match.groups()
    escape = _TEXT_FILTER if where == _IN_TEXT else _ATTR_FILTER
    return f"{{{{{before} ({expression.strip()})|{escape} {after}}}}}"


def _marker_contexts(skeleton: str, count: int) -> list[str] | None:
    """Where each marker sits: in text, or inside a quoted attribute value. None when one sits
    anywhere else (in a tag itself, an HTML comment, a <style> or <script>)."""
    found: list[str | None] = [None] * count
    state, quote, raw_tag = "text", "", ""
    position, end = 0, len(skeleton)
    while position < end:
        char = skeleton[position]
        if char == _MARK_START:
            close = skeleton.index(_MARK_END, position)
            number = int(skeleton[position + 1 : close])
            found[number] = {"text": _IN_TEXT, "value": _IN_ATTRIBUTE}.get(state)
            if found[number] is None:
                return None
            position = close + 1
            continue
        if state == "text":
            if skeleton.startswith("<!--", position):
                close = skeleton.find("-->", position + 4)
                if close < 0 or _MARK_START in skeleton[position:close]:
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


def _simple_selectors(skeleton: str) -> bool:
    """True when every rule that gets inlined selects by the element alone (tag, class, id): then
    it matches the same elements in the skeleton as in any page, whatever loops and conditions
    do around them. Markers must not be in class, id or style attributes, nor remote styles."""
    if re.search(r"<link\b", skeleton, re.IGNORECASE):
        return False
    if re.search(r"\b(class|id|style)\s*=\s*[\"'][^\"']*" + _MARK_START, skeleton, re.IGNORECASE):
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


_SAMPLE_DIGESTS = _sample_digests()
_SAMPLE_CONFIRMS = _sample_confirms()


def _cached_wordwrap(cache: dict[tuple[Any, ...], str]) -> Callable[..., str]:
    """jinja's wordwrap filter, remembering its answers: an excerpt is wrapped once, not once per
    digest it appears in. Same arguments, same result."""

    @jinja2.pass_environment
    def wordwrap(
        environment: jinja2.Environment,
        s: str,
        width: int = 79,
        break_long_words: bool = True,
        wrapstring: str | None = None,
        break_on_hyphens: bool = True,
    ) -> str:
        key = (type(s), s, width, break_long_words, wrapstring, break_on_hyphens)
        wrapped = cache.get(key)
        if wrapped is None:
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            wrapped = jinja2.filters.do_wordwrap(
                environment, s, width, break_long_words, wrapstring, break_on_hyphens
            )
            cache[key] = wrapped
        return wrapped

    return wordwrap


def _check_subject_template(template: str) -> str:
    """Allow only {top_title}, {date}, {count} and {name}: no attribute or index lookups."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise ConfigError(f"email.subject {template!r} is not a valid template: {exc}") from None
    for field in fields:
        if field not in SUBJECT_FIELDS:
            known = ", ".join("{" + name + "}" for name in sorted(SUBJECT_FIELDS))
            raise ConfigError(f"email.subject uses {{{field}}}; it may use {known}")
    return template


def _preheader(items: tuple[ItemContext, ...]) -> str:
    """The inbox preview line: the subject names the top story, so this names the next ones."""
    if not items:
        return "Nothing new matched your topics since your last digest."
    if len(items) == 1:
        return _shorten(items[0].excerpt or f"One story for you, via {items[0].source}.", PREHEADER_MAX)
    rest = " · ".join(item.title for item in items[1:4])
    more = len(items) - 4
    text = f"Also today: {rest}" + (f" and {more} more" if more > 0 else "")
    return _shorten(text, PREHEADER_MAX)
