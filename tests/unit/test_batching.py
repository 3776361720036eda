"""raymall.batching.Batcher: each promise of its docstring, one test apiece."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from raymall.batching import Batcher
from raymall.errors import OutOfStock


class Recorder:
    """A batch function that records its batches and holds each until released."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.hold = hold
        self.gates: list[asyncio.Event] = []

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(list(items))
        if self.hold:
            gate = asyncio.Event()
            self.gates.append(gate)
            await gate.wait()
        return [i * 10 for i in items]

    def release(self, n: int) -> None:
        self.gates[n].set()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_submit_is_sent_at_once_with_what_came_in_the_same_iteration() -> None:
    fn = Recorder()
    batcher: Batcher[int, int] = Batcher(fn)
    first, second = batcher.put(1), batcher.put(2)
    await asyncio.sleep(0)  # one loop iteration, no timer
    assert fn.batches == [[1, 2]]
    assert await asyncio.gather(first, second) == [10, 20]
    later = batcher.put(3)
    await asyncio.sleep(0)
    assert fn.batches == [[1, 2], [3]]
    assert await later == 30


async def test_a_window_gathers_what_is_queued_until_it_ends() -> None:
    fn = Recorder()
    batcher: Batcher[int, int] = Batcher(fn, window_s=0.05)
    started = time.monotonic()
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.01)
    assert fn.batches == []  # the window is still open
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3)]
    assert await asyncio.gather(first, *rest) == [10, 20, 30]
    assert time.monotonic() - started >= 0.045
    assert fn.batches == [[1, 2, 3]]


async def test_a_batch_holds_at_most_max_batch_items() -> None:
    fn = Recorder()
    batcher: Batcher[int, int] = Batcher(fn, max_batch=3, max_inflight=4, window_s=0.001)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(8))) == [
        i * 10 for i in range(8)
    ]
    assert fn.batches == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert batcher.batches == 3 and batcher.items == 8


async def test_at_most_max_inflight_batches_run_and_the_next_goes_when_one_returns() -> None:
    fn = Recorder(hold=True)
    batcher: Batcher[int, int] = Batcher(fn, max_inflight=2)
    futs = []
    for i in range(5):
        futs.append(asyncio.ensure_future(batcher.submit(i)))
        await settle()
    assert fn.batches == [[0], [1]]  # two at once, the others wait
    fn.release(1)
    assert await futs[1] == 10
    await settle()
    assert fn.batches == [[0], [1], [2, 3, 4]]  # everything queued meanwhile, together
    fn.release(0)
    fn.release(2)
    assert await asyncio.gather(*futs) == [0, 10, 20, 30, 40]


async def test_the_next_batch_waits_for_the_callers_woken_by_the_last_one() -> None:
    fn = Recorder(hold=True)
    batcher: Batcher[int, int] = Batcher(fn)

    async def twice(i: int) -> int:
        await batcher.submit(i)
        return await batcher.submit(i + 100)

    first = asyncio.ensure_future(batcher.submit(0))
    await settle()
    chained = [asyncio.ensure_future(twice(i)) for i in (1, 2)]
    await settle()
    assert fn.batches == [[0]]
    fn.release(0)
    await settle()
    assert fn.batches[1] == [1, 2]
    fn.release(1)
    await settle()
    # both woken callers queued their second item before the next batch was formed
    assert fn.batches[2] == [101, 102]
    fn.release(2)
    assert await asyncio.gather(first, *chained) == [0, 1010, 1020]


async def test_split_min_sends_a_long_queue_as_two_calls_when_idle() -> None:
    fn = Recorder(hold=True)
    batcher: Batcher[int, int] = Batcher(fn, max_inflight=2, window_s=0.001, split_min=3)
    futs = [asyncio.ensure_future(batcher.submit(i)) for i in range(7)]
    await asyncio.sleep(0.02)
    assert fn.batches == [[0, 1, 2, 3], [4, 5, 6]]
    # with a batch in flight (or fewer than 2 * split_min queued) there is no split
    fn.release(0)
    await asyncio.sleep(0)
    more = [asyncio.ensure_future(batcher.submit(i)) for i in range(10, 17)]
    await asyncio.sleep(0.02)
    assert fn.batches[2] == list(range(10, 17))
    fn.release(1)
    fn.release(2)
    assert await asyncio.gather(*futs, *more) == [i * 10 for i in [*range(7), *range(10, 17)]]


async def test_an_exception_result_is_raised_to_its_caller_only() -> None:
    async def fn(items: list[int]) -> Sequence[int | BaseException]:
        return [ValueError(f"bad {i}") if i % 2 else i for i in items]

    batcher: Batcher[int, int] = Batcher(fn, window_s=0.001)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad 1"
    assert isinstance(results[3], ValueError) and str(results[3]) == "bad 3"
    assert batcher.batches == 1


