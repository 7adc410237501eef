"""One-line errors say what the user typed or wrote: text quoted from URLs and files is never
read as rich markup ("[fe80::1]" and "[[subscribers]]" are not style tags)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Runner


def test_a_refused_ipv6_url_is_named_whole(cli: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLARESTART_ALLOW_PRIVATE_URLS")

    result = cli("sources", "add", "http://[fe80::1]/")

    assert result.code != 0 and "Traceback" not in result.err
    assert result.err.startswith("error: could not fetch http://[fe80::1]/: ")
    assert "refusing fe80::1 (link-local)" in result.err


def test_a_misspelt_subscribers_table_gets_the_right_hint(cli: Runner, tmp_path: Path) -> None:
    folder = tmp_path / "subscribers"
    folder.mkdir()
    (folder / "team.toml").write_text('[[subscribers]]\nemail = "ada@example.com"\n', encoding="utf-8")

    result = cli("subscribers", "sync", str(folder))

    assert result.code != 0
    assert "unknown table or key 'subscribers' (did you mean [[subscriber]]?)" in result.err


def test_a_broken_opml_outline_is_quoted_as_written(cli: Runner, tmp_path: Path) -> None:
    opml = tmp_path / "feeds.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head/><body>'
        '<outline text="[bold]Odd[/bold]" xmlUrl="gopher://[fe80::1]/feed"/></body></opml>',
        encoding="utf-8",
    )

    result = cli("sources", "import", str(opml))

    assert result.code != 0
    assert "gopher://[fe80::1]/feed" in result.err
