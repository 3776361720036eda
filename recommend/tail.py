"""Reading the outbox in id order without skipping rows that commit late.

Outbox ids are allocated when a row is inserted, but transactions commit in any order: a
reader that saw id 11 may see id 10 appear later. A plain ``id > last_seen`` cursor would
skip it for good. ``OutboxTail`` remembers the *gaps* below the highest id it has seen,
re-reads them until they fill or until they are older than a grace period (a rolled-back
transaction leaves a gap that never fills), and only moves the persisted cursor up to
the first open gap.

Guarantee: every row that commits within ``grace_ms`` of its gap being noticed is
returned exactly once per tail instance. After a restart the tail starts again from the
persisted cursor, so rows above it may be returned a second time; consumers are
idempotent. Pure logic: no I/O, no clock (callers pass ``now_ms``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Gap:
    lo: int  # inclusive
    hi: int  # inclusive
    since_ms: int


class OutboxTail:
    def __init__(self, cursor: int, grace_ms: int) -> None:
        if cursor < 0 or grace_ms < 0:
            raise ValueError("cursor and grace_ms must not be negative")
        self.cursor = cursor  # every id <= cursor is handled or given up on
        self.high = cursor  # the highest id seen
        self.grace_ms = grace_ms
        self.gaps: list[Gap] = []  # disjoint, ascending (and so oldest first)
        self._rotate = 0

    def observe(self, ids: Iterable[int], now_ms: int) -> list[int]:
        """Record rows read from the outbox; return the ids not seen before, ascending."""
        fresh: list[int] = []
        for i in sorted(set(ids)):
            if i <= self.cursor:
                continue
            if i > self.high:
                if i > self.high + 1:
                    self.gaps.append(Gap(self.high + 1, i - 1, now_ms))
                self.high = i
                fresh.append(i)
            elif self._fill(i):
                fresh.append(i)
        return fresh

    def _fill(self, i: int) -> bool:
        n = bisect.bisect_right(self.gaps, i, key=lambda g: g.lo) - 1
        if n < 0 or not self.gaps[n].lo <= i <= self.gaps[n].hi:
            return False
        g = self.gaps[n]
        parts = []
        if g.lo < i:
            parts.append(Gap(g.lo, i - 1, g.since_ms))
        if i < g.hi:
            parts.append(Gap(i + 1, g.hi, g.since_ms))
        self.gaps[n : n + 1] = parts
        return True

    def advance(self, now_ms: int) -> int:
        """Give up on gaps older than the grace period; return the new safe cursor."""
        expired = 0
        while expired < len(self.gaps) and now_ms - self.gaps[expired].since_ms >= self.grace_ms:
            expired += 1
        if expired:
            del self.gaps[:expired]
        self.cursor = self.gaps[0].lo - 1 if self.gaps else self.high
        return self.cursor

    def gaps_to_check(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` open gaps to re-read; successive calls rotate through them all."""
        if not self.gaps:
            return []
        if len(self.gaps) <= limit:
            return [(g.lo, g.hi) for g in self.gaps]
        start = self._rotate % len(self.gaps)
        self._rotate = start + limit
        picked = (self.gaps + self.gaps)[start : start + limit]
        return sorted((g.lo, g.hi) for g in picked)
