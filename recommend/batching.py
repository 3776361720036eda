"""Coalesce concurrent calls of a blocking batch function into one worker-thread call.

``Coalescer(fn).submit(item)`` queues ``item`` and waits for its result. While no batch
runs, the first item starts one at once (no added wait, so a lone request is not slowed);
items that arrive while a batch runs form the next batch. ``fn`` receives the items in
arrival order and returns one result per item, in the same order; it runs in a worker
thread, never on the event loop. If ``fn`` raises, every caller of that batch gets the
exception; the next batch is unaffected. At most ``max_batch`` items go into one call.

Used by the Serve replicas: ranking similar products (one matrix product per batch) and
reading listing cards (one database round of queries per batch instead of one per
request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R] = field(repr=False)


class Coalescer(Generic[T, R]):
    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch: int = 256) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.batches = 0
        self.items = 0
        self._queue: list[_Pending[T, R]] = []
        self._running = False

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Pending(item, future))
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                self._queue = self._queue[self.max_batch :]
                live = [p for p in batch if not p.future.done()]  # a caller may be gone
                if not live:
                    continue
                self.batches += 1
                self.items += len(live)
                try:
                    results = await asyncio.to_thread(self.fn, [p.item for p in live])
                    if len(results) != len(live):
                        raise RuntimeError("a batch function returned the wrong count")
                except Exception as exc:  # hand the failure to every caller of the batch
                    for p in live:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                for p, result in zip(live, results, strict=True):
                    if not p.future.done():
                        p.future.set_result(result)
        finally:
            self._running = False
