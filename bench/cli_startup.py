"""CLI start-up benchmark: how long `flarestart` takes before it does anything, against peers.

    .venv/bin/python bench/cli_startup.py                # ours + the interpreter floor, 15 runs
    .venv/bin/python bench/cli_startup.py --peers        # + rss2email and reader (bench/.peers/venv)
    .venv/bin/python bench/cli_startup.py --fetch        # + `fetch --all` over feeds-200 as a command
    .venv/bin/python bench/cli_startup.py --baseline ../main/.venv/bin/flarestart   # + that checkout
    .venv/bin/python bench/cli_startup.py --json

Every command runs as a subprocess, wall time from spawn to exit, interleaved round by round
(so a noisy spell hits every contender alike); the report prints the medians, the ratio to the
interpreter floor (`python -c pass` of the same venv) and the issue's targets. Each command runs
once first, untimed: that run creates and migrates the scratch database and seeds the sources,
which is a first start's work, not every start's.

`--fetch` serves the corpus on loopback with bench/ingest.py's server and compares, on fresh
databases holding the same 200 sources, the in-process figure of bench/ingest.py (its driver's
timed `ingest_sources` call) with the whole `flarestart fetch --all` command; then it runs the
command's steps in one process with a timestamp after each (`_phases`), to say where the
difference goes.
"""

from __future__ import annotations

import os
import sys

# As in ingest.py: bench/ must not shadow the standard library (see bench/README.md).
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))

import ingest  # the corpus server, the peers' virtualenv and the in-process ingest driver

REPO = ingest.REPO
VENV_BIN = Path(sys.executable).parent  # run with the project's .venv/bin/python
LIGHT_TARGET, HELP_TARGET, FETCH_GAP_TARGET = 0.35, 0.15, 0.4
COMMANDS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("--version",), HELP_TARGET),
    (("--help",), HELP_TARGET),
    (("sources", "list"), LIGHT_TARGET),
    (("config", "show"), LIGHT_TARGET),
    (("topics", "list"), LIGHT_TARGET),
)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass
class Contender:
    label: str
    argv: list[str]
    target: float | None = None
    env: dict[str, str] | None = None
    times: list[float] = field(default_factory=list)

    def run(self, *, timed: bool = True) -> None:
        started = time.perf_counter()
        done = subprocess.run(self.argv, env=self.env, capture_output=True, timeout=120, cwd=REPO)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{self.label} exited {done.returncode}:\n{done.stderr.decode()[-2000:]}")
        if timed:
            self.times.append(elapsed)


def flarestart_env(home: Path) -> dict[str, str]:
    env = ingest.clean_env(home)
    env |= {"FLARESTART_DATA_DIR": str(home / "data"), "FLARESTART_SUBSCRIBERS_DIR": str(home / "subs")}
    return env


def start_up_contenders(home: Path, peers: Path | None, baseline: Path | None) -> list[Contender]:
    env = flarestart_env(home)
    python = str(VENV_BIN / "python")
    contenders = [Contender("python -c pass (floor)", [python, "-c", "pass"], env=env)]
    for args, target in COMMANDS:
        words = " ".join(args)
        contenders.append(
            Contender(f"flarestart {words}", [str(VENV_BIN / "flarestart"), *args], target, env)
        )
        contenders.append(Contender(f"python -m bot {words}", [python, "-m", "bot", *args], target, env))
        if baseline is not None:  # another checkout's script (main's, say), with a data folder of its own
            base_env = flarestart_env(home / "baseline")
            contenders.append(
                Contender(f"baseline: flarestart {words}", [str(baseline), *args], None, base_env)
            )
    if peers is not None:
        peer_env = ingest.clean_env(home / "peers")
        contenders.append(
            Contender("rss2email: r2e --version", [str(peers.parent / "r2e"), "--version"], None, peer_env)
        )
        contenders.append(
            Contender(
                "reader: python -m reader --help", [str(peers), "-m", "reader", "--help"], None, peer_env
            )
        )
    return contenders


def peer_python() -> Path | None:
    """bench/.peers/venv (bench/ingest.py makes it), plus reader's CLI extra for `python -m reader`."""
    try:
        python = ingest.ensure_peer_venv()
        check = subprocess.run([str(python), "-m", "reader", "--help"], capture_output=True, timeout=60)
        if check.returncode != 0:
            log("installing reader[cli]==3.26 into the peers' virtualenv (its CLI needs click)")
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "reader[cli]==3.26",
                ],
                check=True,
            )
        return python
    except (OSError, subprocess.CalledProcessError) as exc:
        log(f"no peers: cannot set up {ingest.PEER_VENV}: {exc}")
        return None


