"""Ingest benchmark: serve a feed folder on loopback, ingest it cold, re-poll it, compare peers.

    .venv/bin/python bench/ingest.py                 # ours, 3 runs, ../shared/corpus/feeds-200
    .venv/bin/python bench/ingest.py --peers         # + rss2email 3.14 and reader 3.26
    .venv/bin/python bench/ingest.py --synthetic 5000
    .venv/bin/python bench/ingest.py FOLDER --json

The folder is served by the project's loopback server (`python -m bot.testing.httpserver`, its
own process, ETag + Last-Modified, 304 to conditional GETs). Every contender runs in its own
subprocess under bench/_measure.py, so wall, CPU (user+sys of the whole process tree) and peak
RSS (sum over the process tree, sampled every ~20 ms) are measured the same way for all.

The timed regions ("cold", "re-poll") are measured inside the driver with time.perf_counter and
cover the ingest call only: creating the database and adding the sources is setup, not timed.
rss2email has no library entry point, so for it the timed region is the whole `r2e run
--no-send` command (as the corpus README measured it). "proc wall" is the whole subprocess.

This file is also the driver that runs inside those subprocesses (`_driver flarestart|reader`),
so its top level imports the standard library only: the reader driver runs in the peers'
virtualenv (bench/.peers/venv), which has no FlareStart in it.
"""

from __future__ import annotations

import os
import sys

# bench/ also holds other benchmarks whose names can shadow the standard library (email.py):
# when run as a script, move this folder from the front of sys.path to its end.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import argparse
import json
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))

import _measure  # bench/ is not a package: the sibling helper module, found at the end of sys.path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
WORK = BENCH / ".work"
PEERS = BENCH / ".peers"
PEER_VENV = PEERS / "venv"
DEFAULT_CORPUS = REPO / ".." / "shared" / "corpus" / "feeds-200"
# reader 3.26 vendors a feedparser that imports `sgmllib`; feedparser ≥ 6.0.12 no longer pulls
# sgmllib3k in (it depends on feedparser-sgmllib instead), so name it here.
PEER_PACKAGES = ("rss2email==3.14", "reader==3.26", "sgmllib3k==1.0.0")
READER_WORKERS = 16
RUN_TIMEOUT = 900.0
SYNTHETIC_ENTRIES = 20

# Targets from the issue.
COLD_TARGET, COLD_STRETCH, REPOLL_TARGET, RSS_TARGET_MB = 3.0, 1.5, 0.5, 300.0
READER_RATIO_TARGET, R2E_RATIO_TARGET, ENTRY_TOLERANCE = 5.0, 9.0, 0.01
SYNTHETIC_WALL_TARGET, SYNTHETIC_RSS_TARGET_MB = 60.0, 500.0

OURS, READER, R2E = "flarestart", "reader 3.26", "rss2email 3.14"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# =============================================================================================
# Drivers: run inside the measured subprocess, print nothing on stdout, write JSON to --out.
# =============================================================================================


SELF_CPU: dict[str, float] = {}  # CPU of the driver process alone, per timed region


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _timed(call: Callable[[], Any], label: str) -> tuple[Any, float, float]:
    cpu0, own0, wall0 = _measure.tree_cpu(), _own_cpu(), time.perf_counter()
    value = call()
    wall = time.perf_counter() - wall0
    SELF_CPU[label] = _own_cpu() - own0
    return value, wall, _measure.tree_cpu() - cpu0


def drive_flarestart(urls: list[str], workdir: Path, options: dict[str, Any]) -> dict[str, Any]:
    import asyncio
    from collections import Counter

    from bot.config import load_settings
    from bot.sources.ingest import ingest_sources
    from bot.store import NewSource, Store

    started = time.perf_counter()
    env = {
        "FLARESTART_DATA_DIR": str(workdir),
        "FLARESTART_ALLOW_PRIVATE_URLS": "1",
        "FLARESTART_LOG_LEVEL": "WARNING",
    }
    for key in ("concurrency", "per_host", "parse_workers"):
        if options.get(key):
            env[f"FLARESTART_FETCH_{key.upper()}"] = str(options[key])
    settings = load_settings(env)
    store = Store.open(settings)
    names = [f"feed-{i:05d}" for i in range(1, len(urls) + 1)]
    store.add_sources([NewSource(name=n, url=u) for n, u in zip(names, urls, strict=True)])
    setup = time.perf_counter() - started

    def ingest() -> list[Any]:
        return asyncio.run(ingest_sources(store, settings, force=True))

    cold, cold_wall, cold_cpu = _timed(ingest, "cold")
    entries = store.count_articles()
    again, repoll_wall, repoll_cpu = _timed(ingest, "repoll")
    store.close()
    url_of = dict(zip(names, urls, strict=True))
    per_feed = {url_of.get(r.source, r.url): r.new for r in cold}
    details = {
        url_of.get(r.source, r.url): {
            "status": r.status,
            "http": r.http_status,
            "error": r.error,
            "warning": r.warning,
        }
        for r in cold
    }
    return {
        "setup_wall": setup,
        "cold_wall": cold_wall,
        "cold_cpu": cold_cpu,
        "repoll_wall": repoll_wall,
        "repoll_cpu": repoll_cpu,
        "cold_cpu_driver": SELF_CPU["cold"],
        "repoll_cpu_driver": SELF_CPU["repoll"],
        "entries": entries,
        "sum_new": sum(r.new for r in cold),
        "failed": sorted(url_of.get(r.source, r.url) for r in cold if r.status in ("failed", "gone")),
        "cold_statuses": dict(Counter(r.status for r in cold)),
        "repoll_statuses": dict(Counter(r.status for r in again)),
        "per_feed": per_feed,
        "details": details,
        "settings": {
            "concurrency": settings.fetch.concurrency,
            "per_host": settings.fetch.per_host,
            "parse_workers": settings.fetch.parse_workers or os.cpu_count(),
        },
    }


