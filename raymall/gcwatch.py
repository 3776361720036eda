"""Garbage-collection pauses: timed in every process, and shortened by freezing what a
process built at startup.

CPython's cyclic collector stops its process while it scans. A full (generation 2)
collection scans every tracked object: in an inventory shard, Ray's, SQLAlchemy's and
OpenTelemetry's objects plus the records of its ledger, so tens to a hundred milliseconds
in which the shard answers no purchase. It runs whenever a quarter of the heap is new since
the last one, so a shard under load meets one every few seconds.

* ``raymall_gc_pause_seconds{process}`` is a histogram of the full collections, and
  ``raymall_gc_seconds_total{process, generation}`` the time spent in collections of each
  generation (added up in the process and written by the first collection a second or more
  after the last write, so the frequent young collections cost a counter write only that
  often, and a process that seldom collects reports late).
* The young generation is collected every ``gc_young_threshold`` allocations (net of
  frees; CPython's default is 700). Most objects a request makes are freed by reference
  counting before that many pile up, so a young collection mostly scans the requests in
  flight, and each survivor it promotes brings the next full collection nearer. Under a
  flash sale (``bench/gc_pauses.py``) a replica spent about 11% of its CPU collecting at
  700, and under 1% at 20,000, where its full collections stopped.
* ``freeze_startup()`` runs when a replica or an actor has started (its modules imported,
  its clients built, a shard's ledger loaded): ``gc.collect()`` then ``gc.freeze()`` move
  every survivor to the permanent generation, which no later collection scans. Reference
  counting still frees those objects; only a reference cycle among them would be kept, and
  what a process builds at startup lives as long as the process. Setting ``gc_freeze``.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from raymall import metrics

FLUSH_EVERY_S = 1.0


class PauseWatch:
    """The ``gc.callbacks`` entry of one process."""

    def __init__(self, process: str) -> None:
        self.process = process
        self._full = metrics.GC_PAUSE.labels(process)
        self._spent = [0.0, 0.0, 0.0]
        self._started = 0.0
        self._next_flush = time.perf_counter() + FLUSH_EVERY_S

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
            return
        took = now - self._started
        generation = info["generation"]
        self._spent[generation] += took
        if generation == 2:
            self._full.observe(took)
        if now >= self._next_flush:
            self.flush()
            self._next_flush = now + FLUSH_EVERY_S

    def flush(self) -> None:
        for generation, spent in enumerate(self._spent):
            if spent:
                metrics.GC_SECONDS.labels(self.process, str(generation)).inc(spent)
                self._spent[generation] = 0.0


_watch: PauseWatch | None = None


def watch(process: str) -> PauseWatch:
    """Time this process's collections under ``process`` (once per process; a later call
    renames it: an actor restarted in a reused worker)."""
    global _watch
    if _watch is not None:
        _watch.flush()
        gc.callbacks.remove(_watch)
    _watch = PauseWatch(process)
    gc.callbacks.append(_watch)
    return _watch


def freeze_startup() -> int:
    """Collect, then keep every surviving object out of later collections; how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def started(process: str, *, freeze: bool, young_threshold: int | None = None) -> None:
    """A replica or an actor has started: watch its collections, set the young
    generation's threshold if given, and freeze if asked."""
    watch(process)
    if young_threshold is not None:
        _young, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    if freeze:
        freeze_startup()
