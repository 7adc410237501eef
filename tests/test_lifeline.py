"""Pool workers end with their owner: a SIGKILLed process leaves no parser processes, forkserver
or resource tracker behind (they used to run for good, ~90 MB per killed run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

OWNER = """
import os, signal, sys
from bot.config import load_settings
from bot.sources.parse_pool import make_parse_pool

pool = make_parse_pool(load_settings({"FLARESTART_DATA_DIR": sys.argv[1], "FLARESTART_FETCH_PARSE_WORKERS": "2"}))
assert sorted(pool.map(abs, [-1, -2])) == [1, 2]  # the workers are up
print(" ".join(str(pid) for pid in pool._processes), flush=True)
signal.pause()  # until killed
"""


def _parent(pid: int) -> int:
    # /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces, so split after its ")".
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_parse_workers_and_their_forkserver_end_when_the_owner_is_killed(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        workers = [int(pid) for pid in owner.stdout.readline().split()]
        assert len(workers) == 2
        forkserver = {_parent(pid) for pid in workers}
        assert owner.pid not in forkserver  # the workers are the forkserver's children, not ours
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        left = [*workers, *forkserver]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(pid) for pid in left):
            time.sleep(0.1)
        assert [pid for pid in left if _alive(pid)] == []
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
