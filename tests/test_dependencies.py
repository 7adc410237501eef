"""The install is reproducible: constraints.txt pins a set inside pyproject.toml's bounded ranges,
and this venv holds exactly that set (the set the rest of the suite is testing)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    listed = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    return [Requirement(text) for text in listed]


def pins() -> dict[str, Version]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            found[canonicalize_name(name)] = Version(version.strip())
    return found


def test_every_range_has_an_upper_bound() -> None:
    unbounded = [
        str(r) for r in requirements() if not any(s.operator in ("<", "<=", "==") for s in r.specifier)
    ]
    assert unbounded == []


def test_the_pinned_set_is_inside_the_ranges() -> None:
    pinned = pins()
    outside = {
        str(r): str(pinned.get(canonicalize_name(r.name)))
        for r in requirements()
        if canonicalize_name(r.name) not in pinned or pinned[canonicalize_name(r.name)] not in r.specifier
    }
    assert outside == {}


def test_this_environment_holds_the_pinned_set() -> None:
    """What `make` installs. A failure here means the venv predates constraints.txt: `make clean test`."""
    differ = {}
    for name, version in pins().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            differ[name] = (str(version), str(installed))
    assert differ == {}
