"""Subscriber files as a user writes them: valid ones load, each mistake names its file and line."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import time
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.subscribers.files import (
    SubscriberFileError,
    SubscriberSpec,
    load_subscriber_files,
    make_spec,
    normalize_email,
)
from bot.types import Destination

REPO = Path(__file__).resolve().parents[2]

TEAM = """\
# The team
[[subscriber]]
email = "Ada@Example.com"
name = "Ada"
timezone = "Europe/Berlin"
delivery_time = "06:45"
frequency = "weekdays"
topics = ["python", "AI"]
mute = { topics = ["crypto"], keywords = ["layoffs"], sources = ["TechCrunch"] }
source_weights = { "Hacker News" = 2 }
max_items = 15

[[subscriber]]
email = "grace@example.com"
topics = { rust = 2.0, linux = 0.5 }

[subscriber.mute]
keywords = ["rumour"]

[[subscriber]]
email = "linus@example.com"
timezone = "Asia/Kolkata"
delivery_time = 18:30:00
frequency = "weekly:Sunday"
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(folder: Path, **options: object) -> list[str]:
    with pytest.raises(SubscriberFileError) as caught:
        load_subscriber_files(folder, **options)  # type: ignore[arg-type]
    return [str(problem) for problem in caught.value.problems]


def test_a_file_with_several_subscribers_loads_normalised(tmp_path: Path) -> None:
    write(tmp_path, "team.toml", TEAM)
    ada, grace, linus = load_subscriber_files(tmp_path)
    assert ada == SubscriberSpec(
        destination=Destination.email("ada@example.com"),
        name="Ada",
        timezone="Europe/Berlin",
        delivery_time=time(6, 45),
        frequency="weekdays",
        topics={"python": 1.0, "ai": 1.0},
        muted_topics=("crypto",),
        muted_keywords=("layoffs",),
        muted_sources=("TechCrunch",),
        source_weights={"Hacker News": 2.0},
        max_items=15,
        origin=ada.origin,
    )
    assert ada.origin.startswith("file:") and ada.origin.endswith("team.toml")
    assert (grace.topics, grace.muted_keywords, grace.timezone, grace.delivery_time, grace.frequency) == (
        {"rust": 2.0, "linux": 0.5},
        ("rumour",),
        "UTC",
        time(7, 0),
        "daily",
    )
    assert (linus.delivery_time, linus.frequency, linus.max_items) == (time(18, 30), "weekly:sun", 10)


def test_origins_are_relative_to_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "subscribers", "team.toml", '[[subscriber]]\nemail = "a@example.com"\n')
    monkeypatch.chdir(tmp_path)
    [spec] = load_subscriber_files(Path("subscribers"))
    assert spec.origin == "file:subscribers/team.toml"


def test_several_files_load_in_name_order_and_the_example_is_skipped(tmp_path: Path) -> None:
    write(tmp_path, "b.toml", '[[subscriber]]\nemail = "b@example.com"\n')
    write(tmp_path, "a.toml", '[[subscriber]]\nemail = "a@example.com"\n')
    write(tmp_path, "example.toml", '[[subscriber]]\nemail = "x@example.com"\n')
    write(tmp_path, "notes.txt", "not a subscriber file")
    assert [s.email for s in load_subscriber_files(tmp_path)] == ["a@example.com", "b@example.com"]
    everything = load_subscriber_files(tmp_path, include_examples=True)
    assert [s.email for s in everything] == ["a@example.com", "b@example.com", "x@example.com"]


