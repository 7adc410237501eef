"""A real wheel (not an editable install) carries what an installed `flarestart` needs to run:
every module, the migrations and data, and the top-level templates/ where the lookup finds them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bot.resources import shipped_template_dir
from bot.web.app import Pages

ROOT = Path(__file__).resolve().parents[1]
# What the build reads. It runs on a copy, so the checkout gets no build/ or *.egg-info.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "bot", "templates")
KINDS = ("email", "web")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The wheel built offline from a copy of the checkout, unpacked as site-packages would hold it;
    and the names in the wheel."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in BUILD_INPUTS:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(origin, source / name)
    out = work / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    command += ["--disable-pip-version-check", "--quiet", "-w", str(out), str(source)]
    built = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, f"pip wheel failed:\n{built.stdout}\n{built.stderr}"
    [wheel] = out.glob("flarestart_bot-*.whl")
    site = work / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    return site, names


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_the_wheel_carries_every_template_where_the_lookup_finds_it(
    installed: tuple[Path, list[str]],
) -> None:
    site, names = installed

    for kind in KINDS:
        folder = shipped_template_dir(kind, package_dir=site / "bot")
        assert folder == site / "bot" / "templates" / kind
        assert files_under(folder) == files_under(ROOT / "templates" / kind)
    in_wheel = {name for name in names if name.startswith("bot/templates/")}
    expected = {
        f"bot/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "templates").rglob("*") if p.is_file()
    }
    assert in_wheel == expected
    assert not any(name.startswith("templates/") for name in names)  # nothing at site-packages' top
    # The installed layout works: the web pages compile from it.
    assert "Content-Security-Policy" in Pages(site / "bot" / "templates" / "web").security_headers


def test_the_wheel_carries_every_module_and_data_file(installed: tuple[Path, list[str]]) -> None:
    _, names = installed
    ours = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "bot").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")  # editors' files
    }

    assert ours - set(names) == set()


def test_the_lookup_prefers_the_packaged_templates_and_falls_back_to_the_checkout(tmp_path: Path) -> None:
    installed = tmp_path / "site-packages" / "bot"
    (installed / "templates" / "email").mkdir(parents=True)
    checkout = tmp_path / "repo" / "bot"
    checkout.mkdir(parents=True)
    (tmp_path / "repo" / "templates" / "email").mkdir(parents=True)

    assert shipped_template_dir("email", package_dir=installed) == installed / "templates" / "email"
    assert shipped_template_dir("email", package_dir=checkout) == tmp_path / "repo" / "templates" / "email"


def test_a_checkout_uses_its_top_level_templates() -> None:
    for kind in KINDS:
        assert shipped_template_dir(kind) == ROOT / "templates" / kind
