"""Coalesce concurrent awaits into one async batch call.

Callers that arrive while ``max_inflight`` batches are running wait and go together in
the next batch (at most ``max_batch`` items); when nothing is in flight a call is sent at
once. Every caller gets its own result, or the batch's exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        fn: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 500,
        max_inflight: int = 1,
    ) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._inflight = 0

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
                if not fut.done():
                    fut.set_result(result)
        finally:
            self._inflight -= 1
            self._pump()
