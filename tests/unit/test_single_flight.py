"""raymall.singleflight.SingleFlight: one load at a time per key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from raymall.singleflight import SingleFlight


async def test_callers_of_a_key_share_its_running_load_and_other_keys_do_not() -> None:
    loads = SingleFlight()
    started: list[str] = []
    release = asyncio.Event()

    def loader(key: str, value: int) -> Callable[[], Awaitable[int]]:
        async def load() -> int:
            started.append(key)
            await release.wait()
            return value

        return load

    waiting = [asyncio.ensure_future(loads.do("a", loader("a", n))) for n in range(5)]
    other = asyncio.ensure_future(loads.do("b", loader("b", 9)))
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [0] * 5  # the first caller's load
    assert await other == 9
    assert started == ["a", "b"]
    assert await loads.do("a", loader("a", 7)) == 7  # a later call loads again


async def test_a_failed_load_fails_every_caller_and_is_not_kept() -> None:
    loads = SingleFlight()
    gate = asyncio.Event()

    async def boom() -> int:
        await gate.wait()
        raise RuntimeError("database down")

    async def fine() -> int:
        return 1

    callers = [asyncio.ensure_future(loads.do("k", boom)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    for caller in callers:
        with pytest.raises(RuntimeError, match="database down"):
            await caller
    assert await loads.do("k", fine) == 1


async def test_a_cancelled_caller_does_not_cancel_the_load_the_others_wait_for() -> None:
    loads = SingleFlight()
    release = asyncio.Event()
    runs = 0

    async def load() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return 5

    first = asyncio.ensure_future(loads.do("k", load))  # starts the load
    await asyncio.sleep(0)
    others = [asyncio.ensure_future(loads.do("k", load)) for _ in range(3)]
    await asyncio.sleep(0)
    first.cancel()  # e.g. its client disconnected
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*others) == [5, 5, 5]
    assert first.cancelled() and runs == 1
