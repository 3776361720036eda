"""Single-flight: concurrent callers with the same key share one execution of a load
(the catalog's cache fills, the flash sales' event and purchase-snapshot reads); and
``FreshRead``: concurrent readers of one value share one read that started after they
asked (the catalog generation read by the card and search caches)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight:
    """Concurrent callers with the same key share one execution of ``fn``. The work runs
    as its own task, so a cancelled caller does not cancel it for the others.

    With ``linger_s`` a successful result stays joinable for that long after it
    completes: a caller whose cache miss was decided just before the fill landed then
    still shares the finished load instead of starting a second one. Only use it for
    keys that change when the data does (here: product id + cache generation).
    """

    def __init__(self, linger_s: float = 0.0) -> None:
        self.linger_s = linger_s
        self._calls: dict[Hashable, asyncio.Task[Any]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(fn())
            self._calls[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.shield(task)  # type: ignore[no-any-return]

    def _done(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self.linger_s > 0 and not task.cancelled() and task.exception() is None:
            asyncio.get_running_loop().call_later(self.linger_s, self._forget, key, task)
        else:
            self._forget(key, task)

    def _forget(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]


class FreshRead(Generic[T]):
    """Concurrent callers of ``read()`` share one call of ``fn``, always one that started
    after they called: a caller arriving while a call is out waits for the next one, which
    starts when that call ends and serves everyone who arrived meanwhile."""

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self.fn = fn
        self.calls = 0
        self._next: asyncio.Future[T] | None = None
        self._running = False

    async def read(self) -> T:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if not self._running:
                self._running = True
                asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        try:
            while self._next is not None:
                fut, self._next = self._next, None
                self.calls += 1
                try:
                    fut.set_result(await self.fn())
                except Exception as exc:  # every waiter of this call gets it
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: no "never retrieved" warning if all left
        finally:
            self._running = False
