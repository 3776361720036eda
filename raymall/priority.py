"""Running a background actor's process at a lower CPU priority.

Linux keeps a nice value per thread, and a Ray worker has started its own threads before an
actor's constructor runs, so ``background(n)`` sets every thread of the process (new
threads inherit the value of the thread that starts them). Under contention the kernel then
gives the process's threads a small share of a CPU; when CPUs are idle it runs as fast as
ever. Only ever raises the value (a process cannot lower its own without privileges).
"""

from __future__ import annotations

import os
from pathlib import Path

from raymall.logs import get_logger

log = get_logger("priority")


def background(niceness: int) -> int:
    """Set every thread of this process to at least ``niceness``; answer how many threads
    were changed (0 where the platform has no per-thread values, or ``niceness`` is 0)."""
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return 0
    tasks = Path("/proc/self/task")
    tids = [int(p.name) for p in tasks.iterdir()] if tasks.is_dir() else [0]
    changed = 0
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
                changed += 1
        except OSError:  # a thread that has ended since, or no permission
            continue
    log.info("background priority: nice %s on %s thread(s)", niceness, changed)
    return changed