def measure_start_up(args: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    peers = peer_python() if args.peers else None
    contenders = start_up_contenders(scratch / "home", peers, args.baseline)
    for contender in contenders:  # the first start migrates and seeds: not what we measure
        contender.run(timed=False)
    for round_ in range(args.runs):
        log(f"start-up round {round_ + 1}/{args.runs}")
        for contender in contenders:
            contender.run()
    floor = statistics.median(contenders[0].times)
    return [
        {
            "command": c.label,
            "argv": " ".join(c.argv),
            "median": statistics.median(c.times),
            "min": min(c.times),
            "over_floor": statistics.median(c.times) - floor,
            "ratio_to_floor": statistics.median(c.times) / floor,
            "target": c.target,
            "runs": len(c.times),
        }
        for c in contenders
    ]


# -- fetch --all as a command, against the in-process figure ------------------------------------

# The same sources as bench/ingest.py's driver, and the seed flag set as after a first run: the
# command must not add FlareStart's five default (internet) sources to the loopback corpus.
ADD_SOURCES = """
import sys
from bot.config import load_settings
from bot.sources.defaults import SEEDED_FLAG
from bot.store import NewSource, Store
urls = open(sys.argv[1]).read().split()
store = Store.open(load_settings())
store.add_sources([NewSource(name=f"feed-{i:05d}", url=u) for i, u in enumerate(urls, 1)])
store.set_meta(SEEDED_FLAG, "1")
store.close()
"""


def fetch_env(home: Path, per_host: int) -> dict[str, str]:
    env = flarestart_env(home)
    env |= {
        "FLARESTART_ALLOW_PRIVATE_URLS": "1",
        "FLARESTART_LOG_LEVEL": "WARNING",
        "FLARESTART_FETCH_PER_HOST": str(per_host),
        "COLUMNS": "120",
    }
    return env


def measure_fetch(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    folder = (args.corpus or ingest.DEFAULT_CORPUS).resolve()
    python = str(VENV_BIN / "python")
    in_process, command, phases = [], [], []
    with ingest.serve(folder, 0, scratch / "server-home") as (urls, _pid):
        url_file = scratch / "urls.txt"
        url_file.write_text("\n".join(urls))
        for round_ in range(args.fetch_runs):
            log(f"fetch round {round_ + 1}/{args.fetch_runs}")
            # bench/ingest.py's figure: its driver's timed ingest_sources call, on a fresh database.
            workdir, out = scratch / f"inproc-{round_}", scratch / f"inproc-{round_}.json"
            options = json.dumps({"per_host": args.per_host})
            driver = [python, str(REPO / "bench" / "ingest.py"), "_driver", "flarestart"]
            driver += [
                "--urls",
                str(url_file),
                "--dir",
                str(workdir),
                "--out",
                str(out),
                "--options",
                options,
            ]
            subprocess.run(driver, env=ingest.clean_env(scratch / "inproc-home"), check=True, cwd=REPO)
            in_process.append(json.loads(out.read_text())["cold_wall"])

            # The command, spawn to exit, on a fresh database with the same sources (setup untimed).
            env = fetch_env(scratch / f"cmd-{round_}", args.per_host)
            subprocess.run([python, "-c", ADD_SOURCES, str(url_file)], env=env, check=True, cwd=REPO)
            started = time.perf_counter()
            done = subprocess.run(
                [str(VENV_BIN / "flarestart"), "fetch", "--all"], env=env, capture_output=True, cwd=REPO
            )
            command.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(
                    f"flarestart fetch --all exited {done.returncode}: {done.stderr.decode()[-2000:]}"
                )
            lines = done.stdout.decode().strip().splitlines()
            summary = next((line for line in lines if " sources: " in line), lines[-1])

            # The same steps in one process, stamped, to see where the time goes.
            env = fetch_env(scratch / f"phases-{round_}", args.per_host)
            subprocess.run([python, "-c", ADD_SOURCES, str(url_file)], env=env, check=True, cwd=REPO)
            spawned = time.time()
            done = subprocess.run(
                [python, str(Path(__file__).resolve()), "_phases"], env=env, capture_output=True, cwd=REPO
            )
            exited = time.time()
            if done.returncode != 0:
                raise SystemExit(f"_phases failed: {done.stderr.decode()[-2000:]}")
            stamps = json.loads(done.stderr.decode().strip().splitlines()[-1])
            entered, left = stamps.pop("entered"), stamps.pop("left")  # wall clock, shared by both
            phases.append(
                {
                    "interpreter start (+ this script's imports)": entered - spawned,
                    **stamps,
                    "exit: interpreter teardown": exited - left,
                }
            )
    ours_in, ours_cmd = statistics.median(in_process), statistics.median(command)
    return {
        "corpus": str(folder),
        "feeds": len(urls),
        "per_host": args.per_host,
        "runs": args.fetch_runs,
        "in_process": ours_in,
        "command": ours_cmd,
        "gap": ours_cmd - ours_in,
        # each round's command against the same round's in-process figure, run seconds apart: on a
        # shared machine the load of a spell hits both, so this median moves less than the above
        "paired_gap": statistics.median(c - i for c, i in zip(command, in_process, strict=True)),
        "in_process_runs": in_process,
        "command_runs": command,
        "summary_line": summary,
        "phases": {key: statistics.median(p[key] for p in phases) for key in phases[0]},
    }


def phases_main() -> int:
    """`flarestart fetch --all`, step by step as bot/cli/fetching.py and FlareStart.fetch do it, with a stamp after
    each; the stamps go to stderr as one JSON line (stdout gets the command's own output)."""
    entered = time.time()
    stamps: dict[str, float] = {}
    last = time.perf_counter()

    def stamp(label: str) -> None:
        nonlocal last
        now = time.perf_counter()
        stamps[label] = now - last
        last = now

    import asyncio
    from contextlib import ExitStack

    import bot.cli  # noqa: F401 - what every command imports
    from bot.cli.common import state
    from bot.cli.fetching import collections_paused

    state.one_shot = True  # as in the flarestart script: the process ends with the command
    stamp("import bot.cli")
    paused = ExitStack()
    paused.enter_context(collections_paused())  # as the command: no collections until ingest
    settings = state.get_settings()
    stamp("settings (pydantic) + logging")
    from bot.sources.parse_pool import start_parse_pool

    pool = start_parse_pool(settings)  # as the command: the parser processes start meanwhile
    stamp("start the parse pool (it loads on the other core)")
    from bot.app import FlareStart
    from bot.cli.fetching import _print_reports, fetch_progress, freeze_heap_then
    from bot.sources.ingest import ingest_sources

    stamp("imports of fetch (store, ingest, parser)")
    with FlareStart(settings) as flarestart:  # as `open_app`: the store opens on first use
        store = flarestart.store
        stamp("open store: engine, migrations check, seed check")
        with fetch_progress() as (started, advanced):
            reports = asyncio.run(
                ingest_sources(
                    store,
                    settings,
                    force=True,
                    on_start=freeze_heap_then(started),
                    on_progress=advanced,
                    pool=pool,
                )
            )
        stamp("ingest")
        store.next_due_at()
        pool.shutdown(wait=True, cancel_futures=True)
    paused.close()
    stamp("next due, close store, stop the pool")
    _print_reports(reports)
    stamp("summary table")
    print(json.dumps({**stamps, "entered": entered, "left": time.time()}), file=sys.stderr)
    return 0


# -- report ---------------------------------------------------------------------------------------


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f"≤ {target:.2f} s  {'PASS' if value <= target else 'FAIL'}"


def print_report(report: dict[str, Any]) -> None:
    print(
        f"CLI start-up, median of {report['runs']} runs each (wall, spawn to exit); "
        f"{report['cpus']} CPUs, load average {report['loadavg']} at start"
    )
    rows = report["start_up"]
    width = max(len(r["command"]) for r in rows)
    print(f"  {'command':<{width}}  {'median':>7}  {'min':>6}  {'floor+':>7}  {'× floor':>7}  target")
    for r in rows:
        print(
            f"  {r['command']:<{width}}  {r['median']:>6.3f}s  {r['min']:>5.3f}s  {r['over_floor']:>6.3f}s"
            f"  {r['ratio_to_floor']:>6.1f}×  {verdict(r['median'], r['target'])}"
        )
    fetch = report.get("fetch")
    if fetch:
        print(
            f"\nfetch --all over {fetch['feeds']} feeds ({fetch['corpus']}), fetch.per_host={fetch['per_host']}, "
            f"median of {fetch['runs']} fresh databases:"
        )
        print(f"  in-process (bench/ingest.py's timed ingest_sources)  {fetch['in_process']:.3f} s")
        print(f"  the command `flarestart fetch --all`, spawn to exit   {fetch['command']:.3f} s")
        print(
            f"  difference                                            {fetch['gap']:.3f} s  {verdict(fetch['gap'], FETCH_GAP_TARGET)}"
        )
        print(
            f"  difference within each round (median)                 {fetch['paired_gap']:.3f} s  "
            f"{verdict(fetch['paired_gap'], FETCH_GAP_TARGET)}"
        )
        print(f"  the command's summary: {fetch['summary_line']}")
        print("  where the command's time goes (`_phases`, medians):")
        for label, seconds in fetch["phases"].items():
            print(f"    {label:<52} {seconds:.3f} s")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark how fast `flarestart` starts, against peers.")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command (default 15)")
    parser.add_argument("--peers", action="store_true", help="also time rss2email and reader (own venv)")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="SCRIPT",
        help="also time another checkout's `flarestart` script, e.g. ../main/.venv/bin/flarestart",
    )
    parser.add_argument("--fetch", action="store_true", help="also time `fetch --all` over the corpus")
    # Five: on the shared 2-core machine one round's command swings by ±0.5 s; three medians lied.
    parser.add_argument("--fetch-runs", type=int, default=5, help="rounds of --fetch (default 5)")
    parser.add_argument(
        "--corpus", type=Path, help=f"feed folder for --fetch (default {ingest.DEFAULT_CORPUS})"
    )
    parser.add_argument("--per-host", type=int, default=16, help="fetch.per_host, as bench/ingest.py (16)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_phases"]:
        return phases_main()
    args = parse_args(argv)
    ingest.WORK.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="cli-startup-", dir=ingest.WORK))
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        report: dict[str, Any] = {
            "runs": args.runs,
            "cpus": os.cpu_count(),
            "loadavg": loadavg,
            "start_up": measure_start_up(args, scratch),
        }
        if args.fetch:
            report["fetch"] = measure_fetch(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
