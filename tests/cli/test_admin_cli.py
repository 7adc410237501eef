"""`config show`, `db upgrade`, help and version."""

from __future__ import annotations

from pathlib import Path

import pytest

import bot.daemon
from tests.cli.conftest import Runner


def test_config_show_masks_secrets_and_names_origins(cli: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:1/none")
    rows = {row["key"]: row for row in cli("config", "show", "--json").json()}
    assert rows["database_url"]["value"] == "postgresql://app:********@127.0.0.1:1/none"
    assert rows["database_url"]["origin"] == "environment DATABASE_URL"
    assert rows["allow_private_urls"]["origin"] == "environment FLARESTART_ALLOW_PRIVATE_URLS"


def test_bad_setting_is_a_one_line_error(cli: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLARESTART_FETCH_PER_HOST", "many")
    result = cli("sources", "list")
    assert result.code == 2
    assert "FLARESTART_FETCH_PER_HOST" in result.err and "Traceback" not in result.err


def test_db_upgrade_then_up_to_date(cli: Runner) -> None:
    first = cli("db", "upgrade")
    assert first.code == 0 and "upgraded from empty" in first.out
    second = cli("db", "upgrade")
    assert second.code == 0 and "up to date" in second.out


def test_every_command_has_help_with_an_example(cli: Runner) -> None:
    for command in (
        ["sources", "add"],
        ["sources", "list"],
        ["fetch"],
        ["articles", "list"],
        ["prune"],
        ["config", "show"],
        ["db", "upgrade"],
        ["sources", "import"],
        ["sources", "export"],
    ):
        result = cli(*command, "--help")
        assert result.code == 0, command
        assert "Example" in result.out, command


def test_config_show_says_where_the_secret_key_lives(cli: Runner, tmp_path: Path) -> None:
    before = {row["key"]: row for row in cli("config", "show", "--json").json()}
    assert before["secret_key"]["value"].startswith("(none yet: made in ")

    key_file = tmp_path / "data" / "secret_key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text("k" * 64 + "\n", encoding="utf-8")
    shown = cli("config", "show")
    rows = {row["key"]: row for row in cli("config", "show", "--json").json()}

    assert rows["secret_key"]["value"] == f"(file {key_file})"
    assert "secret_key" in shown.out and "None" not in shown.out.split("secret_key", 1)[1].split("\n", 1)[0]
    assert "k" * 64 not in shown.out + repr(rows)


def test_an_unknown_flarestart_variable_is_a_warning_naming_it(
    cli: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLARESTART_FETCH_CONCURENCY", "8")
    result = cli("config", "show", "--json")
    assert result.code == 0
    assert "WARNING" in result.err and "FLARESTART_FETCH_CONCURENCY" in result.err
    assert "did you mean FLARESTART_FETCH_CONCURRENCY?" in result.err


def test_a_typo_in_the_settings_file_is_one_line_naming_the_section(cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "flarestart.toml").write_text("sources = []\n[fetch]\nconcurency = 3\n", encoding="utf-8")
    result = cli("sources", "list")
    assert result.code == 2
    assert result.err.strip() == (
        f"error: {tmp_path / 'flarestart.toml'}:3: unknown setting 'concurency' in [fetch] "
        "(did you mean 'concurrency'?)"
    )


def test_run_with_no_subscribers_says_how_to_add_one(cli: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[object] = []

    async def daemon(app: object) -> None:  # the loop itself is tested elsewhere
        ran.append(app)

    monkeypatch.setattr(bot.daemon, "run_daemon", daemon)
    monkeypatch.setenv("FLARESTART_SUBSCRIBERS_DIR", "no-such-folder")
    result = cli("run")

    assert result.code == 0 and ran
    assert "0 active subscriber(s)" in result.err
    assert "No active subscribers" in result.err and "flarestart subscribers add" in result.err