def drive_reader(urls: list[str], workdir: Path, options: dict[str, Any]) -> dict[str, Any]:
    import sqlite3

    from reader import make_reader  # type: ignore[import-not-found]

    workers = int(options.get("workers") or READER_WORKERS)
    started = time.perf_counter()
    db = workdir / "reader.sqlite"
    reader = make_reader(str(db))
    for url in urls:
        reader.add_feed(url)
    setup = time.perf_counter() - started

    _, cold_wall, cold_cpu = _timed(lambda: reader.update_feeds(workers=workers), "cold")
    entries = reader.get_entry_counts().total
    failed = {
        feed.url: f"{feed.last_exception.type_name}: {feed.last_exception.value_str}"
        for feed in reader.get_feeds()
        if feed.last_exception
    }
    # Feeds are now scheduled an hour ahead; scheduled=False asks for all of them again
    # (conditional GETs with the stored ETag / Last-Modified).
    _, repoll_wall, repoll_cpu = _timed(
        lambda: reader.update_feeds(workers=workers, scheduled=False), "repoll"
    )
    repoll_failed = sum(1 for feed in reader.get_feeds() if feed.last_exception)
    reader.close()
    with sqlite3.connect(db) as conn:
        counts = dict(conn.execute("SELECT feed, count(*) FROM entries GROUP BY feed").fetchall())
    return {
        "setup_wall": setup,
        "cold_wall": cold_wall,
        "cold_cpu": cold_cpu,
        "repoll_wall": repoll_wall,
        "repoll_cpu": repoll_cpu,
        "cold_cpu_driver": SELF_CPU["cold"],
        "repoll_cpu_driver": SELF_CPU["repoll"],
        "entries": entries,
        "failed": sorted(failed),
        "errors": failed,
        "repoll_failed": repoll_failed,
        "per_feed": {url: int(counts.get(url, 0)) for url in urls},
        "settings": {"workers": workers},
    }


DRIVERS: dict[str, Callable[[list[str], Path, dict[str, Any]], dict[str, Any]]] = {
    "flarestart": drive_flarestart,
    "reader": drive_reader,
}


def driver_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ingest.py _driver")
    parser.add_argument("name", choices=sorted(DRIVERS))
    parser.add_argument("--urls", type=Path, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--options", default="{}")
    args = parser.parse_args(argv)
    urls = args.urls.read_text().split()
    result = DRIVERS[args.name](urls, args.dir, json.loads(args.options))
    args.out.write_text(json.dumps(result))
    return 0


# =============================================================================================
# Corpus: the served folder (a given one, or a synthetic one we write), and a loopback server.
# =============================================================================================


_WORD_TEXT = (
    "async rust python kernel compiler database latency cache vector query index release "
    "security patch memory allocator garbage collector runtime webassembly browser engine "
    "protocol http quic tls certificate container kubernetes scheduler cluster storage "
    "replication consensus raft paxos benchmark profiler tracing observability metrics logging "
    "pipeline stream batch parser lexer grammar type system inference generics trait closure "
    "iterator coroutine thread lock mutex atomic lockfree queue hashmap btree trie graph "
    "algorithm sorting search ranking model training inference gpu tensor shader vulkan metal "
    "linux bsd windows macos android ios firmware embedded sensor robotics network packet "
    "router firewall dns cdn edge serverless function deploy rollback migration schema sql "
    "postgres sqlite redis kafka queue event sourcing design api rest graphql grpc json yaml "
    "toml config feature flag testing fuzzing property mutation coverage ci build cargo pip "
    "npm package dependency supply chain open source license community maintainer funding"
)
_TAG_TEXT = (
    "rust python go javascript typescript databases security devops linux ai ml web "
    "performance compilers networking cloud open-source career hardware testing"
)
WORDS, TAGS = _WORD_TEXT.split(), _TAG_TEXT.split()
AUTHORS = (
    "Ada Byte",
    "Linus Kern",
    "Grace Hopper",
    "Ken Tomp",
    "Barbara Lisk",
    "Rob Pike",
    "Margaret H.",
    "Dennis R.",
    "Guido V.",
    "Yukihiro M.",
    "Anders H.",
    "Jo Arm",
)


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _synthetic_description(rng: random.Random, site: str) -> str:
    parts = []
    for _ in range(rng.randint(1, 3)):
        words = _sentence(rng, 15, 40).split()
        if rng.random() < 0.5:
            at = rng.randrange(len(words))
            words[at] = f'<a href="https://{site}/notes/{words[at]}">{words[at]}</a>'
        if rng.random() < 0.4:
            at = rng.randrange(len(words))
            words[at] = f"<code>{words[at]}()</code>"
        if rng.random() < 0.3:
            at = rng.randrange(len(words))
            words[at] = f"<em>{words[at]}</em>"
        parts.append("<p>" + " ".join(words).capitalize() + ".</p>")
    return "".join(parts)


def _synthetic_feed(rng: random.Random, index: int, today: datetime, entries: int) -> str:
    site = f"blog-{index:05d}.example.com"
    title = _sentence(rng, 1, 3).title() + f" Blog {index}"
    newest = today - timedelta(minutes=rng.randint(0, 48 * 60))
    items = []
    when = newest
    for k in range(entries, 0, -1):
        headline = _sentence(rng, 4, 10).capitalize()
        slug = re.sub(r"[^a-z0-9]+", "-", headline.lower()).strip("-")
        link = f"https://{site}/{when:%Y/%m}/{slug}-{k}/"
        if rng.random() < 0.7:
            guid = f"<guid>{link}</guid>"
        else:
            guid = f'<guid isPermaLink="false">tag:{site},2026:post-{k}</guid>'
        categories = "".join(f"<category>{tag}</category>" for tag in rng.sample(TAGS, rng.randint(1, 3)))
        description = _synthetic_description(rng, site)
        body = f"<![CDATA[{description}]]>" if rng.random() < 0.5 else escape(description)
        items.append(
            "    <item>\n"
            f"      <title>{escape(headline)}</title>\n"
            f"      <link>{link}</link>\n"
            f"      {guid}\n"
            f"      <pubDate>{format_datetime(when)}</pubDate>\n"
            f"      <dc:creator>{escape(rng.choice(AUTHORS))}</dc:creator>\n"
            f"      {categories}\n"
            f"      <description>{body}</description>\n"
            "    </item>\n"
        )
        when -= timedelta(minutes=rng.randint(3 * 60, 3 * 24 * 60))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:atom="http://www.w3.org/2005/Atom">\n'
        "  <channel>\n"
        f"    <title>{escape(title)}</title>\n"
        f"    <link>https://{site}/</link>\n"
        f'    <atom:link href="https://{site}/feed.xml" rel="self" type="application/rss+xml"/>\n'
        f"    <description>{escape(_sentence(rng, 6, 14))}</description>\n"
        "    <language>en-us</language>\n"
        f"    <lastBuildDate>{format_datetime(newest)}</lastBuildDate>\n"
        "    <generator>flarestart bench synthetic v1</generator>\n"
        + "".join(items)
        + "  </channel>\n</rss>\n"
    )


