"""OPML import and export.

Import cases are data: `opml_cases/NAME.opml` next to `NAME.json`, which holds either the expected
`{"feeds": [...], "problems": [...]}` or `{"error": "text the OPMLError message contains"}`.
Adding a case is adding two files.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from bot.errors import OPMLError
from bot.sources.opml import OutlineFeed, export_opml, parse_opml

CASES = Path(__file__).parent / "opml_cases"
CASE_NAMES = sorted(path.stem for path in CASES.glob("*.opml"))


def load_case(name: str) -> tuple[bytes, dict[str, Any]]:
    expected: dict[str, Any] = json.loads((CASES / f"{name}.json").read_text("utf-8"))
    return (CASES / f"{name}.opml").read_bytes(), expected


def feed_from_json(item: dict[str, Any]) -> OutlineFeed:
    return OutlineFeed(
        url=item["url"],
        name=item["name"],
        site_url=item["site_url"],
        category=item["category"],
        topics=tuple(item["topics"]),
        weight=float(item["weight"]),
    )


def test_every_case_has_its_expected_result() -> None:
    assert CASE_NAMES, "no OPML cases found"
    for name in CASE_NAMES:
        assert (CASES / f"{name}.json").is_file(), f"{name}.opml has no {name}.json"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_parse_opml_case(name: str) -> None:
    data, expected = load_case(name)
    origin = f"{name}.opml"

    if "error" in expected:
        with pytest.raises(OPMLError) as caught:
            parse_opml(data, origin=origin)
        assert expected["error"] in str(caught.value)
        return

    feeds, problems = parse_opml(data, origin=origin)

    assert feeds == [feed_from_json(item) for item in expected["feeds"]]
    assert problems == expected["problems"]


@pytest.mark.parametrize("name", [n for n in CASE_NAMES if "error" not in load_case(n)[1]])
def test_exporting_a_parsed_case_reads_back_the_same(name: str) -> None:
    feeds, _ = parse_opml(load_case(name)[0])
    grouped = parse_opml(export_opml(feeds))[0]

    # Export groups feeds by folder; once grouped, a round trip changes nothing at all.
    assert sorted(grouped, key=repr) == sorted(feeds, key=repr)
    assert parse_opml(export_opml(grouped)) == (grouped, [])


def test_parse_accepts_text_as_well_as_bytes_free_of_declaration() -> None:
    data = b'<opml><body><outline xmlUrl="http://a.example.com/"/></body></opml>'

    feeds, problems = parse_opml(data)

    assert feeds == [OutlineFeed("http://a.example.com/", "a.example.com", None, None)]
    assert problems == []


def test_parse_error_names_the_default_origin() -> None:
    with pytest.raises(OPMLError, match=r"^<opml>: line 1: "):
        parse_opml(b"<html/>")


def test_a_deeply_nested_file_does_not_exhaust_the_stack() -> None:
    depth = 200  # libxml2's own depth limit (256 without huge_tree) is the real guard
    data = (
        b"<opml><body>"
        + b'<outline text="f">' * depth
        + b'<outline xmlUrl="https://deep.example.com/rss" text="Deep"/>'
        + b"</outline>" * depth
        + b"</body></opml>"
    )

    feeds, _ = parse_opml(data)

    assert feeds[0].category == "/".join(["f"] * depth)


# Export


TRICKY_NAMES = [
    "Ben & Jerry's <Dev> Blog",
    "Quotes \"double\" and 'single'",
    "]]> CDATA end",
    "&amp; already escaped",
    "Café crème — naïve résumé",
    "日本語のニュース",
    "עברית ومرحبا",
    "Emoji 🚀🔥 feed",
    "Line\nbreak and\ttab",
    "Percent %20 and back\\slash",
    "#hash ?query",
]


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_tricky_names_round_trip(name: str) -> None:
    feeds = [
        OutlineFeed(
            url="https://x.example.com/feed?a=1&b=<2>",
            name=name,
            site_url="https://x.example.com/?q=\"quoted\"&x='y'",
            category=f"{name.replace('/', ' ')}/Inner & <Deep>",
            topics=("c++", "a&b", "<xml>"),
            weight=0.1,
        )
    ]

    assert parse_opml(export_opml(feeds)) == (feeds, [])


def test_nested_categories_round_trip_and_share_one_folder_each() -> None:
    feeds = [
        OutlineFeed("https://a.example.com/rss", "A", None, "Tech"),
        OutlineFeed("https://b.example.com/rss", "B", None, "Tech/Python", ("python",), 2.0),
        OutlineFeed("https://c.example.com/rss", "C", "https://c.example.com/", "Tech/Python"),
        OutlineFeed("https://d.example.com/rss", "D", None, "Tech/Python/Async"),
        OutlineFeed("https://e.example.com/rss", "E", None, "Tech"),
        OutlineFeed("https://f.example.com/rss", "F", None, None),
        OutlineFeed("https://g.example.com/rss", "G", None, "Science"),
    ]

    data = export_opml(feeds)
    outlines = etree.fromstring(data).iter("outline")
    folders = [o.get("text") for o in outlines if o.get("xmlUrl") is None]

    assert parse_opml(data) == (feeds, [])
    assert folders == ["Tech", "Python", "Async", "Science"]


def test_export_groups_interleaved_categories_keeping_order_inside_each() -> None:
    feeds = [
        OutlineFeed("https://1.example.com/", "1", None, "X"),
        OutlineFeed("https://2.example.com/", "2", None, None),
        OutlineFeed("https://3.example.com/", "3", None, "X"),
        OutlineFeed("https://4.example.com/", "4", None, "Y"),
        OutlineFeed("https://5.example.com/", "5", None, "X/Z"),
    ]

    names = [feed.name for feed in parse_opml(export_opml(feeds))[0]]

    assert names == ["1", "3", "5", "2", "4"]


def test_export_writes_opml_2_head_and_rss_outlines() -> None:
    now = datetime(2024, 3, 5, 7, 8, 9, tzinfo=UTC)
    feeds = [
        OutlineFeed("https://a.example.com/rss", "Plain", None, None),
        OutlineFeed("https://b.example.com/rss", "Tuned", "https://b.example.com/", "T", ("ai",), 2.5),
    ]

    data = export_opml(feeds, title="Team feeds", now=now)
    root = etree.fromstring(data)
    plain, tuned = (o for o in root.iter("outline") if o.get("xmlUrl"))

    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<opml")
    assert b"\n  <head>\n" in data  # indented for people who read it
    assert root.get("version") == "2.0"
    assert root.findtext("head/title") == "Team feeds"
    assert root.findtext("head/dateCreated") == "Tue, 05 Mar 2024 07:08:09 +0000"
    assert dict(plain.items()) == {
        "type": "rss",
        "text": "Plain",
        "title": "Plain",
        "xmlUrl": "https://a.example.com/rss",
    }
    assert dict(tuned.items()) == {
        "type": "rss",
        "text": "Tuned",
        "title": "Tuned",
        "xmlUrl": "https://b.example.com/rss",
        "htmlUrl": "https://b.example.com/",
        "topics": "ai",
        "weight": "2.5",
    }


def test_export_date_keeps_the_offset_and_reads_naive_times_as_utc() -> None:
    paris = timezone(timedelta(hours=1))
    aware = etree.fromstring(export_opml([], now=datetime(2024, 1, 2, 3, 4, 5, tzinfo=paris)))
    naive = etree.fromstring(export_opml([], now=datetime(2024, 1, 2, 3, 4, 5)))

    assert aware.findtext("head/dateCreated") == "Tue, 02 Jan 2024 03:04:05 +0100"
    assert naive.findtext("head/dateCreated") == "Tue, 02 Jan 2024 03:04:05 +0000"


def test_export_drops_characters_xml_cannot_hold() -> None:
    feeds = [OutlineFeed("https://a.example.com/rss", "Bell\x07 and \x00null\ud800", None, None)]

    assert parse_opml(export_opml(feeds))[0][0].name == "Bell and null"


def test_export_of_nothing_is_a_valid_empty_list() -> None:
    assert parse_opml(export_opml([])) == ([], [])


# A seeded property test (hypothesis is not installed): random feeds from an alphabet of awkward
# characters, in random category order.

ALPHABET = "ab Z09&<>\"'/é日🚀-_.,;:!?%#\t"


def random_text(rng: random.Random, *, allow: str = ALPHABET) -> str:
    text = "".join(rng.choice(allow) for _ in range(rng.randint(1, 12))).strip()
    return text or "x"


def random_category(rng: random.Random) -> str | None:
    if rng.random() < 0.2:
        return None
    segments = [random_text(rng, allow=ALPHABET.replace("/", "")) for _ in range(rng.randint(1, 3))]
    return "/".join(segments)


def random_feed(rng: random.Random, index: int) -> OutlineFeed:
    return OutlineFeed(
        url=f"https://h{index}.example.com/{random_text(rng, allow='abc&=?/%')}",
        name=random_text(rng),
        site_url=rng.choice([None, f"https://site{index}.example.com/?a=1&b=2"]),
        category=random_category(rng),
        topics=tuple(random_text(rng, allow=ALPHABET.replace(",", "")) for _ in range(rng.randint(0, 3))),
        weight=rng.choice([1.0, 0.5, 2.0, rng.uniform(0.001, 10)]),
    )


@pytest.mark.parametrize("seed", range(25))
def test_random_feeds_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    feeds = [random_feed(rng, index) for index in range(rng.randint(0, 30))]

    grouped, problems = parse_opml(export_opml(feeds))

    assert problems == []
    assert sorted(grouped, key=repr) == sorted(feeds, key=repr)
    assert parse_opml(export_opml(grouped)) == (grouped, [])
