"""The replicas' coalescer: concurrent calls share one worker-thread call of the batch
function, results go back to the right callers, and a failure reaches only its batch."""

from __future__ import annotations

import asyncio
import threading

import pytest

from recommend.batching import Coalescer


def test_concurrent_calls_share_batches_and_get_their_own_results() -> None:
    calls: list[list[int]] = []
    threads: set[int] = set()
    gate = threading.Event()

    def square(items: list[int]) -> list[int]:
        threads.add(threading.get_ident())
        calls.append(items)
        gate.wait(5)  # the first batch is still running while the others queue up
        return [i * i for i in items]

    async def scenario() -> list[int]:
        coalescer = Coalescer(square)
        first = asyncio.ensure_future(coalescer.submit(0))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(coalescer.submit(i)) for i in range(1, 40)]
        await asyncio.sleep(0.05)
        gate.set()
        out = await asyncio.gather(first, *rest)
        assert coalescer.batches == 2 and coalescer.items == 40
        return list(out)

    assert asyncio.run(scenario()) == [i * i for i in range(40)]
    assert calls == [[0], list(range(1, 40))]
    assert threading.get_ident() not in threads  # never on the event loop's thread


def test_a_failing_batch_fails_its_callers_only() -> None:
    def fn(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad item")
        return items

    async def scenario() -> None:
        coalescer = Coalescer(fn, max_batch=2)
        bad = asyncio.gather(coalescer.submit(-1), coalescer.submit(5), return_exceptions=True)
        results = await bad
        assert all(isinstance(r, ValueError) for r in results)
        assert await coalescer.submit(7) == 7

    asyncio.run(scenario())


def test_a_wrong_result_count_is_an_error_not_a_misdelivery() -> None:
    async def scenario() -> None:
        coalescer: Coalescer[int, int] = Coalescer(lambda items: items[:-1])
        with pytest.raises(RuntimeError):
            await coalescer.submit(1)

    asyncio.run(scenario())
