"""Worker processes that end with the process that made them.

A ProcessPoolExecutor worker waits on its call queue and holds both ends of that queue's pipe, so
it never learns that its owner died. A SIGKILLed `flarestart run` (or test run) used to leave its
parser processes, the forkserver they came from and the resource tracker running for good, about
90 MB each time. Pools start their workers with `watch_owner` as the initializer.
"""

from __future__ import annotations

import os
import select
import threading
import time

# The fallback's polling interval, where pidfd_open is missing (not Linux, or a kernel before 5.3).
CHECK_SECONDS = 1.0


def watch_owner(owner: int) -> None:
    """End this process (at once, without cleanup: the owner's work is lost anyway) when the
    process `owner` is gone. Call it first thing in a pool worker; it returns immediately."""
    threading.Thread(target=_exit_with, args=(owner,), name="owner-watch", daemon=True).start()


def _exit_with(owner: int) -> None:
    try:
        # Readable once the owner has exited, zombie or reaped; no polling, no pid reuse race.
        pidfd = os.pidfd_open(owner)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):
        while _alive(owner):
            time.sleep(CHECK_SECONDS)
    else:
        select.select([pidfd], [], [])
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True
