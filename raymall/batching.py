"""Batcher: coalesce concurrent calls into one batch call.

One actor call, one database round or one matrix product costs about as much for a
hundred items as for one, so concurrent callers share them: ``await batcher.submit(item)``
queues ``item`` and answers its own result. Every batching path of the package is this
class (the inventory client's lanes per shard, order placement per order shard, the order
workflow's lookups and writes, quote reads, flash purchases and lookups, the recommender's
reads and the replicas' rankers). Guarantees:

- **idle = no wait**: with nothing in flight and ``window_s == 0`` a submit is sent at
  once (with whatever else is submitted in the same loop iteration: the batch is formed
  when its task starts); with ``window_s > 0`` the first queued item starts a timer of
  ``window_s`` and everything queued by then goes together;
- **pipelining**: at most ``max_inflight`` batches run at once; items arriving meanwhile
  form the next batch, sent as soon as one returns, on the next loop iteration (so that
  the callers woken by the batch that returned queue their next items first);
- **bounded batches**: at most ``max_batch`` items per call; with ``split_min > 0``, nothing
  in flight and ``2 * split_min`` or more queued, the queue goes as two calls (an inventory
  shard stages the second while it commits the first);
- **own results**: ``fn`` gets the items in arrival order and returns one result per item,
  in the same order; a result that is an exception is raised to its caller only; if ``fn``
  raises, every caller of that batch gets that exception; if it returns another count,
  every caller of the batch gets ``RuntimeError`` (never a result meant for another);
- a caller cancelled before its batch is formed is skipped (its item is not sent);
- ``Batcher.in_thread(fn)`` runs a blocking ``fn`` in a worker thread, never on the loop;
- **traced** (``raymall.tracing``): a batch holding sampled callers runs ``fn`` under one
  span for the batch, a child of the first of them and linked to each (each records the
  batch); a batch with none runs with no span current, never under a stale one.

The hot path costs two list appends and a future per item: no task and no extra await per
item (``put`` answers the future itself, for callers that await it directly).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from raymall import tracing

T = TypeVar("T")
R = TypeVar("R")

_done = asyncio.Future.done  # the C method: any(map(_done, futures)) costs ~15 ns a future


class Batcher(Generic[T, R]):
    """Coalesces ``submit`` calls into calls of ``fn`` (see the module docstring)."""

    def __init__(
        self,
        fn: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 256,
        max_inflight: int = 1,
        window_s: float = 0.0,
        split_min: int = 0,
    ) -> None:
        if max_batch < 1 or max_inflight < 1 or window_s < 0 or split_min < 0:
            raise ValueError("max_batch and max_inflight must be >= 1, the others >= 0")
        self.fn = fn
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.window_s = window_s
        self.split_min = split_min
        self.batches = 0  # calls of fn made
        self.items = 0  # items sent in them
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        self._inflight = 0
        self._scheduled = False  # a send of the queue is due (a task, a timer or soon)
        self._traced: dict[asyncio.Future[R], Any] = {}  # future -> its caller's sampled span

    @classmethod
    def in_thread(
        cls, fn: Callable[[list[T]], Sequence[R | BaseException]], **options: Any
    ) -> Batcher[T, R]:
        """A batcher whose blocking ``fn`` runs in a worker thread."""

        async def run(items: list[T]) -> Sequence[R | BaseException]:
            return await asyncio.to_thread(fn, items)

        return cls(run, **options)

    async def submit(self, item: T) -> R:
        """Queue ``item``; answer its result (or raise its exception)."""
        return await self.put(item)

    def put(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; answer the future of its result (``submit`` without the
        coroutine, for hot paths that await the future directly)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(fut)
        if tracing.enabled:
            span = tracing.recording_span()
            if span is not None:
                self._traced[fut] = span
        if not self._scheduled and self._inflight < self.max_inflight:
            self._scheduled = True
            if self.window_s:
                loop.call_later(self.window_s, self._flush)
            else:
                loop.create_task(self._send_now())
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        for items, futures in self._take():
            loop.create_task(self._send(items, futures))

    async def _send_now(self) -> None:
        """Send the queue from this task (no timer): formed when the task first runs, so
        everything submitted in the same loop iteration goes together."""
        self._scheduled = False
        batches = self._take()
        if batches:
            loop = asyncio.get_running_loop()
            for items, futures in batches[1:]:
                loop.create_task(self._send(items, futures))
            await self._send(*batches[0])

    def _take(self) -> list[tuple[list[T], list[asyncio.Future[R]]]]:
        """The batches to send now (counted in flight), taken off the queue."""
        batches = []
        while self._items and self._inflight < self.max_inflight:
            queued = len(self._items)
            size = self.max_batch
            if self.split_min and self._inflight == 0 and queued >= 2 * self.split_min:
                size = min(size, (queued + 1) // 2)
            if queued <= size:
                items, futures = self._items, self._futures
                self._items, self._futures = [], []
            else:
                items, futures = self._items[:size], self._futures[:size]
                del self._items[:size], self._futures[:size]
            if any(map(_done, futures)):  # callers cancelled while queued
                for fut in futures:
                    if fut.done():
                        self._traced.pop(fut, None)
                live = [i for i, fut in enumerate(futures) if not fut.done()]
                if not live:
                    continue
                items = [items[i] for i in live]
                futures = [futures[i] for i in live]
            self._inflight += 1
            batches.append((items, futures))
        return batches

    async def _send(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
        try:
            if tracing.enabled:
                results = await self._traced_fn(items, futures)
            else:
                results = await self.fn(items)
            if len(results) != len(items):
                raise RuntimeError(
                    f"a batch function answered {len(results)} results for {len(items)} items"
                )
        except BaseException as exc:
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for fut, result in zip(futures, results, strict=False):  # counted above
                try:  # costs nothing unless the caller is gone (cheaper than fut.done())
                    if isinstance(result, BaseException):
                        fut.set_exception(result)
                    else:
                        fut.set_result(result)
                except asyncio.InvalidStateError:
                    pass  # cancelled while its batch ran
        finally:
            self.batches += 1
            self.items += len(items)
            self._inflight -= 1
            if not self._scheduled:
                # After the callers woken by this batch have queued their next items.
                self._scheduled = True
                asyncio.get_running_loop().call_later(0, self._flush)

    async def _traced_fn(
        self, items: list[T], futures: list[asyncio.Future[R]]
    ) -> Sequence[R | BaseException]:
        """``fn(items)`` under the batch's span (see the module docstring)."""
        members = [span for fut in futures if (span := self._traced.pop(fut, None)) is not None]
        fn = getattr(self.fn, "func", self.fn)  # a partial's function
        name = getattr(fn, "__qualname__", "batch")
        with tracing.use(
            tracing.start_batch(f"batch {name}", members, **{"raymall.batch.items": len(items)})
        ):
            return await self.fn(items)
