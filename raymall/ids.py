"""Snowflake-style 64-bit ids: time-ordered and unique across processes and nodes.

Layout (63 bits used, always positive): 41 bits of milliseconds since EPOCH_MS,
12 bits of worker id, 10 bits of sequence. The worker id is drawn at random per
process from 4,096 values and can be pinned; uniqueness across processes also holds
because a collision needs the same worker id, millisecond and sequence.
Callers that need a hard guarantee pass a worker id derived from their shard.
"""

from __future__ import annotations

import secrets
import threading
import time

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WORKER_BITS = 12
SEQUENCE_BITS = 10
MAX_WORKER = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


class Snowflake:
    def __init__(self, worker_id: int | None = None) -> None:
        if worker_id is None:
            worker_id = secrets.randbelow(MAX_WORKER + 1)
        if not 0 <= worker_id <= MAX_WORKER:
            raise ValueError(f"worker_id must be in [0, {MAX_WORKER}]")
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._last_ms = -1
        self._seq = 0

    def next_id(self) -> int:
        with self._lock:
            now = int(time.time() * 1000)
            if now < self._last_ms:  # clock went back: stay on the last millisecond
                now = self._last_ms
            if now == self._last_ms:
                self._seq = (self._seq + 1) & MAX_SEQUENCE
                if self._seq == 0:
                    while now <= self._last_ms:
                        time.sleep(0.0001)
                        now = int(time.time() * 1000)
            else:
                self._seq = 0
            self._last_ms = now
            return (
                ((now - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS))
                | (self.worker_id << SEQUENCE_BITS)
                | self._seq
            )


def id_time_ms(snowflake_id: int) -> int:
    return (snowflake_id >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS


def now_ms() -> int:
    return int(time.time() * 1000)
