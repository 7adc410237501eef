"""Feed bytes → ParsedFeed, driven by the cases in parse_cases/.

Each case is a feed file `<case>.xml`, `<case>.json` or `<case>.bin` next to `<case>.expected.json`,
which holds either `{"error": "<part of the message>"}` or the expected ParsedFeed as JSON:
dates as ISO strings, tuples as lists, `content_hash` left out (it is checked for shape, and for
being the key of "hash:" entries). Two conventions keep the files readable:

- `"_input": {"url": …, "content_type": …}` gives the fetch context (default url below);
- `"warning"` matches when it is part of the actual warning; a key of just `"hash:"` means
  "the entry's own content hash".

Adding a case is adding two files. Binary cases (UTF-16, Latin-1, garbage) are written by
parse_cases/make_binary_cases.py, which a test below keeps in step with the files.
"""

from __future__ import annotations

import codecs
import json
import pickle
import re
import runpy
import socket
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import feedparser
import pytest

from bot.errors import FeedParseError
from bot.sources.normalize import AUTHOR_LIMIT, TITLE_LIMIT
from bot.sources.parse import EXCERPT_LIMIT, parse_feed
from bot.sources.types import ParsedFeed

CASES = Path(__file__).parent / "parse_cases"
DEFAULT_URL = "https://news.example.com/feed"
FEED_SUFFIXES = {".xml", ".json", ".bin"}


def _case_files() -> list[Path]:
    return sorted(
        path
        for path in CASES.iterdir()
        if path.suffix in FEED_SUFFIXES and not path.name.endswith(".expected.json")
    )


def _expected(case: Path) -> dict[str, Any]:
    expected: dict[str, Any] = json.loads(case.with_name(f"{case.stem}.expected.json").read_text())
    return expected


def _parse_case(case: Path, **options: bool) -> ParsedFeed:
    context = _expected(case).get("_input", {})
    return parse_feed(
        case.read_bytes(),
        url=context.get("url", DEFAULT_URL),
        content_type=context.get("content_type"),
        **options,
    )


def _as_json(feed: ParsedFeed) -> dict[str, Any]:
    """A ParsedFeed as plain JSON values, the way the expected files write it."""
    data = asdict(feed)
    data.pop("extra")
    data["entries"] = list(data["entries"])
    for entry in data["entries"]:
        entry.pop("topics", None)
        entry["tags"] = list(entry["tags"])
        if entry["published"] is not None:
            entry["published"] = entry["published"].isoformat()
    return data


CASE_FILES = _case_files()


@pytest.mark.parametrize("case", CASE_FILES, ids=[path.name for path in CASE_FILES])
def test_parse_case(case: Path) -> None:
    expected = _expected(case)
    expected.pop("_input", None)

    if "error" in expected:
        with pytest.raises(FeedParseError) as raised:
            _parse_case(case)
        assert expected["error"] in str(raised.value)
        assert "\n" not in str(raised.value)
        return

    actual = _as_json(_parse_case(case))
    for entry in actual["entries"]:
        digest = entry.pop("content_hash")
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        if entry["key"] == f"hash:{digest}":
            entry["key"] = "hash:"
    if expected.get("warning") and actual["warning"] and expected["warning"] in actual["warning"]:
        actual["warning"] = expected["warning"]
    assert actual == expected


def _well_formed_xml_cases() -> list[Path]:
    """Cases both parsers must read alike: valid XML feeds the fast path reads without help."""
    cases = []
    for case in CASE_FILES:
        expected = _expected(case)
        if "error" in expected or expected["format"] == "json":
            continue
        if expected["parser"] == "fast" and expected["warning"] is None:
            cases.append(case)
    return cases


WELL_FORMED = _well_formed_xml_cases()


@pytest.mark.parametrize("case", WELL_FORMED, ids=[path.name for path in WELL_FORMED])
def test_fast_path_and_feedparser_agree(case: Path) -> None:
    fast = _parse_case(case)
    fallback = _parse_case(case, force_feedparser=True)

    assert fallback.parser == "feedparser"
    assert len(fast.entries) == len(fallback.entries)
    for fast_entry, fallback_entry in zip(fast.entries, fallback.entries, strict=True):
        assert asdict(fast_entry) == asdict(fallback_entry)
    assert (fast.format, fast.title, fast.site_url, fast.ttl_minutes) == (
        fallback.format,
        fallback.title,
        fallback.site_url,
        fallback.ttl_minutes,
    )