def test_the_shipped_example_is_valid_and_shows_every_option() -> None:
    specs = load_subscriber_files(REPO / "subscribers", include_examples=True)
    assert len(specs) == 4
    assert [spec.ref for spec in specs if spec.email is None] == ["slack:C0123ABCD"]
    assert all(spec.email.endswith("@example.com") for spec in specs if spec.email is not None)
    assert {s.frequency for s in specs} == {"daily", "weekdays", "weekly:sun"}
    assert any(s.muted_topics and s.muted_keywords and s.muted_sources and s.source_weights for s in specs)
    assert any(s.topics and len(set(s.topics.values())) > 1 for s in specs)  # weighted topics


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ('email = "ada@@example.com"', 3, "'ada@@example.com' is not an email address"),
        ('email = "ada@example"', 3, "is not an email address"),
        ('timezone = "Europe/Berln"', 4, "did you mean 'Europe/Berlin'?"),
        ('timezone = "CEST+2"', 4, "not an IANA time zone"),
        ('timezone = "localtime"', 4, "not an IANA time zone"),
        ('timezone = "Factory"', 4, "not an IANA time zone"),
        ('timezone = "right/UTC"', 4, "not an IANA time zone"),
        ('delivery_time = "7am"', 4, "HH:MM"),
        ('delivery_time = "25:00"', 4, "HH:MM"),
        ('frequency = "weekly"', 4, "weekly:mon"),
        ('frequency = "monthly"', 4, "daily, weekdays or weekly:mon"),
        ("max_items = 0", 4, "from 1 to 50"),
        ("max_items = 51", 4, "from 1 to 50"),
        ('max_items = "ten"', 4, "from 1 to 50"),
        ("topics = [1, 2]", 4, "topics must be a list of topic slugs"),
        ('topics = ["machine learning"]', 4, "not a topic slug"),
        ("topics = { python = -1 }", 4, "above 0"),
        ('mute = { topic = ["x"] }', 4, "did you mean 'topics'?"),
        ('timezon = "UTC"', 4, "unknown key 'timezon' (did you mean 'timezone'?)"),
        ('slack = { channel = "general" }', 4, "exactly one destination, got email and slack"),
    ],
)
def test_each_mistake_names_file_and_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    # line 1: a comment, line 2: the header, line 3: the email, line 4: the mistake
    email = "" if body.startswith("email") else 'email = "ada@example.com"\n'
    path = write(tmp_path, "team.toml", f"# comment\n[[subscriber]]\n{email}{body}\n")
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{path}:{line}: ")
    assert message in problem


def test_a_missing_email_names_the_table(tmp_path: Path) -> None:
    path = write(
        tmp_path, "team.toml", '[[subscriber]]\nemail = "a@example.com"\n\n[[subscriber]]\nname = "Nobody"\n'
    )
    assert problems_of(tmp_path) == [f"{path}:4: subscriber has no destination: give email, slack or discord"]


def test_keys_are_found_in_the_right_table_and_sub_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "team.toml",
        """\
[[subscriber]]
email = "a@example.com"
topics = ["python"]

[[subscriber]]
email = "b@example.com"
topics = ["python"]
timezone = "Mars/Olympus"

[subscriber.mute]
keywords = ["fine"]
topics = ["Not A Slug"]
""",
    )
    assert problems_of(tmp_path) == [
        f"{path}:8: b@example.com: time zone 'Mars/Olympus' is not an IANA time zone name "
        "(like 'Europe/Berlin' or 'America/New_York')",
        f"{path}:12: b@example.com: 'not a slug' is not a topic slug (lowercase letters, digits, -)",
    ]


def test_dotted_keys_and_multi_line_arrays_are_placed_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "team.toml",
        """\
[[subscriber]]
email = "a@example.com"
max_items = 0
topics = [
  "python",
]
mute.keywords = ["x"]
mute.sources = "TechCrunch"
""",
    )
    assert [p.split(": a@example.com: ")[0] for p in problems_of(tmp_path)] == [f"{path}:3", f"{path}:8"]


def test_all_problems_of_all_files_are_reported_together(tmp_path: Path) -> None:
    one = write(tmp_path, "one.toml", '[[subscriber]]\nemail = "a@example.com"\nfrequency = "hourly"\n')
    two = write(tmp_path, "two.toml", '[[subscriber]]\nemail = "b@example.com"\nmax_items = 99\n')
    problems = problems_of(tmp_path)
    assert [p.split(": ")[0] for p in problems] == [f"{one}:3", f"{two}:3"]


def test_the_same_email_in_two_files_names_both(tmp_path: Path) -> None:
    first = write(tmp_path, "a.toml", '# team A\n[[subscriber]]\nemail = "ada@example.com"\n')
    second = write(
        tmp_path,
        "b.toml",
        '[[subscriber]]\nemail = "x@example.com"\n[[subscriber]]\nemail = "ADA@example.com"\n',
    )
    assert problems_of(tmp_path) == [f"{second}:3: ada@example.com is already a subscriber at {first}:2"]


def test_the_same_email_twice_in_one_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.toml",
        '[[subscriber]]\nemail = "ada@example.com"\n[[subscriber]]\nemail = "ada@example.com"\n',
    )
    assert problems_of(tmp_path) == [f"{path}:3: ada@example.com is already a subscriber at line 1"]


def test_broken_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "team.toml", '[[subscriber]]\nemail = "a@example.com"\nname = Ada\n')
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{path}:3: not valid TOML")


