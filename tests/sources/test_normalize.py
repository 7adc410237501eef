"""What feeds say → the plain values the store keeps: URLs, titles, excerpts, keys, dates."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.sources.normalize import (
    AUTHOR_LIMIT,
    TITLE_LIMIT,
    _html_text,
    canonical_url,
    clean_title,
    content_hash,
    entry_key,
    excerpt_from_html,
    excerpt_from_text,
    first_image_url,
    parse_datetime,
    person_name,
    repair_mojibake,
    shorten,
)

# ---------------------------------------------------------------------------------------------
# canonical_url

CANONICAL_URLS = [
    # (link, base, canonical)
    ("https://Example.COM/Path?b=2&a=1#frag", None, "https://example.com/Path?b=2&a=1"),
    ("HTTP://example.com:80/", None, "http://example.com/"),
    ("https://example.com:443/x", None, "https://example.com/x"),
    ("https://example.com:8443/x", None, "https://example.com:8443/x"),
    ("https://example.com", None, "https://example.com/"),
    ("  https://example.com/a  ", None, "https://example.com/a"),
    ("/post/1?utm_source=x&id=3", "https://blog.example.com/feed/", "https://blog.example.com/post/1?id=3"),
    ("post/1", "https://blog.example.com/feed/", "https://blog.example.com/feed/post/1"),
    ("../up", "https://blog.example.com/a/b/", "https://blog.example.com/a/up"),
    ("//cdn.example.com/a.png", "https://blog.example.com/", "https://cdn.example.com/a.png"),
    ("https://other.example.org/x", "https://blog.example.com/", "https://other.example.org/x"),
    (
        "https://x.example/?utm_source=a&UTM_Medium=b&fbclid=1&gclid=2&dclid=3&msclkid=4&mc_cid=5"
        "&mc_eid=6&_hsenc=7&_hsmi=8&igshid=9&yclid=10&ref_src=11&keep=yes",
        None,
        "https://x.example/?keep=yes",
    ),
    # Other parameters stay, in order and spelled as they were (no re-encoding).
    ("https://x.example/s?q=a+b&utm_term=z&page=2&q=c%20d", None, "https://x.example/s?q=a+b&page=2&q=c%20d"),
    ("https://x.example/?flag&utm_x=1&&ref=home", None, "https://x.example/?flag&ref=home"),
    ("https://x.example/p?utm_source=only", None, "https://x.example/p"),
    # A "#!" fragment names the page on single-page sites.
    ("https://app.example.com/#!/post/7", None, "https://app.example.com/#!/post/7"),
    ("https://user:pw@Example.com/x", None, "https://example.com/x"),
    ("https://trusted.example@evil.example/", None, "https://evil.example/"),
    ("https://trusted.example:443@evil.example:8443/a", None, "https://evil.example:8443/a"),
    ("http://[::1]:80/x", None, "http://[::1]/x"),
    # Not http(s), or not a URL at all.
    ("mailto:news@example.com", None, None),
    ("javascript:alert(1)", "https://example.com/", None),
    ("urn:uuid:6f1c2b0e-2d4b-4c8e-9a57-1f0e9d7c1a01", None, None),
    ("/relative/without/base", None, None),
    ("https://example.com:99999/", None, None),
    ("", None, None),
    ("   ", "https://example.com/", None),
]


@pytest.mark.parametrize(("link", "base", "canonical"), CANONICAL_URLS)
def test_canonical_url(link: str, base: str | None, canonical: str | None) -> None:
    assert canonical_url(link, base) == canonical


@pytest.mark.parametrize(("link", "base", "canonical"), [c for c in CANONICAL_URLS if c[2]])
def test_canonical_url_is_a_fixed_point(link: str, base: str | None, canonical: str) -> None:
    assert canonical_url(canonical) == canonical
    assert canonical_url(canonical, "https://elsewhere.example/") == canonical


# ---------------------------------------------------------------------------------------------
# clean_title


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<em>New:</em> Python 3.14", "New: Python 3.14"),
        ("<b>Bold</b> <span class='x'>span</span><br/>end", "Bold spanend"),
        ("Vec<T> and HashMap<K, V>", "Vec<T> and HashMap<K, V>"),
        ("a <-> b, 1 < 2 > 0", "a <-> b, 1 < 2 > 0"),
        ("AT&amp;T &amp; friends", "AT&T & friends"),
        ("Caf&eacute;&nbsp;time &#8212; &#x2603;", "Café time — ☃"),
        ("&lt;script&gt; is text here", "<script> is text here"),
        ("Fish &amp;amp; chips", "Fish &amp; chips"),  # one level of escaping is undone, not two
        ("  Spaces \n\t everywhere\u00a0 ", "Spaces everywhere"),
        ("AT&T stays", "AT&T stays"),
        ("", ""),
    ],
)
def test_clean_title(raw: str, clean: str) -> None:
    assert clean_title(raw) == clean


# ---------------------------------------------------------------------------------------------
# excerpt_from_html and friends


@pytest.mark.parametrize(
    ("html", "excerpt"),
    [
        ("<p>Hello <b>world</b></p>", "Hello world"),
        ("<p>One</p><p>Two</p><ul><li>three</li><li>four</li></ul>", "One Two three four"),
        ("Line<br>break<BR/>again", "Line break again"),
        ("<p>Wo<b>r</b>d</p>", "Word"),
        ("<script>var x = '<p>no</p>';</script><p>Yes</p>", "Yes"),
        ("<STYLE>p { color: red }</STYLE><noscript>Enable JS</noscript>Text", "Text"),
        ("<!-- hidden <p>comment</p> --> visible", "visible"),
        ("<p>Before</p><script>never closed, never shown", "Before"),
        ("<svg><title>icon</title><path d='M0'/></svg>Caption", "Caption"),
        ("Caf&eacute; &amp; cr&egrave;me &#8212; &#x2603; &nbsp;!", "Café & crème — ☃ !"),
        ("  a \n\t b&nbsp;c  ", "a b c"),
        ("5 < 6 and 7 > 3 &amp; a<b", "5 < 6 and 7 > 3 & a<b"),
        ("<img src='x.png' alt='only an image'>", ""),
        ("", ""),
    ],
)
def test_excerpt_from_html(html: str, excerpt: str) -> None:
    assert excerpt_from_html(html) == excerpt


def test_excerpt_is_cut_at_a_word_boundary_with_an_ellipsis() -> None:
    html = "<p>" + "word " * 100 + "</p>"
    excerpt = excerpt_from_html(html, limit=50)
    assert excerpt == " ".join(["word"] * 10) + "…"
    assert len(excerpt) == 50


def test_excerpt_of_one_endless_word_is_cut_inside_it() -> None:
    assert excerpt_from_html("x" * 500, limit=10) == "x" * 9 + "…"


@pytest.mark.parametrize(
    "html",
    [
        # Text starts late, behind heavy markup: the window must grow.
        '<div class="' + "x" * 20_000 + '">Hello there, reader.</div>' + "<p>more text</p>" * 200,
        # A script that straddles the first window's end.
        "<p>" + "intro " * 150 + "</p><script>" + "var a = 1;" * 300 + "</script><p>after</p>",
        # A comment that straddles it, then a long article.
        "<p>short</p><!-- " + "c" * 3000 + " --><p>" + "lorem ipsum " * 400 + "</p>",
        # Tags cut in half at every possible place, and entities.
        "".join(f"<a href='/p/{n}'>link&nbsp;{n}</a>, " for n in range(400)),
        # Very little text in a lot of markup.
        "<table>" + "<tr><td></td></tr>" * 2000 + "<tr><td>cell</td></tr></table>",
    ],
    ids=["late-text", "script-on-edge", "comment-on-edge", "many-tags", "sparse"],
)
def test_reading_a_window_gives_the_same_excerpt_as_reading_everything(html: str) -> None:
    everything = shorten(_html_text(html, partial=False), 300)
    assert excerpt_from_html(html, 300) == everything
    assert len(everything) <= 300
    assert everything


@pytest.mark.parametrize(
    ("text", "limit", "excerpt"),
    [
        ("Plain <b>text</b> stays as it is", 300, "Plain <b>text</b> stays as it is"),
        ("  folded \n\n whitespace  ", 300, "folded whitespace"),
        ("one two three four five six", 15, "one two three…"),
        ("a " * 2000, 20, "a a a a a a a a a a…"),
    ],
)
def test_excerpt_from_text(text: str, limit: int, excerpt: str) -> None:
    assert excerpt_from_text(text, limit) == excerpt


@pytest.mark.parametrize(
    ("text", "limit", "short"),
    [
        ("short", 10, "short"),
        ("exactly ten", 11, "exactly ten"),
        ("two words", 5, "two…"),
        ("Hello, world and more", 8, "Hello…"),
        ("ends at a word boundary here", 14, "ends at a…"),
        ("ends at a word boundary here", 15, "ends at a word…"),
    ],
)
def test_shorten(text: str, limit: int, short: str) -> None:
    assert shorten(text, limit) == short
    assert len(shorten(text, limit)) <= limit


# ---------------------------------------------------------------------------------------------
# first_image_url


@pytest.mark.parametrize(
    ("html", "base", "image"),
    [
        (
            '<p><img src="/img/a.png"></p>',
            "https://blog.example.com/post/",
            "https://blog.example.com/img/a.png",
        ),
        ("<IMG SRC='https://cdn.example.com/b.jpg'>", None, "https://cdn.example.com/b.jpg"),
        ("<img alt=x src=https://cdn.example.com/c.gif>", None, "https://cdn.example.com/c.gif"),
        (
            '<img src="https://cdn.example.com/d.png?w=1&amp;h=2">',
            None,
            "https://cdn.example.com/d.png?w=1&h=2",
        ),
        (
            '<img src="data:image/gif;base64,R0lG"><img src="/e.png">',
            "https://x.example/",
            "https://x.example/e.png",
        ),
        ('<img data-src="lazy.png" src="/f.png">', "https://x.example/", "https://x.example/f.png"),
        (
            '<noscript><img src="/pixel.gif"></noscript><img src="/g.png">',
            "https://x.example/",
            "https://x.example/g.png",
        ),
        (
            '<img src="/track" width="1" height="1"><img src="/h.png">',
            "https://x.example/",
            "https://x.example/h.png",
        ),
        ("<p>No images here</p>", "https://x.example/", None),
        ("<imgur>not an image</imgur>", "https://x.example/", None),
    ],
)
def test_first_image_url(html: str, base: str | None, image: str | None) -> None:
    assert first_image_url(html, base) == image


# ---------------------------------------------------------------------------------------------
# entry_key and content_hash


@pytest.mark.parametrize(
    ("guid", "link", "key"),
    [
        ("abc-123", "https://example.com/a", "guid:abc-123"),
        ("  padded  ", None, "guid:padded"),
        (None, "https://Example.com/a?utm_source=x#frag", "link:https://example.com/a"),
        ("", "https://example.com/a", "link:https://example.com/a"),
        ("   ", "https://example.com/b", "link:https://example.com/b"),
    ],
)
def test_entry_key_prefers_guid_then_link(guid: str | None, link: str | None, key: str) -> None:
    assert entry_key(guid, link, "Title", "<p>Body</p>") == key


@pytest.mark.parametrize("link", [None, "", "mailto:x@example.com", "/relative"])
def test_entry_key_falls_back_to_the_content_hash(link: str | None) -> None:
    key = entry_key(None, link, "Title", "<p>Body</p>")
    assert key == f"hash:{content_hash('Title', '<p>Body</p>')}"
    assert len(key) == len("hash:") + 64


def test_content_hash_changes_with_the_entry_but_not_with_its_whitespace() -> None:
    base = content_hash("Title", "<p>Some body text.</p>")
    assert base == content_hash("Title", "<p>Some body text.</p>")
    assert base == content_hash(" Title\n", "\n  <p>Some\n   body text.</p>\u00a0")
    assert base != content_hash("Title!", "<p>Some body text.</p>")
    assert base != content_hash("Title", "<p>Some body text?</p>")
    assert content_hash("ab", "c") != content_hash("a", "bc")
    assert all(char in "0123456789abcdef" for char in base) and len(base) == 64


# ---------------------------------------------------------------------------------------------
# parse_datetime


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("Thu, 18 Sep 2025 14:30:00 +0000", datetime(2025, 9, 18, 14, 30, tzinfo=UTC)),
        ("Thu, 18 Sep 2025 14:30:00 GMT", datetime(2025, 9, 18, 14, 30, tzinfo=UTC)),
        ("Mon, 06 Sep 2010 16:45:00 EST", datetime(2010, 9, 6, 21, 45, tzinfo=UTC)),
        ("Wed, 17 Sep 2025 09:05:00 EDT", datetime(2025, 9, 17, 13, 5, tzinfo=UTC)),
        ("Tue, 16 Sep 2025 23:15:00 PDT", datetime(2025, 9, 17, 6, 15, tzinfo=UTC)),
        ("Sun, 05 Oct 2025 08:00:00 GMT+2", datetime(2025, 10, 5, 6, 0, tzinfo=UTC)),
        ("Sun, 05 Oct 2025 08:00:00 GMT+0", datetime(2025, 10, 5, 8, 0, tzinfo=UTC)),
        ("Sun, 05 Oct 2025 08:00:00 UTC-05:30", datetime(2025, 10, 5, 13, 30, tzinfo=UTC)),
        ("Tue, 07 Oct 2025 12:00:00 CEST", datetime(2025, 10, 7, 10, 0, tzinfo=UTC)),
        ("Tue, 07 Oct 2025 12:00:00 JST", datetime(2025, 10, 7, 3, 0, tzinfo=UTC)),
        ("9 oct 2025 10:00 PST", datetime(2025, 10, 9, 18, 0, tzinfo=UTC)),
        ("Tue, 07 Oct 2025 12:00:00", datetime(2025, 10, 7, 12, 0, tzinfo=UTC)),
        ("2025-10-08T12:00:00Z", datetime(2025, 10, 8, 12, 0, tzinfo=UTC)),
        ("2025-10-08T12:00:00+05:30", datetime(2025, 10, 8, 6, 30, tzinfo=UTC)),
        ("2025-10-08T12:00:00.123456789-01:00", datetime(2025, 10, 8, 13, 0, 0, 123456, tzinfo=UTC)),
        ("2025-10-08 12:00:00", datetime(2025, 10, 8, 12, 0, tzinfo=UTC)),
        ("2025-10-09", datetime(2025, 10, 9, tzinfo=UTC)),
        ("  2025-10-09T01:02:03Z \n", datetime(2025, 10, 9, 1, 2, 3, tzinfo=UTC)),
        ("Fri, 10 Oct 2025", datetime(2025, 10, 10, tzinfo=UTC)),
        ("Tue, 31 Feb 2025 10:00:00 GMT", None),
        ("Mon, 01 Jan 0001 00:00:00 +0100", None),
        ("0001-01-01T00:00:00+01:00", None),
        ("Sun, 5 Sept 93 7:08 pm", datetime(1993, 9, 5, 19, 8, tzinfo=UTC)),
        ("Sun, 5 Sep 2021 12:30 AM", datetime(2021, 9, 5, 0, 30, tzinfo=UTC)),
        ("Sun, 05 Sep 93 07:08:09 +0200", datetime(1993, 9, 5, 5, 8, 9, tzinfo=UTC)),
        ("05 Sep 2025 07:08 -05:00", datetime(2025, 9, 5, 12, 8, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_datetime(text: str | None, parsed: datetime | None) -> None:
    result = parse_datetime(text)
    assert result == parsed
    if result is not None:
        assert result.utcoffset() == timedelta(0)


# ---------------------------------------------------------------------------------------------
# person_name and repair_mojibake


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Ada Park", "Ada Park"),
        ("editor@example.com (Lin Osei)", "Lin Osei"),
        ("Lin Osei (editor@example.com)", "Lin Osei"),
        ("Lin Osei <editor@example.com>", "Lin Osei"),
        ("editor@example.com", "editor@example.com"),
        ("  Dana \n K. ", "Dana K."),
        ("", None),
    ],
)
def test_person_name(raw: str, name: str | None) -> None:
    assert person_name(raw) == name


@pytest.mark.parametrize(
    ("raw", "repaired"),
    [
        ("CafÃ© crÃ¨me", "Café crème"),
        ("Café crème", "Café crème"),  # real Latin-1 text is no valid UTF-8: left alone
        ("plain ascii", "plain ascii"),
        ("日本語 and â€™", "日本語 and â€™"),  # not all Latin-1: not mojibake of this kind
        (None, None),
    ],
)
def test_repair_mojibake(raw: str | None, repaired: str | None) -> None:
    assert repair_mojibake(raw) == repaired


# ---------------------------------------------------------------------------------------------
# Hostile input stays linear: a feed is untrusted text, read in a worker that must not stall.


@pytest.mark.parametrize(
    ("name", "work"),
    [
        ("unclosed scripts", lambda: excerpt_from_html("<script>x " * 200_000)),
        ("unclosed comments", lambda: excerpt_from_html("<!-- a " * 200_000)),
        ("stray angle brackets", lambda: excerpt_from_html("a < b " * 200_000)),
        ("endless tag", lambda: excerpt_from_html("<p " + "x=1 " * 300_000)),
        ("placeholder images", lambda: first_image_url('<img src="data:,">' * 100_000, "https://x/")),
        ("address-like author", lambda: person_name("a" * 1_000_000)),
        ("long title", lambda: clean_title("<b " * 300_000)),
    ],
)
def test_pathological_input_is_handled_in_linear_time(name: str, work: Callable[[], object]) -> None:
    started = time.process_time()
    work()
    assert time.process_time() - started < 1.0, name


@pytest.mark.parametrize(
    "raw",
    [
        "Breaking " * 300_000,  # 2.7 MB of words
        "<em>" + "x" * 2_000_000 + "</em>",  # one endless word inside markup
        "&amp; " * 400_000,
    ],
    ids=["words", "one-word", "entities"],
)
def test_a_huge_title_is_capped_with_an_ellipsis(raw: str) -> None:
    title = clean_title(raw)

    assert 1 < len(title) <= TITLE_LIMIT
    assert title.endswith("…") and "<" not in title


def test_a_title_cut_at_its_window_ends_at_a_word_with_an_ellipsis() -> None:
    # Short words, then a long tail of markup that leaves little text: the window cut the text.
    raw = "Rust 2.0 released " + "<b></b>" * 10_000 + " tail"

    title = clean_title(raw)

    assert title == "Rust 2.0…"


def test_a_title_at_the_limit_is_kept_whole() -> None:
    raw = "a" * (TITLE_LIMIT - 2) + " b"

    assert clean_title(raw) == raw
    assert clean_title(raw + "c") == "a" * (TITLE_LIMIT - 2) + "…"


def test_a_huge_byline_is_capped_with_an_ellipsis() -> None:
    name = person_name("Jane Doe " * 250_000 + "<jane@example.com>")

    assert name is not None and len(name) <= AUTHOR_LIMIT and name.endswith("Doe…")
