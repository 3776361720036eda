"""The batcher that coalesces order placements, lookups and quote reads."""

from __future__ import annotations

import asyncio

import pytest

from raymall.errors import OutOfStock
from raymall.orders.batching import Batcher


async def test_concurrent_calls_share_batches_and_each_gets_its_own_result() -> None:
    seen: list[list[int]] = []

    async def double(items: list[int]) -> list[int | BaseException]:
        seen.append(list(items))
        await asyncio.sleep(0.01)
        return [i * 2 if i % 7 else OutOfStock(f"no {i}") for i in items]

    batcher: Batcher[int, int] = Batcher(double, max_batch=10, max_inflight=2)
    results = await asyncio.gather(
        *(batcher.submit(i) for i in range(1, 51)), return_exceptions=True
    )
    for i, result in zip(range(1, 51), results, strict=True):
        if i % 7:
            assert result == i * 2
        else:
            assert isinstance(result, OutOfStock) and str(result) == f"no {i}"
    assert sorted(i for batch in seen for i in batch) == list(range(1, 51))
    assert max(len(b) for b in seen) <= 10
    assert len(seen) < 50  # coalesced
    assert batcher.items == 50


async def test_an_idle_call_goes_out_at_once_and_a_failed_batch_fails_its_callers() -> None:
    calls = 0

    async def boom(items: list[str]) -> list[str | BaseException]:
        nonlocal calls
        calls += 1
        raise ConnectionError("database down")

    batcher: Batcher[str, str] = Batcher(boom)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(batcher.submit("a"), 1.0)
    assert calls == 1
    # the batcher keeps working after a failure
    with pytest.raises(ConnectionError):
        await batcher.submit("b")
    assert calls == 2


async def test_a_blocking_batch_function_runs_in_a_thread() -> None:
    import threading

    main = threading.get_ident()
    threads: set[int] = set()

    def blocking(items: list[int]) -> list[int | BaseException]:
        threads.add(threading.get_ident())
        return [i + 1 for i in items]

    batcher: Batcher[int, int] = Batcher.in_thread(blocking, max_batch=3)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(7))) == list(range(1, 8))
    assert main not in threads
