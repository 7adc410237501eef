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
"""

from __future__ import annotations

import re
import string
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import css_inline
import jinja2

import bot
from bot.config import EmailSettings
from bot.digest.view import ConfirmView, DigestItemView, DigestView, RenderedDigest, humanize_age
from bot.errors import ConfigError, FlareStartError

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


class RenderError(FlareStartError):
    """A digest could not be rendered as asked (a missing link, a bad template)."""


class DigestTemplateError(RenderError):
    """A template failed to compile or to render; the message names the file and the line."""

    def __init__(self, message: str, *, template: str, line: int | None) -> None:
        super().__init__(message)
        self.template = template
        self.line = line


def default_template_dir() -> Path:
    """FlareStart's own email templates: templates/email beside the package (or inside it)."""
    package = Path(bot.__file__).resolve().parent
    for candidate in (package.parent / "templates" / "email", package / "templates" / "email"):
        if candidate.is_dir():
            return candidate
    return package.parent / "templates" / "email"


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

    Protocol-relative links get https. Unsafe characters are percent-encoded, so the result can
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
    title = clean_text(item.title, TITLE_MAX) or "(untitled)"
    source = clean_text(item.source, NAME_MAX) or "the source"
    author = clean_text(item.author, NAME_MAX)
    age = humanize_age(item.published, view.now)
    byline = " · ".join(part for part in (source, author, age) if part)
    also = tuple(
        LinkContext(name=clean_text(name, NAME_MAX) or "another source", url=safe_link(url))
        for name, url in item.also_covered_by
    )
    return ItemContext(
        number=number,
        title=title,
        url=safe_link(item.url),
        source=source,
        author=author,
        age=age,
        published_iso=item.published.isoformat(),
        byline=byline,
        excerpt=clean_text(item.excerpt, EXCERPT_MAX),
        chip=clean_text(item.chip, 40),
        reason=_sentence(item.reason),
        also=also,
        image_url=safe_link(item.image_url),
        image_alt=title,
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
        self._templates = {
            name: self._load(name) for name in (DIGEST_HTML, DIGEST_TEXT, CONFIRM_HTML, CONFIRM_TEXT)
        }
        # Rules are copied into style="" once per render; @media (dark mode, small screens) stays
        # in <style>. Remote stylesheets are never fetched.
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)

    # public ----------------------------------------------------------------------------

    def render(self, view: DigestView) -> RenderedDigest:
        """Subject, HTML (CSS inlined) and text for one digest. Raises RenderError."""
        preferences_url = self._own_link(view.preferences_url, "preferences")
        unsubscribe_url = self._own_link(view.unsubscribe_url, "unsubscribe")
        items = () if view.quiet else view.items
        contexts = tuple(_item_context(number, item, view) for number, item in enumerate(items, 1))
        quiet = not contexts
        name = clean_text(view.subscriber_name, NAME_MAX)
        top_title = contexts[0].title if contexts else QUIET_TITLE
        subject = self.subject_for(top_title=top_title, day=view.date, count=len(contexts), name=name)
        preheader = _preheader(contexts)
        context: dict[str, Any] = {
            "brand": BRAND,
            "subject": subject,
            "preheader": preheader,
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
        html = self._inline(self._render(DIGEST_HTML, context))
        text = self._render(DIGEST_TEXT, context)
        return RenderedDigest(subject=subject, html=html, text=text, preheader=preheader)

    def render_confirm(self, view: ConfirmView) -> RenderedDigest:
        """The double opt-in mail: one confirm link, in both parts."""
        confirm_url = self._own_link(view.confirm_url, "confirm")
        preheader = "One click confirms your FlareStart digest; without it you get nothing more."
        context: dict[str, Any] = {
            "brand": BRAND,
            "subject": CONFIRM_SUBJECT,
            "preheader": preheader,
            "name": clean_text(view.subscriber_name, NAME_MAX),
            "email": clean_text(view.subscriber_email, 320),
            "topics": tuple(clean_text(topic, NAME_MAX) for topic in view.topics),
            "confirm_url": confirm_url,
            "expires_hours": view.expires_hours,
            "postal_address": self._postal_address,
        }
        html = self._inline(self._render(CONFIRM_HTML, context))
        text = self._render(CONFIRM_TEXT, context)
        return RenderedDigest(subject=CONFIRM_SUBJECT, html=html, text=text, preheader=preheader)

    def subject_for(self, *, top_title: str, day: date, count: int, name: str) -> str:
        """The configured subject with its fields filled in: one line, at most SUBJECT_MAX."""
        values = {
            "top_title": _shorten(top_title, TOP_TITLE_MAX),
            "date": short_date(day),
            "count": str(count),
            "name": name,
        }
        return clean_text(self._subject_template.format_map(values), SUBJECT_MAX) or "Your digest"

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
