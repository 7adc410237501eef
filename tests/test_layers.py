"""The layers import downwards only: each rule names a folder and the packages it may not import.

Imports are read from the source (every `import` and `from … import`, also inside functions and
`if TYPE_CHECKING:` blocks), so a lazy import inside a command counts as much as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# folder → packages no module under it may import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "bot/store": ("bot.sources", "bot.ranking", "bot.subscribers"),
    "bot/digest": ("bot.web",),
    "bot/delivery": ("bot.web",),
    "bot/channels": ("bot.web",),
    "bot/links": ("bot.web",),
    # The command core is chat-agnostic: the adapters import it, never the other way round.
    "bot/app": ("bot.chat", "bot.web", "bot.cli"),
}


# The doors import the core only through the application layer: folder → the packages it may
# import (a module's own package included), and files with a door of their own besides.
DOORS: dict[str, tuple[str, ...]] = {
    "bot/cli": ("bot.cli", "bot.app", "bot.config", "bot.errors", "bot.logs", "bot.__version__"),
    "bot/web": ("bot.web", "bot.app", "bot.config", "bot.errors", "bot.links", "bot.resources"),
    # Chat adapters translate between a chat and the command core (bot/app/chat.py).
    "bot/chat": ("bot.chat", "bot.app", "bot.config", "bot.errors", "bot.logs"),
}
EXTRA: dict[str, tuple[str, ...]] = {
    "bot/cli/web.py": ("bot.web",),  # `serve` starts the web door
    "bot/cli/demo.py": ("bot.demo", "bot.testing"),  # the demo's own feeds, inbox and feed host
    "bot/cli/slack.py": ("bot.chat",),  # `flarestart slack` starts the Socket Mode door
    "bot/web/app.py": ("bot.chat",),  # POST /slack/commands is the Slack adapter's HTTP door
    "bot/chat/slack.py": ("bot.digest.slack",),  # Slack's mrkdwn escaping and link check, shared
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def reaches(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_folder_imports_no_forbidden_package(folder: str) -> None:
    offending = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for module in sorted(imported_modules(path))
        if any(reaches(module, package) for package in FORBIDDEN[folder])
    ]
    assert offending == []


def test_the_reader_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from bot.ranking.types import TopicMatch\n"
        "def f():\n    import bot.sources.parse\n",
        encoding="utf-8",
    )
    modules = imported_modules(sample)
    assert "bot.ranking.types" in modules and "bot.sources.parse" in modules


@pytest.mark.parametrize("folder", sorted(DOORS))
def test_doors_import_the_core_only_through_the_application_layer(folder: str) -> None:
    offending = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        allowed = DOORS[folder] + EXTRA.get(str(path.relative_to(ROOT)), ())
        for module in sorted(imported_modules(path)):
            if module.startswith("bot.") and not any(reaches(module, package) for package in allowed):
                offending.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offending == []
