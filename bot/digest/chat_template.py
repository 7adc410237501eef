"""The words of a chat digest (Slack, Discord): one Jinja file of macros, loaded once and called by
the renderer that builds the platform's structure around what the macros return.

    words = ChatTemplate("discord", MACROS, template_dir=settings_dir)   # fails at start if broken
    title = words.line("header", digest)                                 # one cleaned line

A user folder may override the shipped `templates/<kind>/digest.j2`, as with the email templates.
A broken or incomplete template fails when the renderer is made (with file and line), and a macro
that fails at render time says which macro and line. Macros return plain text; each renderer
decides how that text is made safe for its platform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bot.digest.render import DigestTemplateError
from bot.digest.text import clean_text, date_label
from bot.digest.view import DigestView
from bot.errors import ConfigError
from bot.resources import shipped_template_dir

TEMPLATE = "digest.j2"
LINE_MAX = 300  # one line of our own words (byline, reason, intro)
BRAND = "FlareStart"


@dataclass(frozen=True, slots=True)
class DigestContext:
    """What a chat template's macros know of the digest as a whole."""

    brand: str
    name: str
    date_label: str
    date_iso: str
    count: int
    period: str

    @classmethod
    def of(cls, view: DigestView, count: int) -> DigestContext:
        return cls(
            brand=BRAND,
            name=clean_text(view.subscriber_name, 80),
            date_label=date_label(view.date),
            date_iso=view.date.isoformat(),
            count=count,
            period=view.period,
        )


class ChatTemplate:
    """A chat platform's digest macros, from the user's folder first, then the shipped one."""

    def __init__(self, kind: str, macros: Sequence[str], *, template_dir: Path | None = None) -> None:
        self.kind = kind
        folders: list[Path] = []
        if template_dir is not None:
            template_dir = template_dir.expanduser()
            if not template_dir.is_dir():
                raise ConfigError(f"{kind}.template_dir {template_dir} is not a folder")
            folders.append(template_dir)
        folders.append(shipped_template_dir(kind))
        self.search_path: tuple[Path, ...] = tuple(folders)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(folder) for folder in folders]),
            autoescape=False,  # the output is plain text placed into JSON by Python, never markup
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        try:
            template = env.get_template(TEMPLATE)
            module = template.module
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or exc.name or TEMPLATE
            raise DigestTemplateError(
                f"{kind} template {where}, line {exc.lineno}: {exc.message}", template=where, line=exc.lineno
            ) from None
        except jinja2.TemplateNotFound:
            places = ", ".join(str(folder) for folder in folders)
            raise DigestTemplateError(
                f"{kind} template {TEMPLATE} not found in {places}", template=TEMPLATE, line=None
            ) from None
        except Exception as exc:  # a user template's top level may fail in any way
            raise DigestTemplateError(
                f"{kind} template {TEMPLATE}: {exc}", template=TEMPLATE, line=None
            ) from None
        missing = [name for name in macros if not callable(getattr(module, name, None))]
        if missing:
            raise DigestTemplateError(
                f"{kind} template {template.filename} lacks the macro(s) {', '.join(missing)}",
                template=str(template.filename),
                line=None,
            )
        self.filename = str(template.filename)
        self._macros: dict[str, Callable[..., Any]] = {name: getattr(module, name) for name in macros}

    def line(self, macro: str, *args: Any, limit: int = LINE_MAX) -> str:
        """What `macro` returns as one line: control characters dropped, whitespace collapsed, capped."""
        return clean_text(self.call(macro, *args), limit)

    def call(self, macro: str, *args: Any) -> str:
        """What `macro` returns, as it is."""
        try:
            return str(self._macros[macro](*args))
        except Exception as exc:  # user templates may fail in any way; say which macro
            line = _template_line(exc, self.filename)
            where = f"{self.filename}, line {line}" if line else self.filename
            raise DigestTemplateError(
                f"{self.kind} template {where} (macro {macro}): {exc}", template=self.filename, line=line
            ) from exc


def _template_line(exc: BaseException, filename: str) -> int | None:
    traceback = exc.__traceback__
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == filename:
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line
