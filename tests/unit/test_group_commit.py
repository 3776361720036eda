"""GroupCommitter with a fake book and a fake writer (a thread held at a gate): answers in
order and only after their write, two batches deep, a failing head undoes the batch on top
first and requeues it unanswered, the window for single callers, max ops, drain; and every
caller answered exactly once when the committer itself fails or is stopped (cancelled while
staging, writing or waiting, the book's commit or failure policy raising)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from actors.group_commit import GroupCommitter


class Book:
    """Open batches stack; each result says at which depth its batch was staged."""

    def __init__(self) -> None:
        self.open: list[list[str]] = []
        self.committed: list[list[str]] = []
        self.events: list[tuple[Any, ...]] = []
        self.policy: Callable[[Any, BaseException], BaseException | None] = lambda s, e: e
        self.gate: asyncio.Event | None = None  # stage waits here (a load) when set
        self.fail_commit = False
        self.reload = False  # set by lost(): memory is rebuilt before the next batch

    async def ready(self) -> None:
        if self.reload:  # memory rebuilt from the database: no batch is open any more
            self.events.append(("reload",))
            self.open.clear()
            self.reload = False
        assert not self.open, "ready is called with no batch open"

    async def stage(self, ops: list[str], attempt: int) -> Any:
        self.events.append(("stage", tuple(ops), attempt))
        if self.gate is not None:
            await self.gate.wait()
        if "refuse" in ops:
            raise ValueError("refused")
        self.open.append(list(ops))
        depth = len(self.open)
        work = [op for op in ops if op != "replay"]
        return SimpleNamespace(results=[f"{op}@{depth}" for op in ops], work=work, ops=ops)

    def commit(self, staged: Any) -> None:
        if self.fail_commit:
            raise RuntimeError("commit broke")
        assert self.open[0] == list(staged.ops), "commits go oldest first"
        self.committed.append(self.open.pop(0))
        self.events.append(("commit", tuple(staged.ops)))

    def rollback(self) -> None:
        self.events.append(("rollback", tuple(self.open.pop())))

    async def failed(self, staged: Any, exc: BaseException) -> BaseException | None:
        self.events.append(("failed", tuple(staged.ops)))
        return self.policy(staged, exc)

    def lost(self) -> BaseException:
        self.events.append(("lost",))
        self.reload = True
        return RuntimeError("lost")


class Writer:
    """Each write waits at its own gate (opened by the test) and fails on "boom"."""

    def __init__(self) -> None:
        self.gates: list[threading.Event] = []
        self.written: list[list[str]] = []
        self.fails: list[bool] = []
        self.auto = False

    def __call__(self, work: list[str], fail: bool) -> None:
        gate = threading.Event()
        if self.auto:
            gate.set()
        self.gates.append(gate)
        assert gate.wait(10), "a write was never let through"
        self.written.append(list(work))
        self.fails.append(fail)
        if fail or "boom" in work:
            raise RuntimeError("write failed")


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


def make(window_s: float = 0.0, max_ops: int = 100) -> tuple[GroupCommitter, Book, Writer]:
    book, writer = Book(), Writer()
    committer: GroupCommitter = GroupCommitter(book, writer, window_s=window_s, max_ops=max_ops)
    return committer, book, writer


async def test_answers_come_in_order_and_only_after_their_write() -> None:
    c, book, writer = make()
    first = asyncio.ensure_future(c.submit(["a", "b"]))
    await until(lambda: len(writer.gates) == 1)
    # queued while the first write is held: one batch, staged on top of the first
    more = [asyncio.ensure_future(c.submit([x])) for x in ("c", "d", "e")]
    await until(lambda: len(book.open) == 2)
    await asyncio.sleep(0.02)
    assert not first.done() and not any(f.done() for f in more)
    assert len(writer.gates) == 1  # the second write waits for the first
    writer.gates[0].set()
    assert await first == ["a@1", "b@1"]
    assert book.committed == [["a", "b"]]  # committed before it was answered
    await until(lambda: len(writer.gates) == 2)
    await asyncio.sleep(0.01)
    assert not any(f.done() for f in more)  # committed in memory order, not yet written
    writer.gates[1].set()
    assert [await f for f in more] == [["c@2"], ["d@2"], ["e@2"]]
    assert writer.written == [["a", "b"], ["c", "d", "e"]]
    assert book.committed == [["a", "b"], ["c", "d", "e"]]
    c.task.cancel()


async def test_a_failing_head_undoes_the_batch_on_top_first_and_requeues_it_unanswered() -> None:
    c, book, writer = make()
    head = asyncio.ensure_future(c.submit(["boom", "x"]))
    await until(lambda: len(writer.gates) == 1)
    top = asyncio.ensure_future(c.submit(["y", "z"]))
    await until(lambda: len(book.open) == 2)
    writer.gates[0].set()
    with pytest.raises(RuntimeError, match="write failed"):
        await head
    await until(lambda: len(writer.gates) == 2)
    assert not top.done()  # requeued, not answered
    writer.gates[1].set()
    assert await top == ["y@1", "z@1"]  # staged again, alone
    assert book.events == [
        ("stage", ("boom", "x"), 0),
        ("stage", ("y", "z"), 0),
        ("rollback", ("y", "z")),  # newest first
        ("rollback", ("boom", "x")),
        ("failed", ("boom", "x")),
        ("stage", ("y", "z"), 0),
        ("commit", ("y", "z")),
    ]
    assert c.requeued == 1 and book.committed == [["y", "z"]] and book.open == []
    c.task.cancel()


async def test_a_failure_the_book_can_repair_stages_the_batch_again() -> None:
    c, book, writer = make()
    writer.auto = True
    book.policy = lambda staged, exc: None  # e.g. replays of stored keys, now loaded
    c.fail_next(1)
    assert await c.submit(["k"]) == ["k@1"]
    assert writer.fails == [True, False]
    assert [e for e in book.events if e[0] == "stage"] == [
        ("stage", ("k",), 0),
        ("stage", ("k",), 1),
    ]
    c.task.cancel()


async def test_a_batch_the_book_refuses_answers_its_error_and_the_next_goes_on() -> None:
    c, book, writer = make()
    writer.auto = True
    with pytest.raises(ValueError, match="refused"):
        await c.submit(["refuse"])
    assert await c.submit(["ok"]) == ["ok@1"]
    c.task.cancel()


async def test_a_batch_with_nothing_to_write_is_answered_without_a_write() -> None:
    c, book, writer = make()
    assert await c.submit(["replay"]) == ["replay@1"]
    assert writer.gates == [] and c.batches == 0 and book.committed == [["replay"]]
    c.task.cancel()


async def test_single_callers_wait_the_window_for_company_and_lists_do_not() -> None:
    c, book, writer = make(window_s=0.2)
    writer.auto = True
    started = time.monotonic()
    one = asyncio.ensure_future(c.submit(["a"]))
    await asyncio.sleep(0.05)
    two = asyncio.ensure_future(c.submit(["b"]))
    assert await one == ["a@1"] and await two == ["b@1"]  # one batch
    assert time.monotonic() - started >= 0.19
    assert writer.written == [["a", "b"]]
    started = time.monotonic()
    assert await c.submit(["c", "d"]) == ["c@1", "d@1"]  # a client's batch: no window
    assert time.monotonic() - started < 0.15
    c.task.cancel()


async def test_the_window_ends_once_max_ops_are_pending() -> None:
    c, book, writer = make(window_s=5.0, max_ops=3)
    writer.auto = True
    started = time.monotonic()
    answers = await asyncio.gather(*(c.submit([x]) for x in "abc"))
    assert answers == [["a@1"], ["b@1"], ["c@1"]]
    assert time.monotonic() - started < 1.0
    c.task.cancel()


async def test_a_batch_takes_callers_up_to_max_ops_and_never_splits_a_list() -> None:
    c, book, writer = make(max_ops=3)
    held = asyncio.ensure_future(c.submit(["h"]))
    await until(lambda: len(writer.gates) == 1)
    lists = [["a", "b"], ["c", "d"], ["e"], ["f"], ["g"]]
    futs = [asyncio.ensure_future(c.submit(x)) for x in lists]
    await until(lambda: len(book.open) == 2)
    writer.auto = True
    writer.gates[0].set()
    await asyncio.gather(held, *futs)
    # [a b] then [c d] reaches 3: the batch closes with the whole list
    assert writer.written == [["h"], ["a", "b", "c", "d"], ["e", "f", "g"]]
    c.task.cancel()


async def test_drain_waits_until_everything_queued_is_answered() -> None:
    c, book, writer = make()
    await asyncio.wait_for(c.drain(), 1)  # idle: at once
    futs = [asyncio.ensure_future(c.submit([x])) for x in "abc"]
    await until(lambda: len(writer.gates) == 1)
    drained = asyncio.ensure_future(c.drain())
    await asyncio.sleep(0.02)
    assert not drained.done()
    writer.auto = True
    for gate in writer.gates:
        gate.set()
    await asyncio.wait_for(drained, 5)
    assert all(f.done() for f in futs) and c.pending_ops == 0
    c.task.cancel()


async def test_a_committer_stopped_while_staging_answers_that_batch_and_the_queue() -> None:
    c, book, writer = make()
    book.gate = asyncio.Event()  # the batch's load never returns
    staging = asyncio.ensure_future(c.submit(["a"]))
    await until(lambda: len(book.events) == 1)
    queued = asyncio.ensure_future(c.submit(["b"]))
    await asyncio.sleep(0.01)
    c.task.cancel()
    for fut in (staging, queued):
        with pytest.raises(RuntimeError, match="lost"):
            await asyncio.wait_for(fut, 1)
    with pytest.raises(RuntimeError, match="lost"):  # nobody would ever answer it
        await asyncio.wait_for(c.submit(["late"]), 1)
    await asyncio.wait_for(c.drain(), 1)
    assert c.pending_ops == 0 and writer.gates == [] and book.open == []


async def test_a_committer_stopped_while_writing_waits_for_the_write_then_answers_all() -> None:
    c, book, writer = make()
    head = asyncio.ensure_future(c.submit(["a"]))
    await until(lambda: len(writer.gates) == 1)
    top = asyncio.ensure_future(c.submit(["b"]))
    await until(lambda: len(book.open) == 2)
    queued = asyncio.ensure_future(c.submit(["c"]))  # waits: two batches are open
    await asyncio.sleep(0.01)
    c.task.cancel()
    await asyncio.sleep(0.02)
    assert not head.done() and not top.done()  # the write's outcome is not known yet
    writer.gates[0].set()
    for fut in (head, top, queued):  # retriable: a retry with the same key replays
        with pytest.raises(RuntimeError, match="lost"):
            await asyncio.wait_for(fut, 1)
    assert [e for e in book.events if e[0] == "rollback"] == [
        ("rollback", ("b",)),  # newest first
        ("rollback", ("a",)),
    ]
    assert book.open == [] and writer.written == [["a"]] and len(writer.gates) == 1


async def test_a_committer_stopped_in_its_window_answers_the_callers_it_held() -> None:
    c, book, writer = make(window_s=5.0)
    held = [asyncio.ensure_future(c.submit([x])) for x in "ab"]
    await asyncio.sleep(0.02)
    c.task.cancel()
    for fut in held:
        with pytest.raises(RuntimeError, match="lost"):
            await asyncio.wait_for(fut, 1)
    assert writer.gates == [] and c.pending_ops == 0


async def test_when_the_books_commit_raises_the_written_batch_keeps_its_results() -> None:
    c, book, writer = make()
    head = asyncio.ensure_future(c.submit(["a"]))
    await until(lambda: len(writer.gates) == 1)
    top = asyncio.ensure_future(c.submit(["b"]))
    await until(lambda: len(book.open) == 2)
    book.fail_commit = True
    writer.gates[0].set()
    assert await asyncio.wait_for(head, 1) == ["a@1"]  # written: its results stand
    with pytest.raises(RuntimeError, match="lost"):  # undone, never written: retriable
        await asyncio.wait_for(top, 1)
    book.fail_commit = False
    writer.auto = True
    assert await asyncio.wait_for(c.submit(["c"]), 2) == ["c@1"]
    assert book.events[-3:] == [("reload",), ("stage", ("c",), 0), ("commit", ("c",))]
    assert writer.written == [["a"], ["c"]]
    c.task.cancel()


async def test_when_the_failure_policy_raises_the_failed_batch_is_still_answered() -> None:
    c, book, writer = make()
    writer.auto = True

    def broken(staged: Any, exc: BaseException) -> BaseException | None:
        raise RuntimeError("policy broke")

    book.policy = broken
    c.fail_next(1)
    with pytest.raises(RuntimeError, match="lost"):
        await asyncio.wait_for(c.submit(["a"]), 1)
    book.policy = lambda staged, exc: exc
    assert await asyncio.wait_for(c.submit(["b"]), 2) == ["b@1"]
    assert ("reload",) in book.events
    c.task.cancel()


async def test_an_observer_that_raises_undoes_nothing() -> None:
    book, writer = Book(), Writer()

    def observe(ops: list[Any], staged: Any, elapsed: float | None) -> None:
        raise RuntimeError("metrics broke")

    c: GroupCommitter = GroupCommitter(book, writer, window_s=0, max_ops=100, observe=observe)
    head = asyncio.ensure_future(c.submit(["a"]))
    await until(lambda: len(writer.gates) == 1)
    top = asyncio.ensure_future(c.submit(["b"]))
    await until(lambda: len(book.open) == 2)
    writer.auto = True
    writer.gates[0].set()
    assert await asyncio.wait_for(head, 1) == ["a@1"]
    assert await asyncio.wait_for(top, 1) == ["b@2"]  # staged on top, kept, written
    assert ("lost",) not in book.events and book.committed == [["a"], ["b"]]
    c.task.cancel()


async def test_a_committer_stopped_before_it_ever_ran_answers_its_callers() -> None:
    c, book, writer = make()
    c.task.cancel()
    early = asyncio.ensure_future(c.submit(["a"]))
    with pytest.raises(RuntimeError, match="lost"):
        await asyncio.wait_for(early, 1)
    assert writer.gates == []


async def test_a_repairable_head_is_staged_again_before_the_batch_requeued_from_on_top() -> None:
    c, book, writer = make()
    book.policy = lambda staged, exc: None  # e.g. replays of stored keys, now loaded
    c.fail_next(1)
    head = asyncio.ensure_future(c.submit(["a"]))
    await until(lambda: len(writer.gates) == 1)
    top = asyncio.ensure_future(c.submit(["b"]))
    await until(lambda: len(book.open) == 2)
    writer.auto = True
    writer.gates[0].set()
    assert await asyncio.wait_for(head, 2) == ["a@1"]
    assert await asyncio.wait_for(top, 2) == ["b@2"]
    assert book.events == [
        ("stage", ("a",), 0),
        ("stage", ("b",), 0),
        ("rollback", ("b",)),  # newest first, requeued unanswered
        ("rollback", ("a",)),
        ("failed", ("a",)),
        ("stage", ("a",), 1),
        ("stage", ("b",), 0),
        ("commit", ("a",)),
        ("commit", ("b",)),
    ]
    assert writer.written == [["a"], ["a"], ["b"]] and writer.fails == [True, False, False]
    assert c.requeued == 1 and c.batches == 2
    c.task.cancel()