def test_there_are_enough_cases_to_mean_something() -> None:
    errors = [case for case in CASE_FILES if "error" in _expected(case)]
    assert len(CASE_FILES) >= 25
    assert len(errors) >= 6
    assert len(WELL_FORMED) >= 10


def test_binary_cases_are_written_by_the_generator() -> None:
    generator = runpy.run_path(str(CASES / "make_binary_cases.py"))
    generated: dict[str, bytes] = generator["binary_cases"]()
    assert generated, "the generator writes no case"
    for name, data in generated.items():
        assert (CASES / name).read_bytes() == data, f"{name}: run make_binary_cases.py"


# ---------------------------------------------------------------------------------------------
# Encodings: the declaration wins, the Content-Type charset counts without one.


def _rss_titled(title: bytes, declaration: bytes = b"") -> bytes:
    return declaration + b'<rss version="2.0"><channel><title>' + title + b"</title></channel></rss>"


@pytest.mark.parametrize(
    ("body", "content_type", "title"),
    [
        (_rss_titled(b"caf\xc3\xa9"), None, "café"),
        (_rss_titled(b"caf\xc3\xa9", b'<?xml version="1.0" encoding="us-ascii"?>'), None, "café"),
        (_rss_titled(b"caf\xe9 \x93q\x94"), "text/xml; charset=latin1", "café “q”"),
        (_rss_titled(b"caf\xc3\xa9"), "application/rss+xml; charset=utf_8", "café"),
        (_rss_titled(b"caf\xc3\xa9"), 'application/xml; charset="iso-8859-1"', "café"),
        (_rss_titled(b"caf\xc3\xa9"), "application/xml; charset=no-such-charset", "café"),
        (_rss_titled("Привет".encode("koi8-r"), b'<?xml version="1.0" encoding="KOI8-R"?>'), None, "Привет"),
        (_rss_titled("Привет".encode("cp1251")), "text/xml; charset=windows-1251", "Привет"),
        (
            _rss_titled("Привет".encode("cp1251"), b'<?xml version="1.0" encoding="windows-1251"?>'),
            "text/xml; charset=utf-8",
            "Привет",
        ),
        (b"\xef\xbb\xbf" + _rss_titled(b"bom \xe2\x9c\x93"), None, "bom ✓"),
        (codecs.BOM_UTF16_BE + _rss_titled(b"wide").decode().encode("utf-16-be"), None, "wide"),
        (_rss_titled(b"no bom").decode().encode("utf-16-le"), None, "no bom"),
        (codecs.BOM_UTF32_LE + _rss_titled(b"very wide").decode().encode("utf-32-le"), None, "very wide"),
    ],
    ids=[
        "utf8-default",
        "ascii-label-utf8-bytes",
        "latin1-header-is-cp1252",
        "python-spelling",
        "quoted-charset-but-utf8-bytes",
        "unknown-charset",
        "koi8r-declared",
        "cp1251-header",
        "declaration-beats-header",
        "utf8-bom",
        "utf16be-bom",
        "utf16le-no-bom",
        "utf32le-bom",
    ],
)
def test_encodings(body: bytes, content_type: str | None, title: str) -> None:
    feed = parse_feed(body, url=DEFAULT_URL, content_type=content_type)
    assert feed.title == title
    assert feed.parser == "fast"


def test_an_encoding_nobody_knows_still_reads_as_ascii_via_feedparser() -> None:
    body = _rss_titled(b"Plain ASCII", b'<?xml version="1.0" encoding="x-no-such"?>')
    feed = parse_feed(body, url=DEFAULT_URL)
    assert (feed.parser, feed.title) == ("feedparser", "Plain ASCII")
    assert feed.warning is not None and "x-no-such" in feed.warning


