"""GroupCommitter: group commit, two batches deep, for an owner actor over a plain book.

Callers ``submit`` lists of operations; the committer gathers what is pending into one
batch, has the *book* apply it in memory (``stage``), hands the book's work to a blocking
*writer* run in a thread (one transaction), and answers each caller its results only once
that write has returned (durable before ack). Guarantees:

- **group commit**: everything pending goes in the next batch as soon as the previous one
  is staged (operations arriving during a commit form the next group, as in InnoDB's group
  commit); callers are taken until the batch holds ``max_ops`` operations or more (a
  caller's list is never split). Callers that
  came one operation at a time are held up to ``window_s`` after the first of them to
  gather company; a caller's list of several is not, it already waited in its client;
- **two deep**: while batch N's write is in flight, batch N+1 is staged on top of it; its
  write starts once N's has returned. Answers go out in batch order, each after its own
  write;
- **failure**: when N's write fails, N+1 is undone first (``rollback``, newest first: it
  was applied on top of N) and queued again at the head, unanswered; then N is undone and
  the book's failure policy (``failed``) gives its callers their error, or has N staged
  again (a replay of keys the book had to look up). A batch the book refuses to stage
  (``stage`` raises) answers each of its callers that exception;
- an unexpected error in the committer itself (the book's ``commit`` or ``failed``
  raising, say) or its task cancelled: every write in flight is waited for (a cancel does
  not reach it), every staged batch undone, newest first, and every caller not answered
  yet gets ``book.lost()``'s error (retriable: a retry with the same keys replays), the
  batch being staged or retried included; the book rebuilds its memory before the next
  batch. A batch whose write returned keeps its results even if ``book.commit`` raises;
- a stopped committer (its task cancelled, e.g. at shutdown) answers everything still
  queued, and every later ``submit``, ``book.lost()``'s error;
- **traced** (``raymall.tracing``): a batch holding sampled callers has one span, a child
  of the first of them and linked to each, over its apply (a child span) and its write
  (the transaction, a child span with its SQL under it) until its commit is answered; a
  batch staged again after a failed write is not traced.

The book (``CommitBook``) is single-threaded state: the committer calls it only from the
event loop; only the writer runs in a thread, on values the book fixed at ``stage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from raymall import tracing
from raymall.logs import get_logger

log = get_logger("group_commit")

T = TypeVar("T")  # an operation
R = TypeVar("R")  # its result


class Staged(Protocol[R]):
    """A batch applied in memory: one result per operation, and what the writer writes
    (falsy: nothing, e.g. only replays and refusals)."""

    @property
    def results(self) -> list[R]: ...

    @property
    def work(self) -> Any: ...


class CommitBook(Protocol[T, R]):
    """The in-memory state a ``GroupCommitter`` commits (see the module docstring)."""

    async def ready(self) -> None:
        """Called before a batch is staged with no batch open (e.g. to rebuild memory); an
        error leaves queued batches queued, and the committer tries again shortly (a batch
        being staged again after a failed write gets ``lost()``'s error)."""
        ...

    async def stage(self, ops: list[T], attempt: int) -> Staged[R]:
        """Apply ``ops`` as a new open batch on top of any open one; raise to refuse the
        batch (having undone whatever it began)."""
        ...

    def commit(self, staged: Any) -> None:
        """The oldest open batch (``staged``) is durable."""
        ...

    def rollback(self) -> None:
        """Undo the newest open batch."""
        ...

    async def failed(self, staged: Any, exc: BaseException) -> BaseException | None:
        """``staged``'s write raised ``exc`` (it is undone already): the error for its
        callers, or None to stage it again with ``attempt + 1``."""
        ...

    def lost(self) -> BaseException:
        """What was written is unknown: rebuild memory before the next ``stage``. The
        error for the callers of every batch undone, and of a stopped committer."""
        ...


Waiter = tuple[list[Any], "asyncio.Future[list[Any]]"]
Writer = Callable[[Any, bool], None]  # (work, fail on purpose before COMMIT: a test hook)
Observer = Callable[[list[Any], Any, "float | None"], None]  # (ops, staged, elapsed)


@dataclass
class _Stage:
    """One staged batch whose write has not been answered yet."""

    batch: list[Waiter]
    ops: list[Any]
    staged: Staged[Any]
    attempt: int
    write: asyncio.Future[None] | None = None
    started: float = 0.0
    span: Any = None  # the batch's span, when it holds sampled callers


def _write_traced(write: Writer, work: Any, fail: bool) -> None:
    """The writer under a span of its own (the transaction), below the batch's span."""
    size = len(work) if hasattr(work, "__len__") else 0
    attributes: dict[str, Any] = {"raymall.statements": size}
    with tracing.child_span("db transaction", **attributes):
        write(work, fail)


def _end_span(stage: _Stage, error: BaseException | None = None) -> None:
    span, stage.span = stage.span, None
    _finish(span, error)


def _finish(span: Any, error: BaseException | None = None) -> None:
    if span is not None:
        if error is not None:
            span.record_exception(error)
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()


def _fail(batch: list[Waiter], err: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(err)


class GroupCommitter(Generic[T, R]):
    """Queue, two-deep pipeline and requeue on failure (see the module docstring).

    ``observe(ops, staged, elapsed)`` is called for each committed batch (``elapsed`` is
    its write's duration in seconds, None when there was nothing to write);
    ``queue_depth(ops)`` with the number of operations queued each time a batch is taken."""

    def __init__(
        self,
        book: CommitBook[T, R],
        write: Writer,
        *,
        window_s: float,
        max_ops: int,
        name: str = "committer",
        observe: Observer | None = None,
        queue_depth: Callable[[int], None] | None = None,
    ) -> None:
        self.book = book
        self._write = write
        self._window_s = window_s
        self._max_ops = max_ops
        self._name = name
        self._observe = observe
        self._queue_depth = queue_depth
        self._traced: dict[asyncio.Future[Any], Any] = {}  # future -> caller's sampled span
        self._pending: deque[Waiter] = deque()
        self.pending_ops = 0
        self._staged: list[_Stage] = []
        self.requeued = 0  # batches undone because the batch under them failed
        self.batches = 0  # batches written
        self.commit_s = 0.0  # time spent in their writes
        self._fail_writes = 0
        self._closed = False  # the committer's task has ended: nobody would answer
        self._first_at = 0.0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.task = asyncio.get_running_loop().create_task(self._commit_loop())
        self.task.add_done_callback(self._close)  # even if cancelled before it ever ran

    async def submit(self, ops: list[T]) -> list[R]:
        """Queue ``ops`` for the next group commit; their results, in order, once the write
        holding them has returned (or the batch's error)."""
        if not ops:
            return []
        if self._closed:
            raise self.book.lost()
        fut: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append((ops, fut))
        self.pending_ops += len(ops)
        if tracing.enabled:
            span = tracing.recording_span()
            if span is not None:
                self._traced[fut] = span
                fut.add_done_callback(self._untrace)  # answered without a write, say
        self._idle.clear()
        self._wake.set()
        if self.pending_ops >= self._max_ops:
            self._full.set()
        return await fut

    def _untrace(self, fut: asyncio.Future[Any]) -> None:
        self._traced.pop(fut, None)

    async def drain(self) -> None:
        """Wait until every queued operation has been committed and answered."""
        while self._pending or not self._idle.is_set():
            await self._idle.wait()

    def fail_next(self, count: int) -> None:
        """Test hook: the writer is asked to fail the next ``count`` writes before COMMIT."""
        self._fail_writes = int(count)

    async def _commit_loop(self) -> None:
        while True:
            try:
                await self._wake.wait()
                # Wait for company only when callers came one op at a time: a client batch
                # already waited in its client's window.
                alone = self.pending_ops == len(self._pending)
                if alone and self.pending_ops < self._max_ops:
                    delay = self._first_at + self._window_s - time.monotonic()
                    if delay > 0:
                        try:
                            await asyncio.wait_for(self._full.wait(), delay)
                        except TimeoutError:
                            pass
                await self._pipeline()
            except Exception:  # the loop must outlive any single batch
                log.exception("%s error", self._name)
                await asyncio.sleep(0.05)
            finally:
                if not self._pending:
                    self._idle.set()

    def _close(self, task: object = None) -> None:
        """The committer's task has ended (cancelled): answer what is queued, and refuse
        what comes."""
        self._closed = True
        if self._pending:
            queued = list(self._pending)
            self._pending.clear()
            self.pending_ops = 0
            _fail(queued, self.book.lost())
        self._idle.set()

    def _take(self) -> list[Waiter]:
        batch: list[Waiter] = []
        n = 0
        if self._queue_depth is not None:
            self._queue_depth(self.pending_ops)
        while self._pending and n < self._max_ops:
            ops, fut = self._pending.popleft()
            batch.append((ops, fut))
            n += len(ops)
        self.pending_ops -= n
        if self.pending_ops < self._max_ops:
            self._full.clear()
        if not self._pending:
            self._wake.clear()
        return batch

    def _requeue(self, batch: list[Waiter]) -> None:
        """Put a staged-then-undone batch back at the head of the queue (not answered)."""
        self.requeued += 1
        if not self._pending:
            self._first_at = time.monotonic()
        for ops, fut in reversed(batch):
            self._pending.appendleft((ops, fut))
            self.pending_ops += len(ops)
        self._wake.set()
        if self.pending_ops >= self._max_ops:
            self._full.set()

    async def _pipeline(self) -> None:
        """Commit what is pending, two batches deep (see the module docstring)."""
        staged = self._staged  # open batches, oldest first: [head (writing), next]
        loose: list[Waiter] = []  # off the queue and out of ``staged``, not answered yet
        try:
            while True:
                if self._pending and len(staged) < 2:
                    if not staged:
                        await self.book.ready()
                    loose = self._take()
                    stage = await self._stage(loose)
                    loose = []
                    if stage is not None:
                        staged.append(stage)
                        if len(staged) == 1:
                            self._start(stage)
                            continue
                if not staged:
                    return
                head = staged[0]
                assert head.write is not None
                if len(staged) == 1 and not head.write.done():
                    # Stage newcomers as soon as they arrive, not after the commit.
                    waiter: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
                    writing: asyncio.Future[Any] = head.write
                    try:
                        await asyncio.wait({writing, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                    if not head.write.done():
                        continue
                try:
                    # shielded: a cancel of the committer must not cancel the write's task
                    # (the thread goes on writing; the handler below waits for it)
                    await asyncio.shield(head.write)
                except Exception as exc:
                    for stage in staged:
                        _end_span(stage, exc)
                    if len(staged) == 2:  # newest first
                        self.book.rollback()
                        self._requeue(staged.pop().batch)
                    self.book.rollback()
                    loose = staged.pop().batch
                    err = await self.book.failed(head.staged, exc)
                    if err is None:  # stage it again
                        await self.book.ready()
                        again = await self._stage(loose, head.attempt + 1)
                        if again is not None:
                            staged.append(self._start(again))
                    else:
                        _fail(loose, err)
                    loose = []
                    continue
                staged.pop(0)
                self._committed(head)
                if staged:
                    self._start(staged[0])
        except BaseException:
            # Unexpected: the outcome of a write in flight is unknown. Let it finish, undo
            # everything staged, answer every caller not answered yet; the book reloads
            # before the next batch.
            err = self.book.lost()
            _fail(loose, err)
            for stage in staged:
                _end_span(stage, err)
                if stage.write is not None:
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(stage.write)
            while staged:
                with contextlib.suppress(Exception):  # memory is rebuilt anyway
                    self.book.rollback()
                _fail(staged.pop().batch, err)
            raise

    async def _stage(self, batch: list[Waiter], attempt: int = 0) -> _Stage | None:
        """Have the book apply ``batch``; None (its callers answered the book's error) if
        it refused, or if there was nothing to stage."""
        if not batch:
            return None
        ops = [op for ops, _ in batch for op in ops]
        span = self._batch_span(batch, ops, attempt) if self._traced else None
        try:
            if span is None:
                staged = await self.book.stage(ops, attempt)
            else:
                with tracing.use_current(span), tracing.child_span("apply", internal=True):
                    staged = await self.book.stage(ops, attempt)
        except Exception as exc:
            _fail(batch, exc)
            _finish(span, exc)
            return None
        return _Stage(batch, ops, staged, attempt, span=span)

    def _batch_span(self, batch: list[Waiter], ops: list[Any], attempt: int) -> Any:
        """The batch's span (apply, write, commit), if it holds sampled callers."""
        members = [s for _, f in batch if (s := self._traced.pop(f, None)) is not None]
        return tracing.start_batch(
            f"group commit {self._name}",
            members,
            **{"raymall.commit.ops": len(ops), "raymall.commit.attempt": attempt},
        )

    def _start(self, stage: _Stage) -> _Stage:
        work = stage.staged.work
        if not work:  # only replays and refusals: nothing to write
            stage.write = asyncio.get_running_loop().create_future()
            stage.write.set_result(None)
            return stage
        fail = self._fail_writes > 0
        if fail:
            self._fail_writes -= 1
        stage.started = time.perf_counter()
        # asyncio.to_thread without its task: awaited through a shield (see _pipeline), the
        # executor's future itself wakes the committer one loop turn sooner
        if stage.span is not None:
            with tracing.use_current(stage.span):
                run = contextvars.copy_context().run
        else:
            run = contextvars.copy_context().run
        loop = asyncio.get_running_loop()
        writer = self._write if stage.span is None else partial(_write_traced, self._write)
        stage.write = loop.run_in_executor(None, run, writer, work, fail)
        return stage

    def _committed(self, stage: _Stage) -> None:
        try:
            self.book.commit(stage.staged)
        finally:  # written: its callers get their results even if memory cannot follow
            results = stage.staged.results
            i = 0
            for ops, fut in stage.batch:
                if not fut.done():
                    fut.set_result(results[i : i + len(ops)])
                i += len(ops)
        elapsed = None
        if stage.staged.work:
            elapsed = time.perf_counter() - stage.started
            self.batches += 1
            self.commit_s += elapsed
        _end_span(stage)
        if self._observe is not None:
            try:
                self._observe(stage.ops, stage.staged, elapsed)
            except Exception:  # metrics must not undo the batch staged on top
                log.exception("%s observer error", self._name)
