"""Shared measuring helpers for the benchmarks (standard library only, Linux /proc).

A contender runs as a *measured command*: `run_measured(cmd)` starts this file as a small
launcher (`python bench/_measure.py launch RESULT -- cmd ...`) that marks itself a child
subreaper, runs the command, then reaps every descendant (orphans too, such as a forkserver
that outlives its parent). Its `getrusage(RUSAGE_CHILDREN)` is then the CPU of the whole
process tree, which it hands back in RESULT. Meanwhile the parent samples the resident memory
of the tree under the launcher (the launcher itself excluded) every ~20 ms from /proc and keeps
the peak of the sum. So wall, CPU and peak RSS are measured the same way for every contender,
whatever it spawns.

Inside a driver, `tree_cpu()` gives the CPU seconds used so far by the calling process and all
its live descendants (including what they reaped), to time a region's CPU across processes.
"""

from __future__ import annotations

import os
import sys

# bench/ also holds other benchmarks whose names can shadow the standard library (email.py):
# when run as a script, move this folder from the front of sys.path to its end.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.append(sys.path.pop(0))

import contextlib
import ctypes
import json
import resource
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36
SAMPLE_INTERVAL = 0.02
PSS_INTERVAL = 0.25
REAP_GRACE = 15.0  # seconds the launcher waits for orphans after the command exits


# -- /proc -------------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (all its threads), from /proc/PID/task/TID/children."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                kids.extend(int(word) for word in handle.read().split())
        except (OSError, ValueError):
            continue
    return kids