# ---------------------------------------------------------------------------------------------
# Hostile input: refused fast, with flat memory, by both paths.

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>&lol9;</title>
<item><title>&lol9;</title><description>&lol9;</description></item>
</channel></rss>
"""


@pytest.mark.parametrize("force_feedparser", [False, True], ids=["fast", "fallback"])
@pytest.mark.parametrize(
    "body",
    [
        LAUGHS,
        # The DOCTYPE hidden behind a comment that looks like an element.
        LAUGHS.replace(b"<!DOCTYPE", b"<!-- <rss> -->\n<!DOCTYPE"),
        # Broken XML, so that the fast path would hand it to feedparser.
        LAUGHS.replace(b"</channel>", b"<broken></channel>"),
        # An external entity: local file disclosure.
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<rss><channel><title>&xxe;</title></channel></rss>",
    ],
    ids=["laughs", "behind-comment", "broken", "xxe"],
)
def test_entity_declarations_are_refused_quickly(body: bytes, force_feedparser: bool) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(FeedParseError, match="entity-expansion"):
            parse_feed(body, url=DEFAULT_URL, force_feedparser=force_feedparser)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 0.5
    assert peak < 2_000_000


def test_feedparser_alone_does_not_expand_the_bomb_either() -> None:
    """The fallback's own defence, should a bomb ever slip past our check."""
    tracemalloc.start()
    try:
        result = feedparser.parse(LAUGHS, sanitize_html=False, resolve_relative_uris=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    title = result.feed.get("title", "")
    assert len(title) < 1000
    assert peak < 20_000_000


@pytest.mark.parametrize("force_feedparser", [False, True], ids=["fast", "fallback"])
def test_an_external_dtd_is_never_fetched(force_feedparser: bool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        port = server.getsockname()[1]
        body = (
            f'<?xml version="1.0"?>\n'
            f'<!DOCTYPE rss SYSTEM "http://127.0.0.1:{port}/evil.dtd">\n'
            f'<rss version="2.0"><channel><title>T</title><item><title>A &amp; B</title>'
            f"<link>https://example.com/a</link></item></channel></rss>"
        ).encode()
        feed = parse_feed(body, url=DEFAULT_URL, force_feedparser=force_feedparser)
        with pytest.raises(TimeoutError):
            server.accept()
    assert [entry.title for entry in feed.entries] == ["A & B"]


# ---------------------------------------------------------------------------------------------
# Running inside a ProcessPoolExecutor worker, as ingest does.


def test_parse_feed_runs_in_a_process_pool() -> None:
    case = CASES / "rss2_content_media.xml"
    assert pickle.loads(pickle.dumps(parse_feed)) is parse_feed
    with ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(parse_feed, case.read_bytes(), url="https://byteline.example.com/feed/")
        feed = future.result(timeout=60)
    assert feed == _parse_case(case)
    assert len(feed.entries) == 3


def test_the_fallback_says_why_it_was_needed() -> None:
    feed = _parse_case(CASES / "malformed_only_feedparser.xml")
    assert feed.parser == "feedparser"
    assert feed.warning is not None
    assert feed.warning.startswith("recovered by feedparser: ")


@pytest.mark.parametrize("force_feedparser", [False, True], ids=["fast", "feedparser"])
def test_huge_titles_bylines_and_excerpts_are_capped(force_feedparser: bool) -> None:
    """A hostile feed's 2 MB fields are stored cut, with an ellipsis (they once stalled preview)."""
    huge = "Breaking news " * 150_000
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel>'
        f"<title>{huge}</title><link>https://example.com/</link>"
        f"<item><title>{huge}</title><link>https://example.com/a</link>"
        f"<author>{huge}</author><description>{huge}</description></item>"
        "</channel></rss>"
    ).encode()

    feed = parse_feed(body, url=DEFAULT_URL, force_feedparser=force_feedparser)

    entry = feed.entries[0]
    assert feed.title is not None and len(feed.title) <= TITLE_LIMIT and feed.title.endswith("…")
    assert len(entry.title) <= TITLE_LIMIT and entry.title.endswith("news…")
    assert entry.author is not None and len(entry.author) <= AUTHOR_LIMIT and entry.author.endswith("…")
    assert len(entry.excerpt) <= EXCERPT_LIMIT and entry.excerpt.endswith("…")
