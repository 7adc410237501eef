"""Where FlareStart's own templates are, in a source checkout and in an installed wheel.

The templates live at the top of the repository (templates/email, templates/web), next to bot/:
that folder is the one source of truth. A wheel carries it inside the package as bot/templates
(setup.py maps the folder in), since an installed package has no repository around it. The digest
renderer and the web pages both ask `shipped_template_dir`, so the two layouts are known in one place.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_template_dir(kind: str, *, package_dir: Path = PACKAGE_DIR) -> Path:
    """The folder of FlareStart's own `kind` templates ("email", "web").

    Installed: `<package>/templates/<kind>`; a source checkout: `<package>/../templates/<kind>`.
    The packaged folder is tried first because beside an installed package is site-packages,
    where another distribution may have left a top-level templates/ of its own; a checkout has
    no bot/templates (the build maps the folder in without copying it there). `package_dir` is
    the `bot` package's folder: tests point it at a layout of their own.
    """
    packaged = package_dir / "templates" / kind
    if packaged.is_dir():
        return packaged
    return package_dir.parent / "templates" / kind
