"""Settings: environment (12-factor) over flarestart.toml over defaults, validated once at start.

Every value remembers where it came from, so `flarestart config show` can say it and a bad
value's error can name the variable or file that set it.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from bot import USER_AGENT
from bot.errors import ConfigError

ENV_PREFIX = "FLARESTART_"
CONFIG_FILE_NAME = "flarestart.toml"
# Variables that 12-factor platforms (Heroku and friends) set without our prefix.
UNPREFIXED_ENV = {
    "database_url": "DATABASE_URL",
    "secret_key": "SECRET_KEY",
    "email.smtp_url": "SMTP_URL",
    "web.port": "PORT",
    "slack.bot_token": "SLACK_BOT_TOKEN",
    "slack.signing_secret": "SLACK_SIGNING_SECRET",
    "slack.app_token": "SLACK_APP_TOKEN",
    "discord.bot_token": "DISCORD_BOT_TOKEN",
}
# Variables with our prefix that are not settings.
OTHER_ENV = frozenset({ENV_PREFIX + "CONFIG", ENV_PREFIX + "TEST_POSTGRES_URL"})
SECRET_WORDS = ("password", "secret", "token", "key")
SECRET_FILE_NAME = "secret_key"
LIST_SECTIONS = ("sources", "topics")  # [[sources]] and [[topics]]: arrays of tables

log = logging.getLogger(__name__)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FetchSettings(_Section):
    concurrency: int = Field(16, ge=1, le=512, description="feeds fetched at once")
    per_host: int = Field(2, ge=1, le=64, description="requests at once to one host")
    connect_timeout: float = Field(10.0, gt=0, description="seconds to open a connection")
    read_timeout: float = Field(30.0, gt=0, description="seconds between two reads")
    total_timeout: float = Field(60.0, gt=0, description="seconds for a whole response")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="body size cap")
    interval_minutes: float = Field(30.0, gt=0, description="base time between two fetches")
    max_backoff_hours: float = Field(24.0, gt=0, description="longest wait after errors")
    parse_workers: int = Field(0, ge=0, le=64, description="parser processes; 0 = one per core")
    user_agent: str = Field(USER_AGENT, min_length=1)


class RankingSettings(_Section):
    half_life_hours: float = Field(12.0, gt=0, description="freshness half-life")
    story_window_hours: float = Field(48.0, gt=0, description="same-story clustering window")
    max_items: int = Field(10, ge=1, le=50, description="items in a digest unless a subscriber says")
    max_per_source: int = Field(2, ge=1, description="items from one source in one digest")


class EmailSettings(_Section):
    smtp_url: str | None = Field(
        None, description="smtp://user:pass@host:587 (STARTTLS) or smtps://…:465; unset = outbox"
    )
    allow_plain: bool = Field(False, description="allow SMTP without TLS (local relays, tests)")
    from_address: str = Field("FlareStart <digest@flarestart.localhost>", min_length=3)
    reply_to: str | None = None
    subject: str = Field(
        "{top_title} · your developer morning",
        description="subject template: {top_title}, {date}, {count}, {name}",
    )
    postal_address: str = Field(
        "FlareStart, 1 Example Street, Springfield", description="the sender's postal address (footer)"
    )
    list_id: str = Field("FlareStart digest <digest.flarestart.localhost>")
    unsubscribe_mailto: str | None = Field(
        None, description="mailto address for List-Unsubscribe (default: the From address)"
    )
    connections: int = Field(4, ge=1, le=64, description="SMTP connections in parallel")
    rate_per_second: float | None = Field(None, gt=0, description="messages per second at most")
    timeout: float = Field(30.0, gt=0, description="seconds for one SMTP command")
    dkim_private_key_file: Path | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    template_dir: Path | None = Field(None, description="your own templates, tried before ours")
    quiet_day: Literal["skip", "note"] = Field("skip", description="what an empty digest does")


class DigestSettings(_Section):
    window_hours: float = Field(
        24.0, gt=0, le=24 * 30, description="how far back a daily digest looks, at least (weekly: 7 days)"
    )


class DeliverySettings(_Section):
    catch_up_hours: float = Field(6.0, ge=0, description="send a missed digest this late at most")
    max_attempts: int = Field(5, ge=1, description="tries for one delivery before it fails")
    lease_seconds: float = Field(120.0, gt=0, description="how long a claimed job stays ours")
    # Twice email.connections: while some sends record their outcome in the database, others
    # keep every SMTP connection busy (measured: +12% digests/s over as many as connections).
    workers: int = Field(8, ge=1, le=64, description="jobs (sends) in flight at once in one process")
    bounce_limit: int = Field(3, ge=1, description="permanent failures in a row before bouncing")


class DiscordSettings(_Section):
    bot_token: str | None = Field(
        None, description="the bot's token (DISCORD_BOT_TOKEN): channel and DM digests, `flarestart discord`"
    )
    api_url: str = Field(
        "https://discord.com/api/v10",
        pattern=r"^https?://",
        description="Discord's REST API; a stand-in's for tests, benchmarks and staging",
    )
    template_dir: Path | None = Field(None, description="your own Discord templates, tried before ours")


class WebSettings(_Section):
    base_url: str = Field("http://localhost:8000", description="public URL of `flarestart serve`")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    metrics_token: str | None = Field(
        None, min_length=16, description="bearer token that GET /metrics requires; unset = /metrics is off"
    )
    # What `flarestart serve` grants one client (bot/web/server.py): slow or idle ones are closed.
    header_timeout: float = Field(10.0, gt=0, description="seconds for a request's headers to arrive")
    body_timeout: float = Field(20.0, gt=0, description="seconds for a request's body to arrive")
    keepalive_timeout: int = Field(5, ge=1, description="seconds an idle connection is kept open")
    max_connections: int = Field(1000, ge=1, description="connections at once; more get a 503")
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="unfinished request line and headers at most"
    )
    # Sign-up and the public archive (bot/web/public.py). Lists also read "a,b,c" from the environment.
    embed_origins: list[str] = Field(
        default_factory=list,
        description="other sites (https://blog.example.com) whose pages may post the sign-up form",
    )
    signup_topics: list[str] = Field(
        default_factory=lambda: ["programming", "ai", "web-development"],
        description="topics the sign-up form has ticked to begin with",
    )
    signups_per_ip_hour: int = Field(
        20, ge=1, description="sign-up posts one client address may make an hour"
    )
    signups_per_address_day: int = Field(3, ge=1, description="sign-up mails one email address gets a day")
    signup_mail_wait: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="seconds a sign-up mail waits for `flarestart run` before `serve` sends it itself (0: at once)",
    )
    archive_title: str = Field("FlareStart daily", min_length=1, description="the public archive's name")
    archive_topics: list[str] = Field(
        default_factory=lambda: ["programming", "ai", "web-development", "security", "devops"],
        description="the topics of the public daily digest shown at /archive",
    )
    archive_days: int = Field(14, ge=1, le=366, description="days the public archive goes back")
    archive_items: int = Field(12, ge=1, le=50, description="articles in one day of the archive")

    @field_validator("embed_origins", "signup_topics", "archive_topics", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("embed_origins")
    @classmethod
    def _origins_only(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ValueError(f"{origin!r} is not an origin like https://blog.example.com (no path)")
        return [origin.lower() for origin in value]


class SlackSettings(_Section):
    """The Slack app. Secrets come from the environment (or a file kept out of git); webhook URLs
    never appear here: a subscriber file names the variable that holds one."""

    bot_token: str | None = Field(
        None, description="the app's xoxb-… bot token (SLACK_BOT_TOKEN): posts digests to channels"
    )
    signing_secret: str | None = Field(
        None, description="verifies Slack's requests to /slack/commands (SLACK_SIGNING_SECRET)"
    )
    app_token: str | None = Field(None, description="xapp-… token for Socket Mode (SLACK_APP_TOKEN)")
    api_url: str = Field(
        "https://slack.com/api/",
        pattern=r"^https?://",
        description="Slack Web API base URL (a stand-in for tests, benchmarks, staging)",
    )
    thread: bool = Field(False, description="post a digest's header, then its items as replies")
    template_dir: Path | None = Field(None, description="your own Slack templates, tried before ours")


class SourceSeed(_Section):
    """A source the configuration asks for (replaces the shipped defaults when given)."""

    name: str = Field(min_length=1)
    url: str = Field(min_length=1)
    topics: list[str] = Field(default_factory=list)
    weight: float = Field(1.0, gt=0)
    category: str | None = None


class UserTopic(_Section):
    """A topic of the user's own: `[[topics]] name = "Rust in Prod", phrases = ["rust in production"]`."""

    name: str = Field(min_length=1)
    slug: str | None = None
    phrases: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    not_phrases: list[str] = Field(default_factory=list)


