"""Settings: layering, provenance, clear errors, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import describe, load_settings, mask, warn_unknown_environment
from bot.errors import ConfigError
from bot.links.secret import resolve_secret


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


def test_unknown_section_is_named_with_its_line_and_the_close_one(tmp_path: Path) -> None:
    path = write(tmp_path, 'log_format = "json"\n\n[fetchh]\nconcurrency = 3\n')
    with pytest.raises(ConfigError) as err:
        load_settings({}, config_file=path)
    assert str(err.value) == f"{path}:3: unknown section [fetchh] (did you mean [fetch]?)"


def test_a_key_below_the_wrong_header_says_where_it_belongs(tmp_path: Path) -> None:
    path = write(tmp_path, '[fetch]\nconcurrency = 3\nlog_format = "json"\nsmtp_url = "smtp://x"\n')
    with pytest.raises(ConfigError) as err:
        load_settings({}, config_file=path)
    assert str(err.value) == (
        f"{path}:3: unknown setting 'log_format' in [fetch] "
        "(it is a top-level setting: put it above the first [section])"
    )
    path = write(tmp_path, 'smtp_url = "smtp://relay:25"\n')
    with pytest.raises(
        ConfigError, match=r":1: unknown setting 'smtp_url' at the top level \(it belongs in \[email\]\)"
    ):
        load_settings({}, config_file=path)


def test_a_typo_in_a_listed_source_names_the_entry(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[sources]]\nname = "A"\nurl = "https://a.example/feed"\n\n'
        '[[sources]]\nname = "B"\nurll = "https://b.example/feed"\n',
    )
    with pytest.raises(ConfigError) as err:
        load_settings({}, config_file=path)
    assert "unknown setting 'urll' in [[sources]] #2 (did you mean 'url'?)" in str(err.value)
    assert str(err.value).startswith(f"{path}:7:")


def test_unknown_environment_variables_are_warned_about_with_the_close_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {
        "FLARESTART_FETCH_CONCURENCY": "8",
        "FLARESTART_FETCH_CONCURRENCY": "4",
        "FLARESTART_CONFIG": "x.toml",
        "FLARESTART_WIBBLE": "1",
        "PATH": "/bin",
    }
    with caplog.at_level("WARNING", logger="bot.config"):
        warn_unknown_environment(env)
    warned = {record.variable: record.did_you_mean for record in caplog.records}  # type: ignore[attr-defined]
    assert warned == {"FLARESTART_FETCH_CONCURENCY": "FLARESTART_FETCH_CONCURRENCY", "FLARESTART_WIBBLE": ""}
    assert "FLARESTART_FETCH_CONCURENCY is not a setting" in caplog.records[0].getMessage()
    assert "did you mean FLARESTART_FETCH_CONCURRENCY?" in caplog.records[0].getMessage()


def test_describe_says_where_the_secret_key_lives_never_the_key(tmp_path: Path) -> None:
    settings = load_settings({"FLARESTART_DATA_DIR": str(tmp_path)}, config_file=None)
    rows = {key: (value, origin) for key, value, origin in describe(settings)}
    assert rows["secret_key"][0] == f"(none yet: made in {tmp_path / 'secret_key'} on first use)"

    key = resolve_secret(settings)  # what the first signed link does
    rows = {key: (value, origin) for key, value, origin in describe(settings)}
    assert rows["secret_key"][0] == f"(file {tmp_path / 'secret_key'})"
    assert key.decode() not in repr(rows)

    settings = load_settings({"SECRET_KEY": "s3cret-s3cret-s3cret"}, config_file=None)
    rows = {key: (value, origin) for key, value, origin in describe(settings)}
    assert rows["secret_key"] == ("********", "environment SECRET_KEY")


def test_slack_secrets_come_from_slacks_own_variables_and_are_masked(tmp_path: Path) -> None:
    env = {
        "FLARESTART_DATA_DIR": str(tmp_path),
        "SLACK_BOT_TOKEN": "xoxb-1234-5678-secretbits",
        "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
        "SLACK_APP_TOKEN": "xapp-1-A111-222-secret",
        "FLARESTART_SLACK_API_URL": "http://127.0.0.1:9/api/",
    }
    settings = load_settings(env)
    assert (settings.slack.bot_token, settings.slack.api_url) == (
        env["SLACK_BOT_TOKEN"],
        "http://127.0.0.1:9/api/",
    )
    rows = {key: (value, origin) for key, value, origin in describe(settings)}
    for key, variable in (
        ("slack.bot_token", "SLACK_BOT_TOKEN"),
        ("slack.signing_secret", "SLACK_SIGNING_SECRET"),
        ("slack.app_token", "SLACK_APP_TOKEN"),
    ):
        assert rows[key] == ("********", f"environment {variable}")
    assert rows["slack.thread"] == (False, "default")
    assert not any(
        env[name] in repr(rows) for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN")
    )
    assert load_settings({"FLARESTART_DATA_DIR": str(tmp_path)}).slack.api_url == "https://slack.com/api/"
