"""Garbage-collection pauses are timed per process (full collections as a histogram, every
generation's time as a counter written at most once a second), and what a process built at
startup is frozen out of later collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from raymall import gcwatch, metrics


def _full(process: str) -> tuple[float, float]:
    """(count, seconds) of the full collections recorded for ``process``."""
    samples = {s.name: s.value for m in metrics.GC_PAUSE.collect() for s in m.samples
               if s.labels.get("process") == process}  # fmt: skip
    return samples.get("raymall_gc_pause_seconds_count", 0.0), samples.get(
        "raymall_gc_pause_seconds_sum", 0.0
    )


def _spent(process: str, generation: int) -> float:
    child = metrics.GC_SECONDS.labels(process, str(generation))
    return float(child._value.get())  # type: ignore[attr-defined]  # noqa: SLF001


@pytest.fixture
def unwatched() -> Iterator[None]:
    yield
    if gcwatch._watch is not None:  # noqa: SLF001
        gc.callbacks.remove(gcwatch._watch)  # noqa: SLF001
        gcwatch._watch = None  # noqa: SLF001
    gc.unfreeze()


def test_a_full_collection_is_observed_and_the_young_ones_only_add_up(unwatched: None) -> None:
    watch = gcwatch.watch("t-full")
    assert gc.callbacks.count(watch) == 1
    gc.collect(0)
    gc.collect(1)
    assert _full("t-full") == (0.0, 0.0)  # young collections are not pauses to chart
    gc.collect()
    count, seconds = _full("t-full")
    assert count == 1 and seconds > 0
    watch.flush()
    assert _spent("t-full", 2) == pytest.approx(seconds)
    assert _spent("t-full", 0) > 0 and _spent("t-full", 1) > 0


def test_the_counters_are_written_at_most_once_a_second(
    unwatched: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(gcwatch.time, "perf_counter", lambda: clock[0])
    watch = gcwatch.watch("t-flush")
    before = _spent("t-flush", 0)
    for _ in range(3):
        watch("start", {"generation": 0})
        clock[0] += 0.002
        watch("stop", {"generation": 0})
    assert _spent("t-flush", 0) == before  # added up in the process, not written yet
    clock[0] += 1.0
    watch("start", {"generation": 0})
    clock[0] += 0.002
    watch("stop", {"generation": 0})
    assert _spent("t-flush", 0) == pytest.approx(before + 0.008)


def test_watching_again_replaces_the_callback_rather_than_adding_one(unwatched: None) -> None:
    first = gcwatch.watch("t-a")
    second = gcwatch.watch("t-b")
    assert first not in gc.callbacks and gc.callbacks.count(second) == 1


def test_a_started_process_freezes_its_survivors_when_asked(unwatched: None) -> None:
    kept = [[i] for i in range(1_000)]  # tracked objects alive at startup
    gcwatch.started("t-frozen", freeze=False)
    assert gc.get_freeze_count() == 0
    gcwatch.started("t-frozen", freeze=True)
    frozen = gc.get_freeze_count()
    assert frozen >= len(kept)
    # a full collection now scans only what is new: the frozen lists are not among them
    assert sum(1 for o in gc.get_objects() if o is kept[0]) == 0
    del kept
