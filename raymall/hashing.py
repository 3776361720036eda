"""Stable routing: the same key goes to the same shard in every process and on every node.

Python's ``hash()`` is salted per process, so it must never route. ``stable_hash`` is the
first 8 bytes of BLAKE2b, which is fast, fixed across platforms and Python versions.
"""

from __future__ import annotations

import hashlib


def stable_hash(key: str | int) -> int:
    data = str(key).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def shard_for(key: str | int, shards: int) -> int:
    if shards < 1:
        raise ValueError("shards must be >= 1")
    return stable_hash(key) % shards
