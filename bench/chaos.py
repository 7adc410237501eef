"""The reliability suite: `flarestart run` killed, its SMTP server gone, its PostgreSQL restarted.

    .venv/bin/python bench/chaos.py --db sqlite                 # the full run (~8-10 minutes)
    .venv/bin/python bench/chaos.py --db postgresql             # + a private cluster restarted
    .venv/bin/python bench/chaos.py --db sqlite --quick         # a short run (~2-3 minutes)
    .venv/bin/python bench/chaos.py --db postgresql --phases kills --json

Everything is on loopback. Each phase makes a fresh database with one source of today's stories
and subscribers whose delivery times are spread over the next minutes (a day of digests, pressed
together), starts the real daemon (`python -m bot run`, a subprocess in its own session, its
drafting child included) against an SMTP sink (bench/_sink.py: aiosmtpd, counting Message-IDs),
and waits until every planned digest's ledger row is sent:

- kills: the daemon's whole process group is SIGKILLed at random moments (20 times; --kills) and
  started again at once.
- smtp: the sink is stopped for 2 minutes (--outage) once sending has begun, then started again
  on the same port.
- pg (only with --db postgresql): a PRIVATE PostgreSQL cluster (initdb in a temporary folder, on
  a port of its own, with the machine's binaries in /usr/lib/postgresql/*/bin; the shared server
  at 127.0.0.1:5432 is never restarted) is stopped mid-run for --pg-down seconds and started
  again; the daemon must reconnect.

Each phase reports: digests planned (send jobs) and sent (ledger rows), lost (planned digests
whose Message-ID never reached the sink: must be 0), sent twice (Message-IDs that arrived more
than once; each is the same Message-ID by construction, and their number must stay within the
in-flight bound: kills × delivery.workers), the longest and median delay (ledger sent_at minus
the subscriber's delivery moment), and how often the daemon exited on its own (must be 0).
The process exits 1 when a phase breaks one of these.
"""

from __future__ import annotations

import os
import sys

# bench/ holds scripts whose names can shadow the standard library: move it to the end of the path.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import argparse
import contextlib
import glob
import json
import random
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
SINK = ROOT / "bench" / "_sink.py"
SECRET = "chaos-bench-secret-key-0123456789"
SHARED_PG = os.environ.get("FLARESTART_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
WORKERS = 8  # delivery.workers: sends in flight in one daemon, the bound on doubles per kill


@dataclass
class PhaseResult:
    phase: str
    db: str
    digests: int
    planned: int = 0
    sent: int = 0
    lost: int = 0
    sent_twice: int = 0
    twice_same_id: bool = True
    in_flight_bound: int = 0
    kills: int = 0
    unexpected_exits: int = 0
    longest_delay_s: float = 0.0
    median_delay_s: float = 0.0
    wall_s: float = 0.0
    unexpected_ids: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.sent == self.digests
            and self.sent_twice <= self.in_flight_bound
            and self.unexpected_exits == 0
            and self.unexpected_ids == 0
        )


# -- the SMTP sink ----------------------------------------------------------------------------------


