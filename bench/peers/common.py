"""What every bench round reports, and the thread driver the peers share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RoundResult:
    name: str
    level: int
    seconds: float
    ok: int = 0
    refused: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def ops_per_s(self) -> float:
        return (self.ok + self.refused) / self.seconds if self.seconds else 0.0


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_threads(
    name: str,
    level: int,
    seconds: float,
    make_worker: Callable[[int], Callable[[int], bool]],
    note: str = "",
) -> RoundResult:
    """Run ``level`` threads for ``seconds``. ``make_worker(thread_index)`` returns an
    attempt function ``attempt(n) -> accepted?`` (built in the thread: connections are
    opened before the clock starts)."""
    result = RoundResult(name, level, seconds, note=note)
    lock = threading.Lock()
    ready = threading.Barrier(level + 1)
    stop_at = [0.0]

    def body(index: int) -> None:
        try:
            attempt = make_worker(index)
        finally:
            ready.wait()
        lat: list[float] = []
        ok = refused = errors = n = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                break
            try:
                accepted = attempt(n)
            except Exception:
                errors += 1
                continue
            finally:
                n += 1
            lat.append((time.perf_counter() - t0) * 1000)
            if accepted:
                ok += 1
            else:
                refused += 1
        with lock:
            result.ok += ok
            result.refused += refused
            result.errors += errors
            result.latencies_ms.extend(lat)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(level)]
    for t in threads:
        t.start()
    stop_at[0] = float("inf")
    ready.wait()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - start
    return result
