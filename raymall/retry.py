"""The one backoff policy: jittered exponential waits, within a time budget if given.

Waits ``first_s``, then twice that each time up to ``max_s``, each multiplied by a random
factor in [0.5, 1.5) so that callers failing together do not retry together. With a
budget, ``exhausted()`` says when the next wait would end past it: the caller then gives
up (``Unavailable``) instead of sleeping. Used by the actor caller (``actors.caller``) and
by the payment provider's callback delivery.
"""

from __future__ import annotations

import asyncio
import random
import time


class Backoff:
    """One retry loop's waits (a new one per operation)."""

    __slots__ = ("delay", "max_s", "deadline")

    def __init__(
        self, *, first_s: float = 0.05, max_s: float = 1.0, budget_s: float | None = None
    ) -> None:
        self.delay = first_s
        self.max_s = max_s
        self.deadline = None if budget_s is None else time.monotonic() + budget_s

    def exhausted(self) -> bool:
        """True when the next wait would end past the budget."""
        return self.deadline is not None and time.monotonic() + self.delay > self.deadline

    def next_wait(self) -> float:
        """The next wait, jittered; the one after it doubles (up to ``max_s``)."""
        wait = self.delay * (0.5 + random.random())
        self.delay = min(self.delay * 2, self.max_s)
        return wait

    async def wait(self) -> None:
        await asyncio.sleep(self.next_wait())
