"""A Bloom filter of product ids, kept in Redis so every replica shares one filter.

Why Redis and not replica memory: a product created through one replica must be "maybe
present" on every replica at once, or another replica would answer 404 for it. A shared
bitmap gives that with no fan-out; an in-memory filter would need a broadcast on every
write and a rebuild per replica.

Guarantees:
- no false negatives for ids added before their transaction commits (writers call
  ``add_sync`` after the INSERT's flush and before the commit); a rolled-back insert
  only leaves a false positive, which costs one DB lookup (then a cached null);
- bit 0 of the bitmap is the "complete" flag, set only after a full rebuild from the
  database. If the key is lost (Redis restart, flush, eviction), the flag reads 0 and
  readers treat the filter as absent (every id goes to the cache/DB) until the next
  rebuild; a stale "no" is never trusted;
- bits are only ever set, so concurrent writers and rebuilders cannot undo each other.
Deleted ids stay in the filter (harmless: they cost one lookup, then a cached null).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

READY_BIT = 0
ADD_CHUNK = 512


@dataclass(frozen=True)
class BloomSpec:
    bits: int
    hashes: int
    prefix: str = "catalog"

    @classmethod
    def for_capacity(cls, capacity: int, error_rate: float, prefix: str = "catalog") -> BloomSpec:
        """Optimal size for ``capacity`` ids at ``error_rate`` false positives."""
        bits = math.ceil(-capacity * math.log(error_rate) / (math.log(2) ** 2))
        hashes = max(1, round(bits / capacity * math.log(2)))
        return cls(bits=bits, hashes=hashes, prefix=prefix)

    @property
    def key(self) -> str:
        # The shape is part of the name: a resized filter starts empty, never mixed.
        return f"{self.prefix}:bloom:{self.bits}:{self.hashes}"

    @property
    def lock_key(self) -> str:
        return f"{self.key}:rebuild"

    def offsets(self, item: int | str) -> list[int]:
        """Bit positions of ``item`` (double hashing over BLAKE2b; bit 0 is reserved)."""
        digest = hashlib.blake2b(str(item).encode(), digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "big")
        h2 = int.from_bytes(digest[8:], "big") | 1
        return [1 + (h1 + i * h2) % self.bits for i in range(self.hashes)]


def _set_args(spec: BloomSpec, items: Iterable[int | str]) -> list[Any]:
    args: list[Any] = []
    for item in items:
        for off in spec.offsets(item):
            args += ["SET", "u1", off, 1]
    return args


def add_sync(client: Any, spec: BloomSpec, items: Sequence[int | str]) -> None:
    """Add ids with a synchronous redis client (writers run in worker threads)."""
    for i in range(0, len(items), ADD_CHUNK):
        client.execute_command("BITFIELD", spec.key, *_set_args(spec, items[i : i + ADD_CHUNK]))


async def add(client: Any, spec: BloomSpec, items: Sequence[int | str]) -> None:
    for i in range(0, len(items), ADD_CHUNK):
        await client.execute_command(
            "BITFIELD", spec.key, *_set_args(spec, items[i : i + ADD_CHUNK])
        )


async def is_complete(client: Any, spec: BloomSpec) -> bool:
    return int(await client.getbit(spec.key, READY_BIT)) == 1


async def might_contain(client: Any, spec: BloomSpec, item: int | str) -> bool | None:
    """True: maybe present; False: certainly absent; None: the filter is not complete."""
    args: list[Any] = ["GET", "u1", READY_BIT]
    for off in spec.offsets(item):
        args += ["GET", "u1", off]
    bits = await client.execute_command("BITFIELD", spec.key, *args)
    if not bits or int(bits[0]) != 1:
        return None
    return all(int(b) == 1 for b in bits[1:])


async def mark_complete(client: Any, spec: BloomSpec) -> None:
    await client.setbit(spec.key, READY_BIT, 1)
