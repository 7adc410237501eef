"""`config show`, `db upgrade`, help and version."""

from __future__ import annotations

import pytest

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
