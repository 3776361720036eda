"""Stopping background tasks for certain.

``task.cancel()`` asks once, and a library may swallow the request: on Python 3.11,
``asyncio.wait_for`` returns the inner result instead of raising when the inner call
finished at the moment of the cancel (cpython gh-86296), and redis-py uses it while
opening a connection. A loop that then goes on would keep ``await task`` waiting for ever.
``stop_tasks`` asks again until every task has ended, within a bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from raymall.logs import get_logger

log = get_logger("tasks")

RECANCEL_S = 0.5  # how long one cancel request is given before it is repeated


async def stop_tasks(tasks: Iterable[asyncio.Task[object] | None], timeout_s: float = 30.0) -> None:
    """Cancel ``tasks`` and wait until all have ended; ``TimeoutError`` if some still
    run after ``timeout_s``. A task that ended with an error has it logged."""
    todo: set[asyncio.Task[object]] = {t for t in tasks if t is not None}
    every = set(todo)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while todo:
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError(f"{len(todo)} task(s) still running {timeout_s} s after cancel")
        for task in todo:
            task.cancel()
        _done, todo = await asyncio.wait(todo, timeout=min(RECANCEL_S, left))
    for task in every:
        if not task.cancelled() and task.exception() is not None:
            log.warning("task %s ended with an error", task.get_name(), exc_info=task.exception())
