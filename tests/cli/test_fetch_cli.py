"""`flarestart fetch`, `articles list`, `prune`: a summary per source, exit 0 when the run ran."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from bot.cli.common import state
from bot.cli.fetching import TABLE_ROWS_MAX, collections_paused, freeze_heap_then
from bot.testing.httpserver import FixtureServer, Response, static
from tests.cli.conftest import Runner

# The CLI runs on the machine's clock, so the feed is dated from it: a week old and three years
# old on whatever day the suite runs (`prune --older-than 365d` keeps one and removes the other).
_NOW = datetime.now(UTC)
FEED = f"""<?xml version="1.0"?><rss version="2.0"><channel><title>Loop</title>
<item><title>Release &amp; notes</title><link>https://loop.example/r1?utm_source=x&amp;id=3</link>
<guid>r1</guid><pubDate>{format_datetime(_NOW - timedelta(days=7), usegmt=True)}</pubDate><category>Python</category>
<description>&lt;script&gt;alert(1)&lt;/script&gt;Faster &lt;b&gt;builds&lt;/b&gt;.</description></item>
<item><title>Old news</title><link>https://loop.example/old</link><guid>old</guid>
<pubDate>{format_datetime(_NOW - timedelta(days=3 * 365), usegmt=True)}</pubDate></item>
</channel></rss>""".encode()


def test_fetch_reports_each_source_and_exits_zero_despite_failures(
    cli: Runner, feed_server: FixtureServer
) -> None:
    good = feed_server.add("/feed.xml", static(FEED, "application/rss+xml"))
    assert cli("sources", "add", good, "--name", "Loop").code == 0
    feed_server.add("/dying.xml", static(FEED, "application/rss+xml"))
    assert cli("sources", "add", feed_server.url("/dying.xml"), "--name", "Dying").code == 0
    feed_server.add("/dying.xml", Response(500, b"down"))

    result = cli("fetch", "--all", "--json")
    assert result.code == 0, result.err
    reports = {r["source"]: r for r in result.json()}
    assert (reports["Loop"]["status"], reports["Loop"]["new"]) == ("updated", 2)
    assert reports["Dying"]["status"] == "failed" and "500" in reports["Dying"]["error"]

    table = cli("fetch", "--all")
    assert table.code == 0
    assert "Fetch summary" in table.out and "304" in table.out and "failed" in table.out

    articles = cli("articles", "list", "--json").json()
    first = next(a for a in articles if a["guid"] == "r1")
    assert first["title"] == "Release & notes"
    assert first["url"] == "https://loop.example/r1?id=3"
    assert "alert" not in first["excerpt"] and "Faster builds." in first["excerpt"]
    assert first["tags"] == ["Python"] and first["source"] == "Loop"


def test_nothing_due_says_when_next(cli: Runner, feed_server: FixtureServer) -> None:
    cli("sources", "add", feed_server.add("/feed.xml", static(FEED)), "--name", "Loop")
    assert cli("fetch").code == 0
    again = cli("fetch")
    assert again.code == 0 and "Nothing is due" in again.out


def test_articles_since_and_prune(cli: Runner, feed_server: FixtureServer) -> None:
    cli("sources", "add", feed_server.add("/feed.xml", static(FEED)), "--name", "Loop")
    cli("fetch", "--all")
    assert len(cli("articles", "list", "--json").json()) == 2
    recent = cli("articles", "list", "--since", "1000d", "--source", "Loop", "--json").json()
    assert {a["guid"] for a in recent} >= {"r1"}
    bad = cli("articles", "list", "--since", "yesterday")
    assert bad.code != 0 and "--since" in bad.err
    pruned = cli("prune", "--older-than", "365d")
    assert pruned.code == 0 and "Removed 1 article" in pruned.out
    assert [a["guid"] for a in cli("articles", "list", "--json").json()] == ["r1"]


def test_fetch_exits_non_zero_when_every_source_failed(cli: Runner, feed_server: FixtureServer) -> None:
    for name in ("Down", "Gone"):
        path = f"/{name.lower()}.xml"
        feed_server.add(path, static(FEED, "application/rss+xml"))
        assert cli("sources", "add", feed_server.url(path), "--name", name).code == 0
    feed_server.add("/down.xml", Response(500, b"down"))
    feed_server.add("/gone.xml", Response(503, b"later"))

    result = cli("fetch", "--all")
    as_json = cli("fetch", "--all", "--json")

    assert result.code == 1
    assert "2 sources: 0 new articles" in result.out and "2 failed" in result.out
    assert result.err.splitlines()[-1].startswith("error: every source failed (2 of 2)"), result.err
    assert "Traceback" not in result.err
    assert as_json.code == 1 and {r["status"] for r in as_json.json()} == {"failed"}


def test_fetch_with_some_failed_exits_zero_and_counts_them(cli: Runner, feed_server: FixtureServer) -> None:
    assert cli("sources", "add", feed_server.add("/ok.xml", static(FEED)), "--name", "Ok").code == 0
    feed_server.add("/down.xml", static(FEED))
    assert cli("sources", "add", feed_server.url("/down.xml"), "--name", "Down").code == 0
    feed_server.add("/down.xml", Response(500, b"down"))

    result = cli("fetch", "--all")

    assert result.code == 0, result.err
    assert "2 sources: 2 new articles" in result.out and "1 failed" in result.out


def test_a_long_run_lists_only_the_sources_that_need_a_look(
    cli: Runner, feed_server: FixtureServer, tmp_path: Path
) -> None:
    count = TABLE_ROWS_MAX + 5
    for i in range(count):
        feed_server.add(f"/f{i}.xml", static(FEED, "application/rss+xml"))
    outlines = "".join(
        f'<outline type="rss" text="Feed {i:02d}" xmlUrl="{feed_server.url(f"/f{i}.xml")}"/>'
        for i in range(count)
    )
    opml = tmp_path / "many.opml"
    opml.write_text(f'<opml version="2.0"><head/><body>{outlines}</body></opml>', encoding="utf-8")
    assert cli("sources", "import", str(opml)).code == 0, "import"
    feed_server.add("/f7.xml", Response(500, b"down"))

    result = cli("fetch", "--all")

    assert result.code == 0, result.err
    assert f"the 1 of {count} sources that need a look" in result.out
    assert "Feed 07" in result.out and "Feed 08" not in result.out
    assert f"{count} sources: {2 * (count - 1)} new articles" in result.out and "1 failed" in result.out
    assert f"{count - 1} sources fetched without a problem are not listed" in result.out
    assert len(cli("fetch", "--all", "--json").json()) == count  # scripts still get every report


def test_the_command_freezes_its_heap_when_ingest_starts_and_a_caller_of_main_keeps_its_own() -> None:
    seen: list[int] = []
    begin = freeze_heap_then(lambda sources: seen.append(gc.get_freeze_count()))
    assert gc.get_freeze_count() == 0
    try:
        begin([])  # a test, or a program calling main: its garbage must stay collectable
        state.one_shot = True  # the flarestart script: the process ends with the command
        begin([])
    finally:
        state.one_shot = False
        gc.unfreeze()
    assert seen[0] == 0 and seen[1] > 1000


def test_the_command_collects_no_garbage_while_it_starts_and_collects_again_once_ingest_runs() -> None:
    enabled: list[bool] = []
    begin = freeze_heap_then(lambda sources: enabled.append(gc.isenabled()))
    with collections_paused():  # a test, or a program calling main: the collector stays on
        enabled.append(gc.isenabled())
    try:
        state.one_shot = True  # the flarestart script
        with collections_paused():
            enabled.append(gc.isenabled())
            begin([])  # ingest starts
            enabled.append(gc.isenabled())
        with collections_paused():  # ingest never started (an error, nothing due)
            enabled.append(gc.isenabled())
        enabled.append(gc.isenabled())
    finally:
        state.one_shot = False
        gc.enable()
        gc.unfreeze()
    assert enabled == [True, False, True, True, False, True]
