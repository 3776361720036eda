"""stop_tasks: background tasks end for certain, even when one cancel request is lost."""

from __future__ import annotations

import asyncio

import pytest

from raymall.tasks import stop_tasks


async def swallows(times: int, ended: list[str]) -> None:
    """A loop that loses the first ``times`` cancel requests, as a library may."""
    lost = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if lost >= times:
                ended.append("cancelled")
                raise
            lost += 1


async def test_a_task_that_loses_a_cancel_request_is_still_stopped() -> None:
    ended: list[str] = []
    task = asyncio.create_task(swallows(2, ended))
    plain = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_tasks([task, plain, None]), timeout=5)
    assert task.cancelled() and plain.cancelled()
    assert ended == ["cancelled"]


async def test_one_cancel_and_a_wait_is_not_enough_for_such_a_task() -> None:
    ended: list[str] = []
    task = asyncio.create_task(swallows(1, ended))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=0.3)
    assert not done  # the pattern stop_tasks replaces would wait here for ever
    await stop_tasks([task])
    assert task.cancelled()


async def test_a_task_that_never_ends_is_reported_after_the_bound() -> None:
    task = asyncio.create_task(swallows(10**6, []))
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await stop_tasks([task], timeout_s=0.3)
    task.get_coro().close()  # type: ignore[union-attr]


async def test_an_error_a_task_ended_with_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails(), name="failing-loop")
    await asyncio.sleep(0)
    await stop_tasks([task])
    assert "failing-loop" in caplog.text and "boom" in caplog.text