def _children_by_scan() -> dict[int, list[int]]:
    """Parent → children for every process (fallback when the children files are missing)."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


_HAS_CHILDREN_FILE = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (not `pid` itself)."""
    found: list[int] = []
    if _HAS_CHILDREN_FILE:
        stack = children_of(pid)
        while stack:
            child = stack.pop()
            found.append(child)
            stack.extend(children_of(child))
        return found
    tree = _children_by_scan()
    stack = list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(tree.get(child, []))
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def command_of(pid: int) -> str:
    """The command line of a process, shortened, for reports."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().split(b"\0")
    except OSError:
        return "?"
    return " ".join(w.decode(errors="replace") for w in words if w)[:160]


def pss_bytes(pid: int) -> int:
    """Proportional set size (shared pages split between their users), 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of one process (its own CPU and its reaped children's)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17.
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def tree_cpu(pid: int | None = None) -> float:
    """CPU seconds of a process and its live descendants, each including what it reaped."""
    root = os.getpid() if pid is None else pid
    return sum(cpu_seconds(p) for p in [root, *descendants(root)])


# -- sampling --------------------------------------------------------------------------------


class TreeSampler:
    """Samples the summed RSS of a process tree in a background thread; keeps the peak."""

    def __init__(
        self,
        root: int,
        *,
        include_root: bool = False,
        interval: float = SAMPLE_INTERVAL,
        pss: bool = False,
    ) -> None:
        self.root = root
        self.include_root = include_root
        self.interval = interval
        self.pss = pss
        self.cpu = 0.0  # CPU seconds the sampling itself took (it competes with what it measures)
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs = 0
        self.peak_breakdown: list[tuple[int, int, str]] = []  # (pid, rss bytes, command) at the peak
        self.samples = 0
        self._pss_at = -PSS_INTERVAL
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def sample(self) -> None:
        pids = descendants(self.root)
        if self.include_root:
            pids.append(self.root)
        sizes = [rss_bytes(pid) for pid in pids]
        total = sum(sizes)
        self.samples += 1
        if total > self.peak_rss:
            self.peak_rss = total
            self.peak_breakdown = [
                (pid, size, command_of(pid)) for pid, size in zip(pids, sizes, strict=True)
            ]
            # PSS is dear to read (the kernel walks the page tables, holding the process's memory
            # lock) and slows the measured processes down: opt-in, at RSS peaks, ≤ every 250 ms.
            now = time.monotonic()
            if self.pss and now - self._pss_at >= PSS_INTERVAL:
                self._pss_at = now
                self.peak_pss = max(self.peak_pss, sum(pss_bytes(pid) for pid in pids))
        self.peak_procs = max(self.peak_procs, len(pids))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self.cpu = time.thread_time()
            self._stop.wait(self.interval)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# -- measured commands -------------------------------------------------------------------------


@dataclass
class Measured:
    """One measured command: the launcher's numbers plus what the parent sampled."""

    cmd: list[str]
    returncode: int
    wall: float  # seconds from start to exit of the command (launcher-measured)
    cpu_user: float  # whole process tree, reaped descendants included
    cpu_sys: float
    peak_rss: int  # bytes, peak of the summed RSS of the tree (sampled)
    peak_pss: int  # bytes, summed PSS of the tree at its RSS peaks, 0 unless asked (pss=True)
    peak_procs: int
    samples: int
    peak_breakdown: list[tuple[int, int, str]] = field(default_factory=list)
    sampler_cpu: float = 0.0
    stdout: str = ""
    stderr: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss / 1e6

    @property
    def peak_pss_mb(self) -> float:
        return self.peak_pss / 1e6

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("stdout")
        data.pop("stderr")
        return data


def run_measured(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    interval: float = SAMPLE_INTERVAL,
    pss: bool = False,
    python: str | None = None,
) -> Measured:
    """Run `cmd` under the launcher; return wall, tree CPU, tree peak RSS and its output.

    With `pss`, also the tree's PSS at its RSS peaks (costlier to sample; see TreeSampler)."""
    with tempfile.NamedTemporaryFile(prefix="measure-", suffix=".json", delete=False) as handle:
        result_path = handle.name
    launcher = [
        python or sys.executable,
        str(Path(__file__).resolve()),
        "launch",
        result_path,
        "--",
    ]
    try:
        proc = subprocess.Popen(
            [*launcher, *cmd],
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        sampler = TreeSampler(proc.pid, interval=interval, pss=pss).start()
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            stdout, stderr = proc.communicate()
            stderr += f"\n[measure] killed after {timeout} s"
        finally:
            sampler.stop()
        try:
            report = json.loads(Path(result_path).read_text() or "{}")
        except (OSError, ValueError):
            report = {}
    finally:
        Path(result_path).unlink(missing_ok=True)
    return Measured(
        cmd=list(cmd),
        returncode=int(report.get("returncode", proc.returncode if proc.returncode else -1)),
        wall=float(report.get("wall", 0.0)),
        cpu_user=float(report.get("cpu_user", 0.0)),
        cpu_sys=float(report.get("cpu_sys", 0.0)),
        peak_rss=sampler.peak_rss,
        peak_pss=sampler.peak_pss,
        peak_procs=sampler.peak_procs,
        samples=sampler.samples,
        peak_breakdown=sampler.peak_breakdown,
        sampler_cpu=sampler.cpu,
        stdout=stdout,
        stderr=stderr,
        extra={k: v for k, v in report.items() if k == "error"},
    )


def _kill_tree(pid: int) -> None:
    for victim in [*descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _launch(result_path: str, cmd: list[str]) -> int:
    """The launcher: subreaper, run, reap everything, write wall + tree CPU to `result_path`."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("[measure] cannot become a child subreaper; CPU of orphans is lost", file=sys.stderr)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    report: dict[str, Any] = {}
    try:
        child = subprocess.Popen(cmd)
    except OSError as exc:
        report = {"returncode": 127, "error": f"cannot start {cmd[0]}: {exc}"}
        Path(result_path).write_text(json.dumps(report))
        return 127
    returncode = child.wait()
    wall = time.perf_counter() - started
    _reap_all(time.monotonic() + REAP_GRACE)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = {
        "returncode": returncode,
        "wall": wall,
        "cpu_user": after.ru_utime - before.ru_utime,
        "cpu_sys": after.ru_stime - before.ru_stime,
    }
    Path(result_path).write_text(json.dumps(report))
    return returncode


def _reap_all(deadline: float) -> None:
    """Wait for every remaining descendant; after the deadline, kill what is left."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            continue
        if time.monotonic() > deadline:
            _kill_tree(os.getpid())
            deadline = float("inf")
        time.sleep(0.01)


# -- statistics ------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "launch" and argv[2] == "--" and len(argv) > 3:
        return _launch(argv[1], argv[3:])
    print("usage: python bench/_measure.py launch RESULT.json -- command [args...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
