"""What an order shard's deadline sweeps share: run one move on each overdue order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from raymall.errors import InvalidTransition
from raymall.logs import get_logger

log = get_logger("orders")


async def for_each_overdue(
    ids: Sequence[int], act: Callable[[int], Awaitable[bool]], concurrency: int, what: str
) -> int:
    """Run a deadline's ``act`` on each overdue order, ``concurrency`` at a time; answer how
    many it moved. A lost race is no move; any other failure is logged and left to the
    next sweep."""
    gate = asyncio.Semaphore(concurrency)

    async def one(order_id: int) -> bool:
        async with gate:
            try:
                return await act(order_id)
            except InvalidTransition:
                return False
            except Exception:
                log.warning("%s of order %s failed; next sweep", what, order_id, exc_info=True)
                return False

    return sum(await asyncio.gather(*(one(i) for i in ids)))
