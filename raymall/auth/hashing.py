"""The replica's password-hashing pool: a few threads and a bounded queue in front of them.

Guarantees:
- hashes run on ``threads`` dedicated threads, never on the event loop;
- at most ``max_pending`` hashes wait or run at once on a replica; the request that would
  exceed it is refused at once with 503 ``unavailable`` and ``Retry-After`` (the newcomer
  waits, not everyone behind an ever-growing queue);
- work nobody has proven a right to (a registration, an unknown name's dummy verify:
  ``bulk=True``) may fill at most half of the queue, so a flood of it leaves room for the
  sign-ins of real accounts;
- every hash is counted in ``raymall_password_hashes_total{op}`` (hash, verify, dummy);
- ``typical_verify_s`` follows how long a verify takes here (a moving average), for an
  answer that must take as long as a verify without spending one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from raymall import metrics
from raymall.errors import Unavailable
from raymall.passwords import PasswordHasher

T = TypeVar("T")


class HashPool:
    def __init__(self, hasher: PasswordHasher, *, threads: int, max_pending: int) -> None:
        self.hasher = hasher
        self.threads = threads
        self.max_pending = max_pending
        self.max_bulk = max(1, max_pending // 2)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="pwhash")
        self.pending = 0
        self.pending_bulk = 0
        self.typical_verify_s = 0.03  # until measured

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def hash(self, password: str, *, bulk: bool = False) -> str:
        return await self._run("hash", bulk, self.hasher.hash, password)

    async def verify(self, password: str, hashed: str, *, dummy: bool = False) -> bool:
        """Does ``password`` match ``hashed``? ``dummy``: a verify for an unknown name (bulk
        work, counted apart)."""
        started = time.perf_counter()
        ok = await self._run(
            "dummy" if dummy else "verify", dummy, self.hasher.verify, password, hashed
        )
        spent = time.perf_counter() - started
        self.typical_verify_s += (min(spent, 2.0) - self.typical_verify_s) * 0.1
        return bool(ok)

    async def _run(self, op: str, bulk: bool, fn: Callable[..., T], *args: Any) -> T:
        if self.pending >= self.max_pending or (bulk and self.pending_bulk >= self.max_bulk):
            raise Unavailable(
                "too many password checks in progress; retry shortly",
                details={"retry_after": self._retry_after_s()},
            )
        self.pending += 1
        self.pending_bulk += bulk
        try:
            metrics.PASSWORD_HASHES.labels(op).inc()
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.pending -= 1
            self.pending_bulk -= bulk

    def _retry_after_s(self) -> int:
        """About the time the queue in front needs to drain (whole seconds, at least 1)."""
        return max(1, math.ceil(self.pending * self.typical_verify_s / self.threads))
