"""The inventory shard's wire format: a batch of operations, or of their results, as one
msgpack blob per actor call.

Ray pickles arguments with cloudpickle, whose per-object hook costs about as much per small
tuple as the shard's own work on it; msgpack packs a batch of 500 operations in a small
fraction of that. It carries only plain values (no code):

- an operation of ``raymall.domain.shard_ops`` travels as ``(kind, *fields)`` (``kind``
  from ``KINDS``, every field, defaults included) and comes back as its type; one that
  cannot be rebuilt (unknown kind, another number of fields) comes back as
  ``Malformed(raw)``, which every shard answers ``invalid``. Only typed operations can be
  packed. Values are not checked here: the ledger and the desk check them;
- a result travels as its code (a str), or a ``BuyResult`` or ``ClaimResult`` as an
  array, rebuilt as the type with that many fields (their numbers of fields differ).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from raymall.domain.shard_ops import (
    KIND_OF,
    KINDS,
    BuyResult,
    ClaimResult,
    Malformed,
    Op,
    Result,
)

_CLS = KINDS
_SIZE = {kind: len(cls._fields) + 1 for kind, cls in KINDS.items()}  # kind + every field
_RESULTS: dict[int, type[Any]] = {len(t._fields): t for t in (BuyResult, ClaimResult)}
assert len(_RESULTS) == 2, "structured results are told apart by their number of fields"


def pack_batch(ops: Sequence[Op]) -> bytes:
    """Operations as one blob (``KeyError`` for anything but a ``shard_ops`` type)."""
    kind = KIND_OF
    return msgpack.packb([(kind[type(op)], *op) for op in ops], use_bin_type=True)


def _values(blob: bytes) -> tuple[Any, ...]:
    values = msgpack.unpackb(blob, use_list=False, raw=False, strict_map_key=False)
    if not isinstance(values, tuple):
        raise TypeError("a packed batch holds a sequence")
    return values


def unpack_batch(blob: bytes) -> list[Op]:
    """The operations of ``pack_batch``, each as its type: an array whose kind is known and
    which holds every field of it (``pack_batch`` always sends them all); anything else
    comes back as ``Malformed``."""
    values = _values(blob)
    cls, size, new = _CLS, _SIZE, tuple.__new__
    try:  # every op well formed: one pass, no Python call per op
        ops = [new(cls[v[0]], v[1:]) for v in values if len(v) == size[v[0]]]
    except (KeyError, TypeError, IndexError):
        ops = []
    if len(ops) == len(values):
        return ops
    return [_op(v) for v in values]


def _op(value: Any) -> Op:
    try:
        if len(value) == _SIZE[value[0]]:
            return tuple.__new__(_CLS[value[0]], value[1:])  # type: ignore[no-any-return]
    except (KeyError, TypeError, IndexError):
        pass
    return Malformed(value)


def pack_results(results: Sequence[Result]) -> bytes:
    """One result per operation: codes, and structured results packed as arrays."""
    return msgpack.packb(results, use_bin_type=True)


def unpack_results(blob: bytes) -> list[Result]:
    """The results of ``pack_results``: codes as str, arrays rebuilt as ``BuyResult`` or
    ``ClaimResult`` (by their number of fields)."""
    new, types = tuple.__new__, _RESULTS
    return [new(types[len(v)], v) if type(v) is tuple else v for v in _values(blob)]
