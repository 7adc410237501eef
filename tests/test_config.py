"""Settings: layering, provenance, clear errors, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import describe, load_settings, mask
from bot.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flarestart.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    settings = load_settings({}, config_file=None)
    assert settings.fetch.concurrency == 16
    assert settings.fetch.per_host == 2
    assert settings.fetch.max_body_bytes == 10 * 1024 * 1024
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.origin("fetch.concurrency") == "default"


def test_environment_beats_file_beats_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[fetch]\nconcurrency = 8\nper_host = 3\n")
    settings = load_settings({"FLARESTART_FETCH_CONCURRENCY": "4"}, config_file=path)
    assert settings.fetch.concurrency == 4
    assert settings.origin("fetch.concurrency") == "environment FLARESTART_FETCH_CONCURRENCY"
    assert settings.fetch.per_host == 3
    assert settings.origin("fetch.per_host") == f"{path} [fetch]"
    assert settings.fetch.read_timeout == 30.0
    assert settings.origin("fetch.read_timeout") == "default"


def test_heroku_database_url_is_read_without_prefix(tmp_path: Path) -> None:
    settings = load_settings({"DATABASE_URL": "postgres://u:p@db:5432/app"}, config_file=None)
    assert settings.effective_database_url == "postgres://u:p@db:5432/app"
    assert settings.origin("database_url") == "environment DATABASE_URL"


def test_bad_environment_value_names_variable_and_expectation() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"FLARESTART_FETCH_CONCURRENCY": "lots"}, config_file=None)
    message = str(err.value)
    assert "fetch.concurrency" in message
    assert "environment FLARESTART_FETCH_CONCURRENCY" in message
    assert "integer" in message and "'lots'" in message


def test_out_of_range_file_value_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[fetch]\nper_host = 0\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, config_file=path)
    assert str(path) in str(err.value)
    assert "greater than or equal to 1" in str(err.value)


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[fetch]\nconcurency = 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'concurency' in \[fetch\].*'concurrency'"):
        load_settings({}, config_file=path)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[fetch\nconcurrency = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({}, config_file=path)


def test_config_variable_pointing_nowhere_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FLARESTART_CONFIG"):
        load_settings({"FLARESTART_CONFIG": str(tmp_path / "missing.toml")})


def test_sources_listed_in_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[sources]]\nname = "Python Insider"\nurl = "https://blog.python.org/feeds/posts/default"\n'
        'topics = ["python"]\n',
    )
    settings = load_settings({}, config_file=path)
    assert settings.sources is not None
    assert [s.name for s in settings.sources] == ["Python Insider"]
    assert settings.sources[0].topics == ["python"]


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("database_url", "postgresql://app:hunter2@db/app", "postgresql://app:********@db/app"),
        ("database_url", "sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("secret_key", "abc", "********"),
        ("fetch.user_agent", "FlareStartBot/1", "FlareStartBot/1"),
    ],
)
def test_secrets_are_masked(key: str, value: str, shown: str) -> None:
    assert mask(key, value) == shown


def test_describe_masks_and_says_where(tmp_path: Path) -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://app:hunter2@db/app"}, config_file=None)
    rows = {key: (value, origin) for key, value, origin in describe(settings)}
    assert rows["database_url"] == ("postgresql://app:********@db/app", "environment DATABASE_URL")
    assert "hunter2" not in repr(rows)
