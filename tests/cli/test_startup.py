"""What a command imports before it runs: every command pays for it on every start.

Not timed (bench/cli_startup.py measures the times); this guards the structure that makes them
fast: `--version` and `--help` import neither the settings (pydantic) nor the store (SQLAlchemy)
nor the ranking (numpy, scipy); light commands import only what they use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, sys
from bot.cli import main
try:
    main(sys.argv[2:])
except SystemExit:
    pass
with open(sys.argv[1], "w") as handle:
    json.dump(sorted(sys.modules), handle)
"""
PIPELINE = [
    "numpy",
    "scipy",
    "jinja2",
    "httpx",
    "bot.delivery",
    "bot.digest",
    "bot.channels",
    "bot.ranking.pool",
]
STORE = ["sqlalchemy", "sqlmodel", "alembic", "bot.store"]
SETTINGS = ["pydantic", "bot.config"]


def imported(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLARESTART_")}
    config = tmp_path / "flarestart.toml"
    config.write_text("sources = []\n", encoding="utf-8")
    env |= {"FLARESTART_DATA_DIR": str(tmp_path / "data"), "FLARESTART_CONFIG": str(config)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in done.stderr, done.stderr
    return set(json.loads(out.read_text()))


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_no_settings_store_or_pipeline(tmp_path: Path, args: list[str]) -> None:
    modules = imported(tmp_path, *args)
    assert "bot.cli" in modules
    assert modules.isdisjoint(PIPELINE + STORE + SETTINGS), sorted(modules & {*PIPELINE, *STORE, *SETTINGS})
    assert "bot.app.core" not in modules  # the verbs load with the first command that calls one


@pytest.mark.parametrize("args", [["sources", "--help"], ["fetc"], ["preview", "--max", "0"]])
def test_sub_command_help_and_mistakes_import_no_store_or_pipeline(tmp_path: Path, args: list[str]) -> None:
    # typer 0.29 itself imports pydantic to check a sub-command's parameters: not ours to avoid.
    modules = imported(tmp_path, *args)
    assert modules.isdisjoint(PIPELINE + STORE + ["bot.config"]), sorted(modules & {*PIPELINE, *STORE})


@pytest.mark.parametrize("args", [["config", "show"], ["topics", "list"]])
def test_commands_without_a_database_do_not_import_the_store(tmp_path: Path, args: list[str]) -> None:
    modules = imported(tmp_path, *args)
    assert "bot.config" in modules
    assert modules.isdisjoint(PIPELINE + STORE), sorted(modules & {*PIPELINE, *STORE})


ORM = ["sqlmodel", "sqlalchemy.orm", "bot.store.models", "bot.store.store"]


def test_sources_list_reads_a_ready_database_without_the_orm_or_the_pipeline(tmp_path: Path) -> None:
    first = imported(tmp_path, "sources", "list")  # creates the database: alembic migrates, the Store seeds
    again = imported(tmp_path, "sources", "list")

    assert {"alembic", "sqlmodel", "bot.store.store"} <= first
    assert "sqlalchemy" in again and "bot.store.listing" in again
    # a database at the head and seeded needs neither the migration machinery nor the ORM
    assert again.isdisjoint(["alembic", *ORM]), sorted(again & {"alembic", *ORM})
    assert again.isdisjoint(PIPELINE), sorted(again & set(PIPELINE))


def test_the_script_exits_with_the_commands_code_and_keeps_its_output(tmp_path: Path) -> None:
    """`python -m bot` (and the `flarestart` script) leave without the interpreter's teardown:
    the exit code, stdout and stderr must be exactly those of `main`."""
    env = {**os.environ, "FLARESTART_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    version = subprocess.run(
        [sys.executable, "-m", "bot", "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    typo = subprocess.run(
        [sys.executable, "-m", "bot", "fetc"], capture_output=True, text=True, env=env, timeout=60
    )
    listing = subprocess.run(
        [sys.executable, "-m", "bot", "config", "show", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert (version.returncode, version.stdout.split()[0]) == (0, "flarestart")
    assert typo.returncode == 2 and "Did you mean 'fetch'" in typo.stderr and typo.stdout == ""
    assert listing.returncode == 0
    assert {row["key"] for row in json.loads(listing.stdout)} >= {"data_dir", "secret_key"}


def test_fetch_leaves_parsing_and_tagging_to_the_parser_processes(tmp_path: Path) -> None:
    modules = imported(tmp_path, "fetch", "--all")  # no sources: the whole path, nothing fetched

    assert {"bot.sources.ingest", "bot.sources.parse_pool", "httpx"} <= modules
    parsing = ["lxml", "feedparser", "bot.sources.parse", "bot.ranking.setup", "bot.ranking.topics"]
    assert modules.isdisjoint(parsing), sorted(modules & set(parsing))
    # nor the subscribers' files, schedule and sync (bot.app.types names its constants from bot.types)
    assert "bot.subscribers" not in modules
    # nor httpx's command-line client and its click, which `import httpx` brings when installed
    assert "click" not in modules


# What the parser processes of a command started by the `flarestart` script hold: multiprocessing
# runs the script again in each one (as `__mp_main__`) before its first job.
SCRIPT = """
import sys
from {module} import {attr}  # the line the installed script starts with

if __name__ == "__main__":
    import json
    from bot.config import load_settings
    from bot.sources.parse_pool import make_parse_pool

    pool = make_parse_pool(load_settings())
    modules = pool.submit(eval, "sorted(__import__('sys').modules)").result()
    pool.shutdown()
    with open(sys.argv[1], "w") as handle:
        json.dump(modules, handle)
"""


def test_the_scripts_parser_processes_do_not_import_the_command_line(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    (script_entry,) = entry_points(group="console_scripts", name="flarestart")
    script = tmp_path / "flarestart"
    script.write_text(SCRIPT.format(module=script_entry.module, attr=script_entry.attr), encoding="utf-8")
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLARESTART_")}
    env["FLARESTART_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, str(script), str(out)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    modules = set(json.loads(out.read_text()))

    assert {"__mp_main__", script_entry.module} <= modules  # the script did run again there
    cli = ["bot.cli", "typer", "rich", "pydantic", "sqlalchemy"]
    assert modules.isdisjoint(cli), sorted(modules & set(cli))