class Settings(_Section):
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("flarestart", appauthor=False)),
        description="where the SQLite database and outbox live",
    )
    database_url: str | None = Field(None, description="overrides the SQLite file in data_dir")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    allow_private_urls: bool = Field(
        False, description="allow private/loopback addresses for untrusted sources"
    )
    prune_after_days: int = Field(30, ge=1, description="articles older than this are pruned")
    secret_key: str | None = Field(
        None, min_length=16, description="signs unsubscribe/confirm links; unset = a key kept in data_dir"
    )
    subscribers_dir: Path = Field(Path("subscribers"), description="TOML subscriber files to sync")
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    ranking: RankingSettings = Field(default_factory=RankingSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)
    digest: DigestSettings = Field(default_factory=DigestSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    web: WebSettings = Field(default_factory=WebSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    sources: list[SourceSeed] | None = Field(
        None, description="sources to seed on first run (default: FlareStart's own list)"
    )
    topics: list[UserTopic] = Field(default_factory=list, description="your own topics")

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    def origin(self, key: str) -> str:
        """Where the value of a dotted key came from: 'default', a variable or a file."""
        return self._origins.get(key, "default")

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "flarestart.db"

    @property
    def secret_key_file(self) -> Path:
        """Where the signing key is kept when secret_key is not set (bot/links/secret.py)."""
        return self.data_dir / SECRET_FILE_NAME

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.database_path}"


def _section_models() -> dict[str, type[_Section]]:
    return {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
    }


def env_name(key: str) -> str:
    """The environment variable for a dotted settings key: fetch.per_host → FLARESTART_FETCH_PER_HOST."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def _scalar_keys() -> list[str]:
    keys = []
    sections = _section_models()
    for name in Settings.model_fields:
        if name in sections:
            keys += [f"{name}.{sub}" for sub in sections[name].model_fields]
        elif name not in ("sources", "topics"):
            keys.append(name)
    return keys


def find_config_file(env: Mapping[str, str]) -> Path | None:
    explicit = env.get(ENV_PREFIX + "CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_PREFIX}CONFIG points at {path}, which is not a file")
        return path
    local = Path.cwd() / CONFIG_FILE_NAME
    return local if local.is_file() else None


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The file's data and its text (for line numbers in errors)."""
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc


def _check_known(data: Mapping[str, Any], path: Path, text: str) -> None:
    """Refuse keys and sections that name no setting: a typo would otherwise be silently ignored.
    The error names the file, line and section, and the closest known name."""
    sections = _section_models()
    lines = _key_lines(text)

    def where(section: str, key: str) -> str:
        line = lines.get((section, key))
        return f"{path}:{line}" if line else str(path)

    for key, value in data.items():
        if key in sections and isinstance(value, Mapping):
            fields = sections[key].model_fields
            for sub in value:
                if sub not in fields:
                    raise ConfigError(
                        f"{where(key, sub)}: unknown setting '{sub}' in [{key}]"
                        + (_belongs_elsewhere(sub, key) or _did_you_mean(sub, fields))
                    )
        elif key in LIST_SECTIONS and isinstance(value, list):
            model: type[_Section] = UserTopic if key == "topics" else SourceSeed
            for number, entry in enumerate(value, 1):
                for sub in entry if isinstance(entry, Mapping) else ():
                    if sub not in model.model_fields:
                        raise ConfigError(
                            f"{where(key, sub)}: unknown setting '{sub}' in [[{key}]] #{number}"
                            f"{_did_you_mean(sub, model.model_fields)}"
                        )
        elif key not in Settings.model_fields:
            if isinstance(value, Mapping):
                close = difflib.get_close_matches(key, [*sections, *LIST_SECTIONS], n=1)
                hint = f" (did you mean [{close[0]}]?)" if close else ""
                raise ConfigError(f"{where(key, '')}: unknown section [{key}]{hint}")
            raise ConfigError(
                f"{where('', key)}: unknown setting '{key}' at the top level"
                + (_belongs_elsewhere(key, "") or _did_you_mean(key, Settings.model_fields))
            )


def _belongs_elsewhere(key: str, section: str) -> str:
    """TOML's classic slip: a key written below the wrong [section] header."""
    if section and key in Settings.model_fields and key not in _section_models():
        return " (it is a top-level setting: put it above the first [section])"
    for name, model in _section_models().items():
        if name != section and key in model.model_fields:
            return f" (it belongs in [{name}])"
    return ""


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """(section, key) → the line it is first written on; (section, '') is the header's line.
    Enough for errors to point at the line: tomllib does not tell where a value was."""
    lines: dict[tuple[str, str], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        if header := _HEADER.match(line):
            section = header.group(1)
            lines.setdefault((section, ""), number)
        elif key := _KEY.match(line):
            lines.setdefault((section, key.group(1)), number)
    return lines


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def load_settings(env: Mapping[str, str] | None = None, *, config_file: Path | None = None) -> Settings:
    """Build the one Settings object. Raises ConfigError naming the bad key and its origin."""
    env = os.environ if env is None else env
    path = config_file if config_file is not None else find_config_file(env)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if path is not None:
        data, text = _read_toml(path)
        _check_known(data, path, text)
        for key, value in data.items():
            values[key] = dict(value) if isinstance(value, Mapping) else value
            if isinstance(value, Mapping):
                origins.update({f"{key}.{sub}": f"{path} [{key}]" for sub in value})
            else:
                origins[key] = str(path)
    for key in _scalar_keys():
        names = [env_name(key)]
        if key in UNPREFIXED_ENV:
            names.insert(0, UNPREFIXED_ENV[key])
        for name in names:
            if env.get(name):
                section, _, sub = key.rpartition(".")
                target = values.setdefault(section, {}) if section else values
                target[sub] = env[name]
                origins[key] = f"environment {name}"
                break
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origins)) from None
    settings._origins = origins
    return settings


