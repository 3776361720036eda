"""raymall.priority: a background process's every thread runs at the given nice value."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from raymall.priority import background

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux only")

CHILD = textwrap.dedent(
    """
    import os, threading, time
    from raymall.priority import background

    def priority(tid):
        try:
            return os.getpriority(os.PRIO_PROCESS, tid)
        except ProcessLookupError:  # a thread that was ending (a joined one may linger)
            return None

    started = threading.Event()
    stop = threading.Event()
    before = threading.Thread(target=lambda: (started.set(), stop.wait()), daemon=True)
    before.start()  # a thread that exists already, as a Ray worker's do
    try:
        started.wait()
        changed = background(7)
        seen = {}
        after = threading.Thread(target=lambda: seen.update(n=priority(0)))
        after.start()
        after.join()
        values = {priority(int(t)) for t in os.listdir("/proc/self/task")} - {None}
        print(changed, sorted(values), seen["n"], background(3))
    finally:
        stop.set()
    """
)


def test_every_thread_and_later_ones_get_the_value_and_it_never_goes_down() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    changed, values, later, lowered = int(out[0]), out[1], int(out[2]), int(out[3])
    assert changed >= 2  # the main thread and the one started before
    assert values == "[7]" and later == 7
    assert lowered == 0  # asking for 3 changes nothing


def test_zero_changes_nothing() -> None:
    assert background(0) == 0