class Sink:
    """bench/_sink.py in its own process; stop() keeps what it counted, start() comes back on the
    same port."""

    def __init__(self, delay: float) -> None:
        self.port = 0
        self.delay = delay
        self.ids: Counter[str] = Counter()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SINK), "--port", str(self.port), "--delay", str(self.delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(json.loads(self.process.stdout.readline())["port"])

    def _ask(self, word: str) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def stop(self) -> None:
        if self.process is None:
            return
        dumped = self._ask("dump")
        self.ids.update({key: int(n) for key, n in dumped["ids"].items()})
        self._ask("quit")
        self.process.wait(timeout=30)
        self.process = None

    def received(self) -> Counter[str]:
        """Message-ID → copies, over every life of the sink."""
        if self.process is None:
            return Counter(self.ids)
        now = Counter(self.ids)
        now.update({key: int(n) for key, n in self._ask("dump")["ids"].items()})
        return now


# -- PostgreSQL -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateCluster:
    """A throwaway PostgreSQL cluster of our own (never the shared one), run as the postgres user."""

    def __init__(self, folder: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not found:
            raise SystemExit("no PostgreSQL binaries in /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1])
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def shared_schema_url() -> tuple[str, str]:
    """A fresh schema in the machine's PostgreSQL (as the tests make them) and its URL."""
    from sqlalchemy import text

    from bot.store.engine import make_engine, normalize_database_url

    schema = "chaos_" + uuid.uuid4().hex[:10]
    admin = make_engine(SHARED_PG)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = normalize_database_url(SHARED_PG)
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}", schema


def drop_shared_schema(schema: str) -> None:
    from sqlalchemy import text

    from bot.store.engine import make_engine

    admin = make_engine(SHARED_PG)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


# -- a day of digests ---------------------------------------------------------------------------------


def environment(folder: Path, database_url: str, smtp_port: int, lease: float) -> dict[str, str]:
    config = folder / "flarestart.toml"
    config.write_text("sources = []\n", encoding="utf-8")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLARESTART_")},
        "FLARESTART_CONFIG": str(config),
        "FLARESTART_DATA_DIR": str(folder / "data"),
        "DATABASE_URL": database_url,
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "FLARESTART_EMAIL_ALLOW_PLAIN": "1",
        "FLARESTART_EMAIL_FROM_ADDRESS": "FlareStart <digest@chaos.bench.example>",
        "FLARESTART_DELIVERY_LEASE_SECONDS": str(lease),
        "SECRET_KEY": SECRET,
        "FLARESTART_LOG_FORMAT": "json",
    }


def prepare(env: dict[str, str], digests: int, spread: timedelta, start: datetime) -> dict[int, datetime]:
    """The store: one source of today's stories (never due for a fetch: no network), and
    `digests` subscribers due one after another over `spread` from `start`. Returns each
    subscriber's delivery moment."""
    from sqlalchemy import update

    from bot.config import load_settings
    from bot.ranking.types import TopicMatch
    from bot.sources.types import ParsedEntry
    from bot.store import NewSource, Store
    from bot.store.models import Source
    from bot.store.subscribers import SubscriberStore

    settings = load_settings(env)
    store = Store.open(settings)
    try:
        source = store.add_source(NewSource("Chaos Daily", "http://127.0.0.1:9/feed")).id
        assert source is not None
        now = datetime.now(UTC).replace(microsecond=0)
        entries = [
            ParsedEntry(
                key=f"s{n}",
                guid=f"s{n}",
                url=f"https://chaos.example/{n}",
                title=f"Python story {n}",
                excerpt=f"What happened to Python today, part {n}.",
                author="Lin",
                published=now - timedelta(minutes=20 + 7 * n),
                content_hash=f"s{n}",
                topics=(TopicMatch("python", 0.9, ("python",)),),
            )
            for n in range(40)
        ]
        store.save_entries(source, entries, now=now)
        with store.engine.begin() as conn:  # never due: the daemon's fetch loop stays off the network
            conn.execute(
                update(Source.__table__).values(next_fetch_at=now + timedelta(days=30))  # type: ignore[arg-type]
            )
        subscribers = SubscriberStore(store.engine)
        due: dict[int, datetime] = {}
        for n in range(digests):
            moment = (start + spread * n / max(digests, 1)).replace(second=0, microsecond=0)
            row = subscribers.add(
                {
                    "email": f"reader{n}@chaos.example",
                    "timezone": "UTC",
                    "delivery_time": moment.strftime("%H:%M"),
                    "topics": {"python": 1.0},
                }
            )
            assert row.id is not None
            due[row.id] = moment
    finally:
        store.close()
    return due


class Daemon:
    """`python -m bot run` in a session of its own; kill() SIGKILLs the whole group."""

    def __init__(self, env: dict[str, str], log: IO[bytes]) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None
        self.unexpected_exits = 0
        self.starts = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        self.starts += 1

    def check(self) -> None:
        """A daemon that exited on its own is counted (a service that gives up) and restarted."""
        if self.process is not None and self.process.poll() is not None:
            self.unexpected_exits += 1
            self.log.write(
                f"\n### bench: the daemon exited on its own ({self.process.returncode})\n".encode()
            )
            self.start()

    def kill(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()


def ledger(database_url: str) -> tuple[int, int, list[tuple[int, str, str, datetime | None]]]:
    """(send jobs planned, sent rows, every delivery row) read straight from the database."""
    from sqlalchemy import func, select

    from bot.store.engine import make_engine
    from bot.store.models import Delivery, Job

    engine = make_engine(database_url)
    try:
        d, j = Delivery.__table__.c, Job.__table__.c  # type: ignore[attr-defined]
        with engine.connect() as conn:
            planned = conn.execute(select(func.count()).where(j.task == "send_digest")).scalar_one()
            rows = conn.execute(select(d.subscriber_id, d.period, d.status, d.sent_at)).all()
    finally:
        engine.dispose()
    sent = sum(1 for row in rows if row.status == "sent")
    return int(planned), sent, [(int(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]


def expected_ids(env: dict[str, str], due: dict[int, datetime]) -> dict[str, int]:
    """Message-ID each subscriber's digest must carry → subscriber id."""
    from bot.channels.email import make_message_id, message_id_domain
    from bot.config import load_settings
    from bot.links.secret import resolve_secret

    settings = load_settings(env)
    domain, key = message_id_domain(settings.email), resolve_secret(settings)
    return {
        make_message_id(sid, moment.strftime("%Y-%m-%d"), domain, key=key): sid for sid, moment in due.items()
    }


# -- the phases -------------------------------------------------------------------------------------


@dataclass
class Plan:
    digests: int
    spread: timedelta
    kills: int
    outage: float
    pg_down: float
    lease: float
    timeout: float
    smtp_delay: float


def run_phase(phase: str, db: str, plan: Plan, rng: random.Random, keep: bool) -> PhaseResult:
    folder = Path(tempfile.mkdtemp(prefix=f"chaos-{phase}-{db}-", dir=WORK))
    cluster: PrivateCluster | None = None
    schema: str | None = None
    if phase == "pg":
        # Its own folder in /tmp, open to the postgres user the cluster runs as.
        cluster = PrivateCluster(Path(tempfile.mkdtemp(prefix="flarestart-chaos-pg-")))
        cluster.init()
        database_url = cluster.url
    elif db == "postgresql":
        database_url, schema = shared_schema_url()
    else:
        database_url = f"sqlite:///{folder / 'chaos.db'}"
    sink = Sink(plan.smtp_delay)
    sink.start()
    result = PhaseResult(phase, db if phase != "pg" else "postgresql (private cluster)", plan.digests)
    env = environment(folder, database_url, sink.port, plan.lease)
    start = (datetime.now(UTC) + timedelta(seconds=60)).replace(second=0, microsecond=0)
    if (start + plan.spread).date() != start.date():
        result.notes.append("the delivery moments cross midnight UTC: periods are of two days")
    due = prepare(env, plan.digests, plan.spread, start)
    log_path = folder / "daemon.log"
    began = time.monotonic()
    with log_path.open("ab") as log:
        daemon = Daemon(env, log)
        daemon.start()
        try:
            first_due = (start - datetime.now(UTC)).total_seconds() + (time.monotonic() - began)
            _drive(phase, plan, rng, daemon, sink, cluster, database_url, result, began, first_due)
        finally:
            daemon.stop()
    result.wall_s = round(time.monotonic() - began, 1)
    result.unexpected_exits = daemon.unexpected_exits
    received = sink.received()
    sink.stop()
    planned, sent, rows = ledger(database_url)
    result.planned, result.sent = planned, sent
    wanted = expected_ids(env, due)
    result.lost = sum(1 for message_id in wanted if received[message_id] == 0)
    result.sent_twice = sum(1 for message_id, copies in received.items() if copies > 1)
    result.unexpected_ids = sum(1 for message_id in received if message_id not in wanted)
    result.in_flight_bound = WORKERS * (result.kills if phase == "kills" else 1)  # per interruption
    delays = [
        (sent_at - due[sid]).total_seconds()
        for sid, _, status, sent_at in rows
        if status == "sent" and sent_at is not None and sid in due
    ]
    if delays:
        result.longest_delay_s = round(max(delays), 1)
        result.median_delay_s = round(statistics.median(delays), 1)
    if cluster is not None:
        cluster.destroy()
    if schema is not None:
        drop_shared_schema(schema)
    if result.ok and not keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        result.notes.append(f"kept {folder} (daemon.log)")
    return result


def _drive(
    phase: str,
    plan: Plan,
    rng: random.Random,
    daemon: Daemon,
    sink: Sink,
    cluster: PrivateCluster | None,
    database_url: str,
    result: PhaseResult,
    began: float,
    first_due: float,
) -> None:
    """Until every digest is sent (or the timeout): the phase's trouble, at its moments."""
    # Kills at random moments while digests are being sent: the first within seconds of the first
    # delivery moment, then every 2-8 s (the day's sends take minutes at the sink's pace).
    kill_at: list[float] = []
    if phase == "kills":
        moment = first_due + rng.uniform(1, 5)
        for _ in range(plan.kills):
            kill_at.append(moment)
            moment += rng.uniform(2, 8)
    trouble_from = plan.digests // 4  # the trouble starts once a quarter of the day is sent
    trouble_done = phase not in ("smtp", "pg")
    while True:
        elapsed = time.monotonic() - began
        try:
            _, sent, _ = ledger(database_url)
        except Exception:  # the database is down (the pg phase): ask again
            sent = -1
        if sent == plan.digests and trouble_done:
            if kill_at:
                result.notes.append(f"all sent before the last {len(kill_at)} kills")
            return
        if elapsed > plan.timeout:
            result.notes.append(f"timed out after {elapsed:.0f}s with {sent} of {plan.digests} sent")
            return
        if kill_at and elapsed >= kill_at[0]:
            kill_at.pop(0)
            daemon.kill()
            result.kills += 1
            time.sleep(rng.uniform(0, 1.5))
            daemon.start()
        elif not trouble_done and sent >= trouble_from:
            trouble_done = True
            if phase == "smtp":
                sink.stop()
                _wait(daemon, plan.outage)
                sink.start()
            elif cluster is not None:
                cluster.stop()
                _wait(daemon, plan.pg_down)
                cluster.start()
        daemon.check()
        time.sleep(0.5)


def _wait(daemon: Daemon, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        daemon.check()
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--quick", action="store_true", help="200 digests over 1 minute, 5 kills, 20 s outages"
    )
    parser.add_argument("--phases", default="kills,smtp,pg", help="comma-separated: kills, smtp, pg")
    parser.add_argument("--digests", type=int, help="digests in the day (default 2000; quick 200)")
    parser.add_argument("--spread", type=float, help="minutes the delivery moments span (default 4; quick 1)")
    parser.add_argument("--kills", type=int, help="SIGKILLs of the daemon (default 20; quick 5)")
    parser.add_argument("--outage", type=float, help="seconds the SMTP sink is down (default 120; quick 20)")
    parser.add_argument(
        "--pg-down", type=float, help="seconds the private cluster is down (default 30; quick 10)"
    )
    parser.add_argument("--lease", type=float, default=30.0, help="delivery.lease_seconds of the daemon")
    parser.add_argument(
        "--smtp-delay", type=float, default=0.2, help="seconds the sink takes to accept each message"
    )
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--keep", action="store_true", help="keep every phase's folder, not only failed ones")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    plan = Plan(
        digests=args.digests or (200 if quick else 2000),
        spread=timedelta(minutes=args.spread or (1 if quick else 4)),
        kills=args.kills if args.kills is not None else (5 if quick else 20),
        outage=args.outage or (20.0 if quick else 120.0),
        pg_down=args.pg_down or (10.0 if quick else 30.0),
        lease=args.lease,
        timeout=900.0 if quick else 1800.0,
        smtp_delay=args.smtp_delay,
    )
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if args.db == "sqlite" and "pg" in phases:
        phases.remove("pg")  # a PostgreSQL restart concerns --db postgresql
    WORK.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    results = []
    for phase in phases:
        if not args.json:
            print(f"phase {phase} on {args.db}: {plan.digests} digests ...", flush=True)
        results.append(run_phase(phase, args.db, plan, rng, args.keep))
        if not args.json:
            print(_line(results[-1]), flush=True)
    if args.json:
        print(json.dumps([asdict(r) | {"ok": r.ok} for r in results], indent=2))
    else:
        print(
            f"\nlease {plan.lease:g}s, delivery.workers {WORKERS}, sink {plan.smtp_delay:g}s a message; "
            f"seed {args.seed}"
        )
        for r in results:
            print(_line(r))
            for note in r.notes:
                print(f"    note: {note}")
    return 0 if all(r.ok for r in results) else 1


def _line(r: PhaseResult) -> str:
    kills = f", {r.kills} kills" if r.phase == "kills" else ""
    return (
        f"{'PASS' if r.ok else 'FAIL'} {r.phase:5} {r.db}: planned {r.planned}, sent {r.sent}, lost {r.lost}, "
        f"sent twice {r.sent_twice} (bound {r.in_flight_bound}, same Message-ID), "
        f"delay longest {r.longest_delay_s:.0f}s median {r.median_delay_s:.0f}s{kills}, "
        f"daemon exits {r.unexpected_exits}, {r.wall_s:.0f}s"
    )


if __name__ == "__main__":
    sys.exit(main())