def unknown_environment(env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """FLARESTART_* variables that name no setting, each with the closest name that does."""
    known = {env_name(key) for key in _scalar_keys()} | OTHER_ENV
    # Compared without the prefix, which every name shares and which would make all look close.
    suffixes = {name.removeprefix(ENV_PREFIX): name for name in known}
    found = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1)
            found.append((name, suffixes[close[0]] if close else None))
    return found


def warn_unknown_environment(env: Mapping[str, str] | None = None) -> None:
    """Log a warning per FLARESTART_* variable that sets nothing: a typo would be ignored silently.
    Called once logging is set up (the CLI does), since settings decide how logs look."""
    for name, close in unknown_environment(os.environ if env is None else env):
        hint = f" (did you mean {close}?)" if close else ""
        log.warning(
            f"environment variable {name} is not a setting and is ignored{hint}",
            extra={"variable": name, "did_you_mean": close or ""},
        )


def _explain(exc: ValidationError, origins: Mapping[str, str]) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        top = ".".join(str(part) for part in error["loc"][:2])
        where = origins.get(key) or origins.get(top) or origins.get(str(error["loc"][0]), "default")
        given = error.get("input")
        shown = f", got {given!r}" if not isinstance(given, dict | list) else ""
        lines.append(f"setting '{key}' from {where}: {error['msg'].lower()}{shown}")
    return "; ".join(lines)