async def test_a_raising_batch_fails_its_callers_and_not_the_next_batch() -> None:
    async def fn(items: list[int]) -> Sequence[int | BaseException]:
        if -1 in items:
            raise ConnectionError("down")
        return items

    batcher: Batcher[int, int] = Batcher(fn, window_s=0.001)
    results = await asyncio.gather(batcher.submit(-1), batcher.submit(5), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert results[0] is results[1]  # that very exception
    assert await batcher.submit(7) == 7


async def test_a_caller_cancelled_while_queued_is_not_sent() -> None:
    fn = Recorder(hold=True)
    batcher: Batcher[int, int] = Batcher(fn)
    first = asyncio.ensure_future(batcher.submit(0))
    await settle()
    gone = asyncio.ensure_future(batcher.submit(1))
    kept = asyncio.ensure_future(batcher.submit(2))
    await settle()
    gone.cancel()
    await settle()
    fn.release(0)
    await settle()
    assert fn.batches == [[0], [2]]
    fn.release(1)
    assert await asyncio.gather(first, kept) == [0, 20]
    assert gone.cancelled()
    assert batcher.items == 2
    # a batch made only of cancelled callers is not sent at all
    lone = asyncio.ensure_future(batcher.submit(3))
    await settle()
    blocked = asyncio.ensure_future(batcher.submit(4))
    await settle()
    blocked.cancel()
    await settle()
    fn.release(2)
    assert await lone == 30
    await settle()
    assert fn.batches == [[0], [2], [3]]


async def test_a_wrong_result_count_fails_every_caller_of_the_batch() -> None:
    async def short(items: list[int]) -> Sequence[int | BaseException]:
        return items[:-1]

    batcher: Batcher[int, int] = Batcher(short, window_s=0.001)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_in_thread_runs_the_batch_function_off_the_loop() -> None:
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    def blocking(items: list[int]) -> Sequence[int | BaseException]:
        threads.add(threading.get_ident())
        time.sleep(0.01)
        return [i + 1 for i in items]

    batcher: Batcher[int, int] = Batcher.in_thread(blocking, max_batch=3)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(7))) == list(range(1, 8))
    assert threads and loop_thread not in threads


def test_options_out_of_range_are_refused() -> None:
    async def fn(items: list[int]) -> Sequence[int | BaseException]:
        return list(items)

    for bad in ({"max_batch": 0}, {"max_inflight": 0}, {"window_s": -1}, {"split_min": -1}):
        with pytest.raises(ValueError):
            Batcher(fn, **bad)  # type: ignore[arg-type]


# ---- the order paths' batcher (placements, lookups, quote reads) ----------------------
async def test_order_placements_share_batches_and_each_gets_its_own_result() -> None:
    seen: list[list[int]] = []

    async def double(items: list[int]) -> Sequence[int | BaseException]:
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

    async def boom(items: list[str]) -> Sequence[str | BaseException]:
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


async def test_a_blocking_order_batch_function_runs_in_a_thread() -> None:
    main = threading.get_ident()
    threads: set[int] = set()

    def blocking(items: list[int]) -> Sequence[int | BaseException]:
        threads.add(threading.get_ident())
        return [i + 1 for i in items]

    batcher: Batcher[int, int] = Batcher.in_thread(blocking, max_batch=3)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(7))) == list(range(1, 8))
    assert main not in threads


# ---- the replicas' worker-thread batchers (ranking, listing cards) ---------------------
def test_worker_thread_calls_share_batches_and_get_their_own_results() -> None:
    calls: list[list[int]] = []
    threads: set[int] = set()
    gate = threading.Event()

    def square(items: list[int]) -> list[int]:
        threads.add(threading.get_ident())
        calls.append(items)
        gate.wait(5)  # the first batch is still running while the others queue up
        return [i * i for i in items]

    async def scenario() -> list[int]:
        coalescer = Batcher.in_thread(square)
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


def test_a_failing_worker_thread_batch_fails_its_callers_only() -> None:
    def fn(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad item")
        return items

    async def scenario() -> None:
        coalescer = Batcher.in_thread(fn, max_batch=2)
        bad = asyncio.gather(coalescer.submit(-1), coalescer.submit(5), return_exceptions=True)
        results = await bad
        assert all(isinstance(r, ValueError) for r in results)
        assert await coalescer.submit(7) == 7

    asyncio.run(scenario())


def test_a_wrong_worker_thread_result_count_is_an_error_not_a_misdelivery() -> None:
    async def scenario() -> None:
        coalescer: Batcher[int, int] = Batcher.in_thread(lambda items: items[:-1])
        with pytest.raises(RuntimeError):
            await coalescer.submit(1)

    asyncio.run(scenario())