def synthetic_corpus(feeds: int, seed: int) -> Path:
    """N RSS feeds × 20 entries in bench/.work/synthetic-N/, reused while seed and day match.

    Content is fixed by the seed; dates count back from today (UTC midnight) so the entries are
    always recent, as a live service would see them.
    """
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    folder = WORK / f"synthetic-{feeds}"
    stamp = WORK / f"synthetic-{feeds}.stamp"
    key = f"v1 seed={seed} entries={SYNTHETIC_ENTRIES} day={today:%Y-%m-%d}"
    if folder.is_dir() and stamp.is_file() and stamp.read_text() == key:
        return folder
    log(f"generating {feeds} synthetic feeds × {SYNTHETIC_ENTRIES} entries in {folder}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    for index in range(1, feeds + 1):
        text = _synthetic_feed(rng, index, today, SYNTHETIC_ENTRIES)
        (folder / f"feed-{index:05d}.xml").write_text(text, encoding="utf-8")
    stamp.write_text(key)
    return folder


def clean_env(home: Path, *, pythonpath: str | None = None) -> dict[str, str]:
    """The environment of every subprocess: our own HOME/XDG dirs, no proxies, no FLARESTART_*."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy")
        and not k.startswith(("FLARESTART_", "PYTHON"))
        and k not in ("VIRTUAL_ENV", "DATABASE_URL")
    }
    for sub in (".config", ".local/share", ".cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env |= {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


@contextmanager
def serve(folder: Path, port: int, home: Path) -> Iterator[tuple[list[str], int]]:
    """Run `python -m bot.testing.httpserver FOLDER` in its own process; yield the feed URLs."""
    expected = sum(1 for p in folder.iterdir() if p.is_file())
    with tempfile.TemporaryFile(mode="w+") as errors:
        yield from _serve(folder, port, home, expected, errors)


def _serve(
    folder: Path, port: int, home: Path, expected: int, errors: Any
) -> Iterator[tuple[list[str], int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.testing.httpserver", str(folder), "--port", str(port)],
        cwd=REPO,
        env=clean_env(home, pythonpath=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        urls = [proc.stdout.readline().strip() for _ in range(expected)]
        if not base.startswith("http://127.0.0.1:") or not all(urls):
            proc.wait(timeout=5)
            errors.seek(0)
            raise SystemExit(f"the feed server did not start:\n{errors.read()[-3000:]}")
        log(f"serving {len(urls)} feeds from {folder} at {base} (pid {proc.pid})")
        yield urls, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# =============================================================================================
# Contenders: each run is one measured subprocess (two for rss2email: cold and re-poll).
# =============================================================================================


@dataclass
class Run:
    ok: bool
    cold_wall: float | None = None
    cold_cpu: float | None = None
    repoll_wall: float | None = None
    repoll_cpu: float | None = None
    cold_cpu_driver: float | None = None  # the part of cold_cpu spent in the driver process itself
    proc_wall: float | None = None  # the whole subprocess (setup, imports, both ingests)
    proc_cpu: float | None = None
    peak_rss_mb: float | None = None
    peak_pss_mb: float | None = None  # PSS of the tree at its RSS peak: shared pages split
    sampler_cpu: float | None = None  # CPU of the parent's sampling thread (overhead)
    peak_procs: int | None = None
    entries: int | None = None
    failed: list[str] = field(default_factory=list)
    repoll_note: str = ""
    per_feed: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    server_cpu: float | None = None  # CPU the feed server used meanwhile (not counted above)
    peak_by_process: list[tuple[str, float]] = field(default_factory=list)  # (kind, RSS MB)

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k not in ("per_feed", "details")}
        data["failed_count"] = len(self.failed)
        return data


def process_kind(command: str) -> str:
    if "_driver" in command:
        return "driver"
    if "forkserver" in command:
        return "forkserver/parse worker"
    if "resource_tracker" in command:
        return "resource tracker"
    if "multiprocessing" in command:
        return "multiprocessing child"
    words = command.split()
    return Path(words[1] if len(words) > 1 and "python" in words[0] else words[0]).name if words else "?"


def by_process(measured: _measure.Measured) -> list[tuple[str, float]]:
    """The tree at its RSS peak, largest first: (kind of process, RSS MB)."""
    rows = [(process_kind(command), rss / 1e6) for _pid, rss, command in measured.peak_breakdown]
    return sorted(rows, key=lambda row: -row[1])


def _error_tail(measured: _measure.Measured) -> str:
    lines = [line for line in measured.stderr.strip().splitlines() if line.strip()]
    return "\n".join(lines[-6:]) or f"exit status {measured.returncode}"


class Contender:
    name = ""
    timed_region = ""

    def __init__(self, urls: list[str], scratch: Path, args: argparse.Namespace) -> None:
        self.urls = urls
        self.scratch = scratch
        self.args = args
        self.urls_file = scratch / "urls.txt"
        self.urls_file.write_text("\n".join(urls) + "\n")
        self.runs: list[Run] = []
        self.settings: dict[str, Any] = {}

    def fresh_dir(self, tag: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=self.scratch))

    def run_once(self) -> Run:
        raise NotImplementedError

    def _driver(self, python: str, name: str, options: dict[str, Any], pythonpath: str | None) -> Run:
        workdir = self.fresh_dir(name)
        out = workdir / "result.json"
        cmd = [
            python,
            str(Path(__file__).resolve()),
            "_driver",
            name,
            "--urls",
            str(self.urls_file),
            "--dir",
            str(workdir),
            "--out",
            str(out),
            "--options",
            json.dumps(options),
        ]
        measured = _measure.run_measured(
            cmd,
            env=clean_env(workdir, pythonpath=pythonpath),
            cwd=workdir,
            timeout=RUN_TIMEOUT,
            pss=self.args.pss,
        )
        if measured.returncode != 0 or not out.is_file():
            return Run(ok=False, error=_error_tail(measured))
        data = json.loads(out.read_text())
        self.settings = data.get("settings", {})
        return Run(
            ok=True,
            cold_wall=data["cold_wall"],
            cold_cpu=data["cold_cpu"],
            repoll_wall=data["repoll_wall"],
            repoll_cpu=data["repoll_cpu"],
            cold_cpu_driver=data.get("cold_cpu_driver"),
            proc_wall=measured.wall,
            proc_cpu=measured.cpu,
            peak_rss_mb=measured.peak_rss_mb,
            peak_pss_mb=measured.peak_pss_mb if self.args.pss else None,
            peak_by_process=by_process(measured),
            sampler_cpu=measured.sampler_cpu,
            peak_procs=measured.peak_procs,
            entries=data["entries"],
            failed=data["failed"],
            repoll_note=self.repoll_note(data),
            per_feed=data["per_feed"],
            details=data.get("details") or {"errors": data.get("errors", {})},
        )

    def repoll_note(self, data: dict[str, Any]) -> str:
        return ""


class FlareStart(Contender):
    name = OURS
    timed_region = "ingest_sources(force=True)"

    def run_once(self) -> Run:
        options = {
            "per_host": self.args.per_host,
            "concurrency": self.args.concurrency,
            "parse_workers": self.args.parse_workers,
        }
        return self._driver(sys.executable, "flarestart", options, pythonpath=str(REPO))

    def repoll_note(self, data: dict[str, Any]) -> str:
        statuses = data.get("repoll_statuses", {})
        return ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))


class Reader(Contender):
    name = READER
    timed_region = f"update_feeds(workers={READER_WORKERS})"

    def __init__(self, urls: list[str], scratch: Path, args: argparse.Namespace, python: str) -> None:
        super().__init__(urls, scratch, args)
        self.python = python

    def run_once(self) -> Run:
        return self._driver(self.python, "reader", {"workers": READER_WORKERS}, pythonpath=None)

    def repoll_note(self, data: dict[str, Any]) -> str:
        return f"scheduled=False, {data.get('repoll_failed', 0)} feeds with errors"


class Rss2Email(Contender):
    name = R2E
    timed_region = "the whole `r2e run --no-send` command"

    def __init__(self, urls: list[str], scratch: Path, args: argparse.Namespace, r2e: str) -> None:
        super().__init__(urls, scratch, args)
        self.r2e = r2e

    def run_once(self) -> Run:
        workdir = self.fresh_dir("rss2email")
        env = clean_env(workdir)
        config, data = workdir / "rss2email.cfg", workdir / "rss2email.json"
        base = [self.r2e, "-c", str(config), "-d", str(data)]
        created = subprocess.run(
            [*base, "new", "bench@example.invalid"],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            return Run(ok=False, error=created.stderr.strip()[-2000:])
        # `r2e add` is one Python start per feed; writing its two files directly is the same.
        names = [f"feed-{i:05d}" for i in range(1, len(self.urls) + 1)]
        with config.open("a") as handle:
            for name, url in zip(names, self.urls, strict=True):
                handle.write(f"\n[feed.{name}]\nurl = {url}\n")
        feeds: list[dict[str, Any]] = [{"name": n, "etag": None, "modified": None, "seen": {}} for n in names]
        data.write_text(json.dumps({"version": 2, "feeds": feeds}, indent=2))

        command = [*base, "run", "--no-send"]
        cold = _measure.run_measured(command, env=env, cwd=workdir, timeout=RUN_TIMEOUT, pss=self.args.pss)
        if cold.returncode != 0:
            return Run(ok=False, error=_error_tail(cold))
        state = {f["name"]: f for f in json.loads(data.read_text())["feeds"]}
        again = _measure.run_measured(command, env=env, cwd=workdir, timeout=RUN_TIMEOUT, pss=self.args.pss)
        per_feed = {url: len(state[n]["seen"]) for n, url in zip(names, self.urls, strict=True)}
        # Our server always sends an ETag; a feed without one stored did not get through.
        failed = sorted(url for n, url in zip(names, self.urls, strict=True) if not state[n]["etag"])
        return Run(
            ok=True,
            cold_wall=cold.wall,
            cold_cpu=cold.cpu,
            repoll_wall=again.wall if again.returncode == 0 else None,
            repoll_cpu=again.cpu if again.returncode == 0 else None,
            proc_wall=cold.wall + again.wall,
            proc_cpu=cold.cpu + again.cpu,
            peak_rss_mb=max(cold.peak_rss_mb, again.peak_rss_mb),
            peak_pss_mb=max(cold.peak_pss_mb, again.peak_pss_mb) if self.args.pss else None,
            sampler_cpu=cold.sampler_cpu + again.sampler_cpu,
            peak_by_process=by_process(max(cold, again, key=lambda m: m.peak_rss)),
            peak_procs=max(cold.peak_procs, again.peak_procs),
            entries=sum(per_feed.values()),
            failed=failed,
            repoll_note="a second `r2e run --no-send`",
            per_feed=per_feed,
        )


def ensure_peer_venv() -> Path:
    """bench/.peers/venv with rss2email 3.14 and reader 3.26 (created once, then reused)."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".bench-packages"
    wanted = " ".join(PEER_PACKAGES)
    if python.exists() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        log(f"creating {PEER_VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    log(f"installing {wanted} into {PEER_VENV} (not project dependencies)")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *PEER_PACKAGES],
        check=True,
    )
    subprocess.run([str(python), "-c", "import reader, rss2email"], check=True)
    stamp.write_text(wanted)
    return python


# =============================================================================================
# Report
# =============================================================================================

METRICS = (
    "cold_wall",
    "cold_cpu",
    "cold_cpu_driver",
    "repoll_wall",
    "repoll_cpu",
    "proc_wall",
    "proc_cpu",
    "peak_rss_mb",
    "peak_pss_mb",
    "sampler_cpu",
    "peak_procs",
    "entries",
    "server_cpu",
)


def medians(runs: Sequence[Run]) -> dict[str, Any]:
    good = [r for r in runs if r.ok]
    result: dict[str, Any] = {m: _measure.median(getattr(r, m) for r in good) for m in METRICS}
    result["failed"] = _measure.median(len(r.failed) for r in good)
    result["runs_ok"] = len(good)
    result["runs"] = len(runs)
    return result


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def feed_shape(path: Path) -> tuple[str, int | None]:
    """The format and the number of items in a served file (a hint when counts differ)."""
    try:
        body = path.read_bytes()
    except OSError:
        return "?", None
    head = body[:4096].lstrip()
    if head[:1] in (b"{", b"["):
        try:
            return "json", len(json.loads(body).get("items", []))
        except (ValueError, AttributeError):
            return "json?", None
    kind = "atom" if b"<feed" in head else "rdf" if b"rdf:RDF" in head else "rss"
    items = len(re.findall(rb"<(?:\w+:)?(?:item|entry)[\s>/]", body))
    return kind, items


def entry_differences(
    folder: Path, urls: list[str], ours: Run, reader: Run, r2e: Run | None, top: int
) -> dict[str, Any]:
    rows = []
    for url in urls:
        a, b = ours.per_feed.get(url, 0), reader.per_feed.get(url, 0)
        if a != b or url in ours.failed or url in reader.failed:
            kind, items = feed_shape(folder / url.rsplit("/", 1)[-1])
            detail = ours.details.get(url, {})
            rows.append(
                {
                    "file": url.rsplit("/", 1)[-1],
                    "url": url,
                    "format": kind,
                    "items_in_file": items,
                    "ours": a,
                    "reader": b,
                    "rss2email": r2e.per_feed.get(url) if r2e else None,
                    "ours_status": detail.get("status"),
                    "ours_error": detail.get("error") or detail.get("warning"),
                    "reader_error": reader.details.get("errors", {}).get(url),
                }
            )
    rows.sort(key=lambda r: (-abs(r["ours"] - r["reader"]), r["file"]))
    more = sum(1 for r in rows if r["ours"] > r["reader"])
    fewer = sum(1 for r in rows if r["ours"] < r["reader"])
    failed = set(ours.failed) | set(reader.failed)
    both = [url for url in urls if url not in failed]
    return {
        "ours_total": ours.entries,
        "reader_total": reader.entries,
        "feeds_both_read": len(both),
        "ours_on_both": sum(ours.per_feed.get(url, 0) for url in both),
        "reader_on_both": sum(reader.per_feed.get(url, 0) for url in both),
        "ours_on_reader_failed": sum(ours.per_feed.get(url, 0) for url in reader.failed),
        "reader_failed": len(reader.failed),
        "feeds_same": len(urls) - more - fewer,
        "feeds_ours_more": more,
        "feeds_ours_fewer": fewer,
        "rows": rows[:top] if top else rows,
        "rows_total": len(rows),
    }


def target_lines(
    summary: dict[str, dict[str, Any]],
    synthetic: int | None,
    expected_entries: int | None,
    differences: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    ours = summary.get(OURS)
    lines: list[dict[str, Any]] = []

    def add(label: str, value: str, ok: bool | None) -> None:
        lines.append(
            {
                "target": label,
                "value": value,
                "result": "n/a" if ok is None else "PASS" if ok else "FAIL",
            }
        )

    if not ours or not ours["runs_ok"]:
        add("FlareStart ingest ran", "failed", False)
        return lines
    cold, repoll, rss = ours["cold_wall"], ours["repoll_wall"], ours["peak_rss_mb"]
    if synthetic:
        add(
            f"synthetic {synthetic}×{SYNTHETIC_ENTRIES}: cold ingest ≤ {SYNTHETIC_WALL_TARGET:.0f} s",
            f"{cold:.2f} s (whole process {ours['proc_wall']:.2f} s)",
            cold <= SYNTHETIC_WALL_TARGET,
        )
        add(
            f"synthetic: peak RSS ≤ {SYNTHETIC_RSS_TARGET_MB:.0f} MB",
            f"{rss:.0f} MB",
            rss <= SYNTHETIC_RSS_TARGET_MB,
        )
        if expected_entries:
            add(
                "synthetic: every entry stored",
                f"{ours['entries']:,.0f} of {expected_entries:,}",
                ours["entries"] == expected_entries,
            )
    else:
        add(f"cold ingest ≤ {COLD_TARGET:.0f} s wall", f"{cold:.2f} s", cold <= COLD_TARGET)
        add(f"cold ingest ≤ {COLD_STRETCH} s wall (stretch)", f"{cold:.2f} s", cold <= COLD_STRETCH)
        add(f"re-poll ≤ {REPOLL_TARGET} s", f"{repoll:.2f} s", repoll <= REPOLL_TARGET)
        add(f"peak RSS ≤ {RSS_TARGET_MB:.0f} MB", f"{rss:.0f} MB", rss <= RSS_TARGET_MB)
    for peer, target in ((READER, READER_RATIO_TARGET), (R2E, R2E_RATIO_TARGET)):
        other = summary.get(peer)
        if other is None:
            continue
        r = _measure.ratio(other["cold_wall"], cold)
        add(
            f"≥ {target:.0f}× faster than {peer} (cold wall)",
            f"{_fmt(r, 1)}×",
            None if r is None else r >= target,
        )
    other = summary.get(READER)
    if other is not None and other["entries"]:
        diff = (ours["entries"] - other["entries"]) / other["entries"]
        add(
            f"entries within {ENTRY_TOLERANCE:.0%} of reader's",
            f"{ours['entries']:,.0f} vs {other['entries']:,.0f} ({diff:+.2%})",
            abs(diff) <= ENTRY_TOLERANCE,
        )
    if differences and differences["reader_on_both"]:
        a, b = differences["ours_on_both"], differences["reader_on_both"]
        add(
            f"entries within {ENTRY_TOLERANCE:.0%} of reader's on the feeds both read"
            f" ({differences['feeds_both_read']})",
            f"{a:,} vs {b:,} ({(a - b) / b:+.2%})",
            abs(a - b) / b <= ENTRY_TOLERANCE,
        )
    return lines


def print_report(report: dict[str, Any]) -> None:
    summary: dict[str, dict[str, Any]] = report["summary"]
    print()
    print(
        f"Corpus: {report['corpus']} ({report['feeds']} feeds, {report['corpus_mb']:.1f} MB), "
        f"served by bot.testing.httpserver on loopback; {report['cpus']} CPUs; "
        f"load average before / after: {report['loadavg']} / {report['loadavg_after']}"
    )
    busiest = max(float(x) for x in f"{report['loadavg']} {report['loadavg_after']}".split()[::3])
    if busiest > 0.5 * (report["cpus"] or 1):
        print(
            f"NOTE: the machine was busy (1-minute load up to {busiest:.1f} on {report['cpus']} CPUs): "
            "walls are inflated; trust the medians and ratios more than single numbers."
        )
    print(
        "Medians over runs. cold / re-poll = timed region inside the driver (setup such as "
        "creating the DB and adding the sources is not timed);"
    )
    print(
        "proc = the whole subprocess; CPU = user+sys of the process tree; peak RSS = sum over "
        "the process tree, sampled every 20 ms"
    )
    if report["pss"]:
        print(
            "(PSS = the same tree's proportional set size at that peak: pages shared between its "
            "processes counted once; sampled at most every 250 ms)."
        )
    for name, timed in report["timed_regions"].items():
        print(f"  {name}: timed region = {timed}")
    if report.get("flarestart_settings"):
        s = report["flarestart_settings"]
        print(
            f"  flarestart settings: fetch.concurrency={s.get('concurrency')}, fetch.per_host="
            f"{s.get('per_host')} (all feeds share one loopback host), parse workers="
            f"{s.get('parse_workers')}"
        )
    print()
    header = (
        "contender",
        "runs",
        "cold wall s",
        "cold CPU s",
        "re-poll s",
        "proc wall s",
        "proc CPU s",
        "peak RSS MB",
        *(["(PSS)"] if report["pss"] else []),
        "procs",
        "entries",
        "failed",
        "server CPU s",
    )
    rows = []
    for name, med in summary.items():
        rows.append(
            (
                name,
                f"{med['runs_ok']}/{med['runs']}",
                _fmt(med["cold_wall"]),
                _fmt(med["cold_cpu"]),
                _fmt(med["repoll_wall"]),
                _fmt(med["proc_wall"]),
                _fmt(med["proc_cpu"]),
                _fmt(med["peak_rss_mb"], 0),
                *([_fmt(med["peak_pss_mb"], 0)] if report["pss"] else []),
                _fmt(med["peak_procs"], 0),
                _fmt(med["entries"], 0),
                _fmt(med["failed"], 0),
                _fmt(med["server_cpu"]),
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for name, runs in report["runs"].items():
        for i, run in enumerate(runs, 1):
            if not run["ok"]:
                print(f"\n{name} run {i} FAILED:\n  " + run["error"].replace("\n", "\n  "))
    notes = {
        name: runs[0]["repoll_note"]
        for name, runs in report["runs"].items()
        if runs and runs[0]["ok"] and runs[0]["repoll_note"]
    }
    print(
        "\nThe parent's RSS sampling took (CPU per run, median; it shares the 2 cores): "
        + ", ".join(f"{name} {_fmt(med['sampler_cpu'])} s" for name, med in summary.items())
    )
    for name, med in summary.items():
        own, total = med.get("cold_cpu_driver"), med.get("cold_cpu")
        if own is not None and total is not None and total - own > 0.05:
            print(
                f"Cold CPU of {name} (median): driver process {own:.2f} s (fetch, store, event"
                f" loop) + its other processes {total - own:.2f} s (the parse pool)"
            )
    if notes:
        print("Re-poll (run 1; CPU = median of the timed region):")
        for name, note in notes.items():
            print(f"  {name}: {note}; CPU {_fmt(summary[name]['repoll_cpu'])} s")
    failed = {
        name: runs[0]["failed"]
        for name, runs in report["runs"].items()
        if runs and runs[0]["ok"] and runs[0]["failed"]
    }
    for name, urls in failed.items():
        shown = ", ".join(u.rsplit("/", 1)[-1] for u in urls[:8])
        print(f"Failed sources, {name} (run 1): {len(urls)}: {shown}{' …' if len(urls) > 8 else ''}")
    for name, runs in report["runs"].items():
        if runs and runs[0]["ok"] and len(runs[0]["peak_by_process"]) > 1:
            parts = ", ".join(f"{kind} {mb:.0f}" for kind, mb in runs[0]["peak_by_process"])
            print(f"RSS at the peak, {name} (run 1), MB: {parts}")

    if report["ratios"]:
        print("\nRatios (peer / flarestart, medians; higher = flarestart better):")
        for peer, ratios in report["ratios"].items():
            print(
                f"  {peer:<15} cold wall {_fmt(ratios['cold_wall'], 1)}×   cold CPU "
                f"{_fmt(ratios['cold_cpu'], 1)}×   re-poll {_fmt(ratios['repoll_wall'], 1)}×   "
                f"proc wall {_fmt(ratios['proc_wall'], 1)}×   peak RSS "
                f"{_fmt(ratios['peak_rss_mb'], 1)}×"
            )

    diff = report.get("entry_differences")
    if diff:
        print(
            f"\nEntry counts vs reader (run 1): flarestart {diff['ours_total']:,}, reader "
            f"{diff['reader_total']:,}; {diff['feeds_same']} feeds equal, "
            f"{diff['feeds_ours_more']} with more on our side, {diff['feeds_ours_fewer']} "
            f"with fewer."
        )
        print(
            f"  {diff['reader_failed']} feeds failed in reader (it drops a feed whole when one "
            f"entry has no id, or on a parse error); we stored {diff['ours_on_reader_failed']:,} "
            f"entries from them."
        )
        print(
            f"  On the {diff['feeds_both_read']} feeds both read: flarestart "
            f"{diff['ours_on_both']:,}, reader {diff['reader_on_both']:,}. Largest differences:"
        )
        if diff["rows"]:
            print(f"  {'file':<20} {'format':<6} {'in file':>7} {'ours':>5} {'reader':>6} {'r2e':>5}  notes")
            for row in diff["rows"]:
                why = "; ".join(
                    f"{label}: {text}"
                    for label, text in (
                        ("ours", row["ours_error"]),
                        ("reader", row["reader_error"]),
                    )
                    if text
                )
                print(
                    f"  {row['file']:<20} {row['format']:<6} {_fmt(row['items_in_file'], 0):>7} "
                    f"{row['ours']:>5} {row['reader']:>6} {_fmt(row['rss2email'], 0):>5}  "
                    f"{why[:110]}"
                )
            if diff["rows_total"] > len(diff["rows"]):
                print(f"  … {diff['rows_total'] - len(diff['rows'])} more (--diff-top 0 for all)")
        print("  ('in file' counts <item>/<entry> elements, or JSON items: a hint, not a parse)")

    print("\nTargets:")
    width = max((len(t["target"]) for t in report["targets"]), default=0)
    for t in report["targets"]:
        print(f"  {t['result']:<4}  {t['target']:<{width}}  {t['value']}")
    print()


# =============================================================================================
# Main
# =============================================================================================


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark FlareStart ingestion on a loopback-served feed folder.",
    )
    parser.add_argument(
        "corpus",
        nargs="?",
        type=Path,
        default=None,
        help=f"folder of feed files (default: {DEFAULT_CORPUS.resolve()})",
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        help=f"generate and serve N RSS feeds × {SYNTHETIC_ENTRIES} entries instead",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of --synthetic (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="FlareStart runs (default 3)")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run rss2email 3.14 and reader 3.26 (own virtualenv)",
    )
    parser.add_argument("--peer-runs", type=int, default=1, help="runs of each peer (default 1)")
    parser.add_argument("--port", type=int, default=0, help="server port (default: any free)")
    parser.add_argument(
        "--per-host",
        type=int,
        default=16,
        help="fetch.per_host for FlareStart (default 16: on loopback every feed "
        "shares one host, unlike the internet; 0 = the setting's default)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="fetch.concurrency for FlareStart (0 = the setting's default)",
    )
    parser.add_argument(
        "--parse-workers",
        type=int,
        default=0,
        help="fetch.parse_workers for FlareStart (0 = the setting's default)",
    )
    parser.add_argument(
        "--diff-top",
        type=int,
        default=15,
        help="feeds to list whose entry counts differ from reader's (0 = all)",
    )
    parser.add_argument(
        "--pss",
        action="store_true",
        help="also sample the tree's PSS (shared pages counted once); costlier, perturbs timings",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases in bench/.work")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_driver"]:
        return driver_main(argv[1:])
    args = parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if args.synthetic:
        folder = synthetic_corpus(args.synthetic, args.seed)
    else:
        folder = (args.corpus or DEFAULT_CORPUS).resolve()
    if not folder.is_dir():
        raise SystemExit(f"no such corpus folder: {folder}")

    peer_python: Path | None = None
    if args.peers:
        try:
            peer_python = ensure_peer_venv()
        except (OSError, subprocess.CalledProcessError) as exc:
            log(f"cannot set up the peers' virtualenv, running without peers: {exc}")

    scratch = Path(tempfile.mkdtemp(prefix="ingest-", dir=WORK))
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        with serve(folder, args.port, scratch / "server-home") as (urls, server_pid):
            contenders: list[Contender] = [FlareStart(urls, scratch, args)]
            counts = {OURS: args.runs}
            if peer_python is not None:
                contenders.append(Reader(urls, scratch, args, str(peer_python)))
                contenders.append(Rss2Email(urls, scratch, args, str(PEER_VENV / "bin" / "r2e")))
                counts |= {READER: args.peer_runs, R2E: args.peer_runs}
            # Interleave the contenders round by round, so a noisy spell hits them alike.
            for round_ in range(max(counts.values())):
                for contender in contenders:
                    if round_ >= counts[contender.name]:
                        continue
                    log(f"{contender.name}: run {round_ + 1}/{counts[contender.name]} …")
                    server_cpu = _measure.cpu_seconds(server_pid)
                    run = contender.run_once()
                    run.server_cpu = _measure.cpu_seconds(server_pid) - server_cpu
                    contender.runs.append(run)
                    if run.ok:
                        log(
                            f"  cold {_fmt(run.cold_wall)} s, re-poll {_fmt(run.repoll_wall)} s, "
                            f"proc {_fmt(run.proc_wall)} s, "
                            f"peak RSS {_fmt(run.peak_rss_mb, 0)} MB, "
                            f"{run.entries} entries, {len(run.failed)} failed"
                        )
                    else:
                        log(f"  FAILED: {run.error.splitlines()[-1] if run.error else '?'}")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    report = build_report(args, folder, urls, contenders, loadavg)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    ours = report["summary"][OURS]
    return 0 if ours["runs_ok"] else 1


def build_report(
    args: argparse.Namespace,
    folder: Path,
    urls: list[str],
    contenders: list[Contender],
    loadavg: str,
) -> dict[str, Any]:
    by_name = {c.name: c for c in contenders}
    summary = {c.name: medians(c.runs) for c in contenders}
    ours = summary[OURS]
    ratios = {}
    for peer in (READER, R2E):
        if peer in summary and ours["runs_ok"] and summary[peer]["runs_ok"]:
            ratios[peer] = {
                m: _measure.ratio(summary[peer][m], ours[m])
                for m in ("cold_wall", "cold_cpu", "repoll_wall", "proc_wall", "peak_rss_mb")
            }
    first_ok = {c.name: next((r for r in c.runs if r.ok), None) for c in contenders}
    differences = None
    ours_run, reader_run = first_ok.get(OURS), first_ok.get(READER)
    if ours_run and reader_run:
        differences = entry_differences(folder, urls, ours_run, reader_run, first_ok.get(R2E), args.diff_top)
    expected = args.synthetic * SYNTHETIC_ENTRIES if args.synthetic else None
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return {
        "corpus": str(folder),
        "mode": f"synthetic {args.synthetic}" if args.synthetic else "corpus",
        "feeds": len(urls),
        "corpus_mb": size / 1e6,
        "cpus": os.cpu_count(),
        "pss": args.pss,
        "loadavg": loadavg,
        "loadavg_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "timed_regions": {c.name: c.timed_region for c in contenders},
        "flarestart_settings": by_name[OURS].settings,
        "summary": summary,
        "ratios": ratios,
        "targets": target_lines(summary, args.synthetic, expected, differences),
        "entry_differences": differences,
        "runs": {c.name: [r.summary() for r in c.runs] for c in contenders},
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
