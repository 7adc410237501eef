"""Usage mistakes in one line, whichever parser raised them.

typer up to 0.28 parses with click and raises click's exceptions; typer 0.29 carries its own copy
of click (`typer._click`) whose exceptions are other classes with the same names and the same
interface (`exit_code`, `format_message()`, `ctx`). `main()` asks here, so a typo is one line
("did you mean" included) and never a traceback, whichever of the two is installed.
"""

from __future__ import annotations

import sys
from typing import Any

# Where each parser keeps its exceptions; a module that was never imported raised nothing.
_EXCEPTION_MODULES = ("typer._click.exceptions", "typer.exceptions", "click.exceptions")


def _is(exc: BaseException, name: str) -> bool:
    """isinstance against the class `name` of every parser that is loaded."""
    for module_name in _EXCEPTION_MODULES:
        cls = getattr(sys.modules.get(module_name), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def exit_code_for(exc: BaseException) -> int | None:
    """Say what went wrong in at most two lines on stderr and return the exit code; None when
    `exc` is not the parser's (a bug: the caller re-raises it with its traceback)."""
    if _is(exc, "Exit"):
        return int(getattr(exc, "exit_code", 0) or 0)
    if _is(exc, "Abort"):
        _say("aborted")
        return 130
    if _is(exc, "NoArgsIsHelpError"):
        # A bare group: typer's rich help is printed while the exception is made (its message is
        # then empty); click's plain help is the message itself.
        text = _message(exc)
        if text.strip():
            print(text)
        return int(getattr(exc, "exit_code", 2))
    if _is(exc, "UsageError"):
        _say(f"error: {_one_line(_message(exc))}{_help_hint(getattr(exc, 'ctx', None))}")
        return int(getattr(exc, "exit_code", 2))
    if _is(exc, "ClickException"):  # FileError and the like: not a usage slip, still expected
        _say(f"error: {_one_line(_message(exc))}")
        return int(getattr(exc, "exit_code", 1))
    return None


def _message(exc: BaseException) -> str:
    format_message = getattr(exc, "format_message", None)
    return str(format_message() if callable(format_message) else exc)


def _help_hint(ctx: Any) -> str:
    path = getattr(ctx, "command_path", None)
    return f" (see '{path} --help')" if path else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _say(line: str) -> None:
    print(line, file=sys.stderr)
