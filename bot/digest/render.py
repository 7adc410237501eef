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

The feed text's shaping (cleaning, safe links, each item's parts, dates in words) is in text.py,
shared by every renderer; the one-time inlining machinery and its sample digests in preinline.py.
"""

from __future__ import annotations

import logging
import re
import string
import traceback
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import jinja2.filters

from bot.config import EmailSettings
from bot.digest.preinline import (
    ATTR_FILTER,
    IN_ATTRIBUTE,
    IN_TEXT,
    INCLUDE,
    MARK_END,
    MARK_START,
    OTHER_TEMPLATES,
    SAMPLE_CONFIRMS,
    SAMPLE_DIGESTS,
    SPAN,
    TEXT_FILTER,
    CannotVouch,
    escape_attr,
    escape_text,
    escaped_span,
    marker_contexts,
    simple_selectors,
)
from bot.digest.text import (
    CACHE_LIMIT,
    NAME_MAX,
    ItemContext,
    clean_text,
    date_label,
    item_context,
    item_parts,
    safe_link,
    short_date,
    shorten,
    with_age,
)
from bot.digest.view import ConfirmView, DigestItemView, DigestView, RenderedDigest
from bot.errors import ConfigError, FlareStartError
from bot.resources import shipped_template_dir

log = logging.getLogger(__name__)

# ItemContext, item_context, clean_text, date_label and safe_link live in bot.digest.text (every
# renderer shapes feed text the same way); they stay importable from here.
__all__ = [
    "DigestRenderer",
    "DigestTemplateError",
    "ItemContext",
    "RenderError",
    "RenderedDigest",
    "clean_text",
    "date_label",
    "default_template_dir",
    "item_context",
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
PREHEADER_MAX = 140
CONFIRM_SUBJECT = "Confirm your FlareStart subscription"
QUIET_TITLE = "A quiet day"


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
        self._env.filters[TEXT_FILTER] = escape_text
        self._env.filters[ATTR_FILTER] = escape_attr
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
            "top_title": shorten(top_title, TOP_TITLE_MAX),
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
            with_age(number, self._item_parts(item), item.published, view.now)
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
            "view_url": self._own_link(view.view_url, "view in browser") if view.view_url else "",
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
            parts = self._parts[item] = item_parts(item)
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
        if source is None or MARK_START in source or MARK_END in source:
            return None
        spans: list[str] = []

        def marker(match: re.Match[str]) -> str:
            spans.append(match.group())
            return MARK_START + str(len(spans) - 1) + MARK_END

        return self._inline_skeleton(SPAN.sub(marker, source), spans)

    def _inline_skeleton(self, skeleton: str, spans: list[str]) -> jinja2.Template | None:
        contexts = marker_contexts(skeleton, len(spans))
        if contexts is None or not simple_selectors(skeleton):
            return None
        for number, (span, where) in enumerate(zip(spans, contexts, strict=True)):
            if where == IN_ATTRIBUTE and not span.startswith("{{"):
                return None  # a tag or comment inside an attribute: the markup itself varies
            marker = MARK_START + str(number) + MARK_END
            skeleton = skeleton.replace(marker, f"<!--{marker}-->" if where == IN_TEXT else marker, 1)
        try:
            inlined = self._inliner.inline(skeleton)
        except css_inline.InlineError:
            return None
        for number, (span, where) in enumerate(zip(spans, contexts, strict=True)):
            marker = MARK_START + str(number) + MARK_END
            forms = (f"<!--{marker}-->", f"&lt;!--{marker}--&gt;") if where == IN_TEXT else (marker,)
            found = [form for form in forms if form in inlined]
            if len(found) != 1 or inlined.count(found[0]) != 1:
                return None  # the parser moved, copied or dropped it
            inlined = inlined.replace(found[0], escaped_span(span, where), 1)
        if MARK_START in inlined or MARK_END in inlined:
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
        for match in INCLUDE.finditer(source):
            included = loader.get_source(self._env, match.group(3))[0]
            if SPAN.search(included) or "\r" in included:
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
        if "\r" in resolved or OTHER_TEMPLATES.search(resolved):
            return None
        return resolved

    def _same_as_inlining_each_page(self, name: str, template: jinja2.Template) -> bool:
        """Render sample pages (hostile text, every optional part) both ways; True if identical
        wherever the fast way renders at all (a value it cannot vouch for goes the slow way)."""
        digest = name == DIGEST_HTML
        compared = 0
        for view in SAMPLE_DIGESTS if digest else SAMPLE_CONFIRMS:
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
            except CannotVouch:
                continue
            except Exception:
                return False
            if fast != expected:
                log.debug("email template %s keeps per-render CSS inlining (samples differ)", name)
                return False
            compared += 1
        return compared > 0


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
        return shorten(items[0].excerpt or f"One story for you, via {items[0].source}.", PREHEADER_MAX)
    rest = " · ".join(item.title for item in items[1:4])
    more = len(items) - 4
    text = f"Also today: {rest}" + (f" and {more} more" if more > 0 else "")
    return shorten(text, PREHEADER_MAX)