def mask(key: str, value: object) -> object:
    """Hide secrets: passwords inside URLs and any key named like a secret."""
    if value is None:
        return None
    text = str(value)
    last = key.rsplit(".", 1)[-1]
    if any(word in last for word in SECRET_WORDS) and not last.endswith("_file"):
        return "********"
    if "://" in text and "@" in text:
        scheme, rest = text.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:********@{host}" if ":" in creds else text
    return value


def _secret_key_file(settings: Settings) -> tuple[str, str]:
    """Where the key lives when no setting gives it: its file, never its text."""
    path = settings.secret_key_file
    if path.is_file():
        return f"(file {path})", "made on first use, kept in data_dir"
    return f"(none yet: made in {path} on first use)", "default"


def describe(settings: Settings) -> list[tuple[str, object, str]]:
    """(key, masked value, origin) for every scalar setting, for `config show`."""
    rows: list[tuple[str, object, str]] = []
    for key in _scalar_keys():
        section, _, sub = key.rpartition(".")
        holder: Any = getattr(settings, section) if section else settings
        if key == "secret_key" and settings.secret_key is None:
            rows.append((key, *_secret_key_file(settings)))
            continue
        rows.append((key, mask(key, getattr(holder, sub)), settings.origin(key)))
    rows.append(("database (effective)", mask("database_url", settings.effective_database_url), ""))
    sources = settings.sources
    rows.append(
        (
            "sources",
            f"{len(sources)} configured" if sources is not None else "FlareStart defaults",
            settings.origin("sources"),
        )
    )
    return rows