def test_unknown_tables_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "team.toml", '\n[[subscribers]]\nemail = "a@example.com"\n')
    assert problems_of(tmp_path) == [
        f"{path}:2: unknown table or key 'subscribers' (did you mean [[subscriber]]?)"
    ]


def test_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_subscriber_files(tmp_path / "nowhere")


def test_unknown_topics_come_from_the_callback_with_file_and_line(tmp_path: Path) -> None:
    known = {"python", "ai", "rust"}
    seen: list[list[str]] = []

    def validate_topics(slugs: Iterable[str]) -> None:
        slugs = list(slugs)
        seen.append(slugs)
        unknown = [s for s in slugs if s not in known]
        if unknown:
            raise ConfigError(f"unknown topic {unknown[0]!r}")

    path = write(
        tmp_path,
        "team.toml",
        """\
[[subscriber]]
email = "a@example.com"
topics = ["python", "ai"]

[[subscriber]]
email = "b@example.com"
name = "B"
topics = { rust = 1.0, pythn = 2.0 }
mute = { keywords = ["x"], topics = ["blockchain"] }
""",
    )
    problems = problems_of(tmp_path, validate_topics=validate_topics)
    assert problems == [
        f"{path}:8: b@example.com: unknown topic 'pythn'",
        f"{path}:9: b@example.com: unknown topic 'blockchain'",
    ]
    assert ["python", "ai"] in seen


def test_make_spec_validates_cli_values() -> None:
    spec = make_spec(
        email=" Ada@Example.COM ", timezone="Asia/Kolkata", delivery_time="7:30", topics={"ai": 2.0}
    )
    assert (spec.email, spec.delivery_time, spec.topics, spec.origin) == (
        "ada@example.com",
        time(7, 30),
        {"ai": 2.0},
        "cli",
    )
    with pytest.raises(ConfigError) as caught:
        make_spec(email="ada", timezone="Nowhere/City", frequency="sometimes")
    message = str(caught.value)
    assert "'ada' is not an email address" in message
    assert "Nowhere/City" in message and "frequency" in message


@pytest.mark.parametrize(
    "address",
    ["a@example.com", "first.last+tag@sub.example.co.uk", "o'neil@example.org", "x_y-z@my-host.example"],
)
def test_reasonable_addresses_pass(address: str) -> None:
    assert normalize_email(address) == address.lower()


@pytest.mark.parametrize(
    "address",
    [
        "plain",
        "@example.com",
        "a@",
        "a b@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a@-x.com",
        "a@x.c",
    ],
)
def test_unreasonable_addresses_fail(address: str) -> None:
    with pytest.raises(ValueError, match="not an email address"):
        normalize_email(address)


def test_the_shipped_example_names_only_real_default_sources() -> None:
    from bot.sources.defaults import DEFAULT_SOURCES

    defaults = {source.name for source in DEFAULT_SOURCES}
    specs = load_subscriber_files(REPO / "subscribers", include_examples=True, known_sources=defaults)
    named = {name for s in specs for name in (*s.muted_sources, *s.source_weights)}
    assert named and named <= defaults


def test_unknown_sources_are_problems_at_their_line_with_the_closest_names(tmp_path: Path) -> None:
    write(
        tmp_path,
        "team.toml",
        """\
[[subscriber]]
email = "ada@example.com"
mute = { sources = ["techcrunch", "Slashdot"] }
source_weights = { "Hacker Noon" = 1.5 }
""",
    )
    known = {"TechCrunch", "HackerNoon", "The Verge"}

    with pytest.raises(SubscriberFileError) as raised:
        load_subscriber_files(tmp_path, known_sources=known)

    problems = [(p.line, p.message) for p in raised.value.problems]
    assert problems == [
        (
            3,
            "ada@example.com: mute.sources: unknown source 'Slashdot' (`flarestart sources list` shows the names)",
        ),
        (4, "ada@example.com: source_weights: unknown source 'Hacker Noon' (did you mean 'HackerNoon'?)"),
    ]
    # Case does not matter, and unchecked loading (no known sources) still accepts any name.
    assert load_subscriber_files(tmp_path)[0].muted_sources == ("techcrunch", "Slashdot")


def test_make_spec_checks_source_names_too() -> None:
    with pytest.raises(ConfigError, match="unknown source 'Hacker News'"):
        make_spec(email="ada@example.com", muted_sources=["Hacker News"], known_sources={"HackerNoon"})
