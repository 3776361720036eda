"""Coalesce concurrent calls into one batch call.

Placing orders one by one costs an actor call, a handful of database round trips and a
commit apiece. ``Batcher`` queues the calls that arrive while a batch is in flight and
runs them together: replicas send one ``place_many`` actor call per shard, and an
OrderShard writes one transaction of multi-row statements. ``Batcher.in_thread`` wraps a
blocking batch function (database work). Guarantees:

- every caller gets exactly its own result or exception, in its own future;
- a batch holds at most ``max_batch`` items; at most ``max_inflight`` batches run at once;
- when nothing is in flight a call is sent at once (no added latency when idle);
- if the batch function raises, every caller of that batch gets the exception (the
  function itself decides whether to fall back to one item at a time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 200,
        max_inflight: int = 2,
    ) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._inflight = 0
        self.batches = 0
        self.items = 0

    @classmethod
    def in_thread(
        cls, fn: Callable[[list[T]], Sequence[R | BaseException]], **kw: int
    ) -> Batcher[T, R]:
        """A batcher whose blocking batch function runs in a worker thread."""

        async def run(items: list[T]) -> Sequence[R | BaseException]:
            return await asyncio.to_thread(fn, items)

        return cls(run, **kw)

    async def submit(self, item: T) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        self._pump()
        return await fut

    def _pump(self) -> None:
        while self._queue and self._inflight < self.max_inflight:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            self._inflight += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self.fn([item for item, _ in batch])
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
        finally:
            self.batches += 1
            self.items += len(batch)
            self._inflight -= 1
            self._pump()
