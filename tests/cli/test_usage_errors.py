"""Usage mistakes, typed as a newcomer types them: one line on stderr, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

import bot.cli
from bot.cli import app, app_for
from bot.cli.usage import exit_code_for
from tests.cli.conftest import Runner


def flarestart(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a process of its own, as `python -m bot` (what the console script runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLARESTART_")}
    env |= {"FLARESTART_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["fetc"], "No such command 'fetc'. Did you mean 'fetch'?"),
        (["sources", "lst"], "No such command 'lst'. Did you mean 'list'?"),
        (["preview", "--topic"], "No such option: --topic"),
        (["preview", "--max", "0"], "'--max'"),
        (["sources", "add"], "Missing argument"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_a_usage_mistake_is_one_line_with_the_fix(tmp_path: Path, args: list[str], says: str) -> None:
    result = flarestart(tmp_path, *args)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("error: ") and says in lines[0], lines
    assert "--help" in result.stderr  # where to look next
    assert result.stdout == ""


@pytest.mark.parametrize("args", [[], ["sources"]])
def test_a_bare_command_prints_its_help_not_a_traceback(tmp_path: Path, args: list[str]) -> None:
    result = flarestart(tmp_path, *args)

    assert result.returncode in (0, 2)
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 2
    assert "Usage: flarestart" in result.stdout


def test_click_usage_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    """typer before 0.29 raised click's own exceptions: those are caught the same way."""
    command = click.Group("flarestart", commands={"fetch": click.Command("fetch")})
    ctx = click.Context(command, info_name="flarestart")

    code = exit_code_for(click.UsageError("No such command 'fetc'. Did you mean 'fetch'?", ctx=ctx))

    assert code == 2
    err = capsys.readouterr().err
    assert err == "error: No such command 'fetc'. Did you mean 'fetch'? (see 'flarestart --help')\n"
    assert exit_code_for(click.exceptions.Exit(3)) == 3
    assert exit_code_for(ValueError("a bug")) is None  # anything else keeps its traceback


def test_the_command_named_first_is_parsed_by_an_app_holding_only_it() -> None:
    def names(one: typer.Typer) -> list[str]:
        commands = [c.name or (c.callback.__name__ if c.callback else "?") for c in one.registered_commands]
        return commands + [f"{g.name}/" for g in one.registered_groups]

    assert names(app_for(["fetch", "--all"])) == ["fetch"]
    assert names(app_for(["run"])) == ["run"]  # registered without a name: the function's
    assert names(app_for(["sources", "list"])) == ["sources/"]
    assert app_for(["--config", "x.toml", "fetch"]) is app  # options first: the whole app parses
    for args in ([], ["--help"], ["-h"], ["--version"], ["fetc"], ["help"]):
        outline = app_for(args)  # the root's help and suggestions need names and help lines only
        assert names(outline) == names(app), args
        assert all(not g.typer_instance.registered_commands for g in outline.registered_groups), args
    assert app.registered_groups[0].typer_instance.registered_commands  # the app itself is whole


def test_shell_completion_still_offers_a_groups_commands() -> None:
    # The shell runs `flarestart` with no arguments and the words in the environment: the outline
    # (groups without their commands) would complete nothing after `flarestart sources `.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLARESTART_")}
    env |= {"_FLARESTART_COMPLETE": "complete_bash", "COMP_WORDS": "flarestart sources ", "COMP_CWORD": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "bot"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert {"add", "list", "remove"} <= set(done.stdout.split()), done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["fetch", "--help"],
        ["fetch", "--bogus"],
        ["sources", "lst"],
        ["sources", "list", "--help"],
        ["run", "--help"],
        ["prune", "--older-than", "soon"],
        ["subscribers", "add"],
        # the outline: the root's help, --version and mistyped commands
        [],
        ["--help"],
        ["-h"],
        ["--version"],
        ["fetc"],
        ["help"],
        ["subscriber"],
    ],
)
def test_the_app_chosen_for_the_arguments_answers_as_the_whole_app(
    cli: Runner, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    one = cli(*args)
    monkeypatch.setattr(bot.cli, "app_for", lambda _args: app)
    whole = cli(*args)
    assert (one.code, one.out, one.err) == (whole.code, whole.out, whole.err)
    assert one.out or one.err  # help, or a one-line error
