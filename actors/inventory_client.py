"""InventoryClient: the one way processes talk to the inventory shards.

One per process (a Serve replica builds it in ``deployments.services.build_services``;
benches and tests build their own). Guarantees:

- **coalescing**: concurrent operations for the same shard travel in one actor call (a
  ``raymall.batching.Batcher`` per shard: sent when a previous call to that shard returns,
  or after ``inventory_client_window_ms``; at most ``inventory_client_max_batch``
  operations and two calls in flight per shard; a long queue goes as two calls);
- **keyed retries**: when a shard dies, restarts or fails a commit, the batch is re-sent
  with the same keys (``actors.caller.ActorCaller``: backoff, for at most
  ``inventory_retry_s``), so each operation takes effect exactly once; after that,
  ``Unavailable`` (503, retriable with the same key);
- **multi-shard reservations**: a reservation is stored per shard under ``f"{key}@{shard}"``;
  shards are reserved one at a time in ascending shard order, and whatever was taken is
  released if a later shard refuses or fails. A release that cannot reach its shard is
  still covered by the reservation's deadline;
- domain outcomes come back as ``raymall.errors`` exceptions (OutOfStock, NotFound, ...),
  by the one table of ``raymall.domain.outcomes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from functools import partial
from typing import Any

from actors.caller import ActorCaller
from actors.wire import pack_batch, unpack_results
from raymall.batching import Batcher
from raymall.domain.outcomes import raise_for
from raymall.domain.shard_ops import Adjust, Confirm, Op, Release, Reserve
from raymall.errors import Unavailable, ValidationFailed
from raymall.hashing import shard_for
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.settings import Settings

log = get_logger("inventory.client")

MAX_KEY_LEN = 150  # inventory_ops.key is 160 wide; "@{shard}" is appended
MAX_INFLIGHT_PER_SHARD = 2  # the shard commits one batch while it stages the next
SPLIT_MIN = 8  # a lane with nothing in flight splits a queue of 2 * SPLIT_MIN or more
CALL_TIMEOUT_S = 20.0
READ_RETRY_S = 3.0


def shard_name(index: int) -> str:
    return f"inventory-{index}"


class InventoryClient:
    """Async client of the inventory shards (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.shards = settings.inventory_shards
        self.window_s = settings.inventory_client_window_ms / 1000
        self.max_batch = settings.inventory_client_max_batch
        self.retry_s = settings.inventory_retry_s
        self._lanes: dict[int, Batcher[Op, Any]] = {}
        self.caller = ActorCaller(
            settings.namespace, shard_name, timeout_s=CALL_TIMEOUT_S, retry_s=self.retry_s
        )
        self._shard_cache: dict[int, int] = {}

    def shard_of(self, sku_id: int) -> int:
        shard = self._shard_cache.get(sku_id)
        if shard is None:
            if len(self._shard_cache) > 100_000:
                self._shard_cache.clear()
            shard = self._shard_cache[sku_id] = shard_for(sku_id, self.shards)
        return shard

    # ---- transport --------------------------------------------------------------------
    async def send_batch(self, shard: int, ops: list[Op]) -> list[Any]:
        """One batch of keyed operations to ``shard`` as one packed call (retried as
        ``call`` retries); one result per operation."""
        results = unpack_results(await self.call(shard, "submit_packed", pack_batch(ops)))
        if len(results) != len(ops):
            raise Unavailable(f"inventory shard {shard} answered {len(results)} of {len(ops)}")
        return results

    async def call(self, shard: int, method: str, *args: Any, budget_s: float | None = None) -> Any:
        """Call a shard method, retrying actor faults and retriable errors for at most
        ``budget_s`` (default ``inventory_retry_s``). Safe only for keyed (idempotent)
        operations and reads."""
        return await self.caller.call(shard, method, *args, budget_s=budget_s)

    async def submit(self, shard: int, op: Op) -> str:
        """Send one operation (``raymall.domain.shard_ops``) through the shard's batcher;
        answer its result."""
        lane = self._lanes.get(shard)
        if lane is None:
            lane = self._lanes[shard] = Batcher(
                partial(self.send_batch, shard),
                max_batch=self.max_batch,
                max_inflight=MAX_INFLIGHT_PER_SHARD,
                window_s=self.window_s,
                split_min=SPLIT_MIN,
            )
        return await lane.put(op)

    # ---- operations -------------------------------------------------------------------
    def _split(self, items: dict[int, int]) -> dict[int, dict[int, int]]:
        by_shard: dict[int, dict[int, int]] = {}
        for sku_id, qty in items.items():
            by_shard.setdefault(self.shard_of(sku_id), {})[sku_id] = qty
        return by_shard

    async def reserve(self, key: str, items: dict[int, int], ttl_s: float | None) -> None:
        """Hold ``items`` ({sku_id: qty}) under ``key`` until confirmed, released or
        expired (``ttl_s``; None = no deadline). All or nothing across shards."""
        _check_key(key)
        if not isinstance(items, dict) or not items:
            raise ValidationFailed("a reservation needs at least one item")
        for sku_id, qty in items.items():
            if type(sku_id) is not int or sku_id <= 0 or type(qty) is not int or qty <= 0:
                raise ValidationFailed("items must map positive SKU ids to positive quantities")
        if ttl_s is not None and ttl_s <= 0:
            raise ValidationFailed("ttl_s must be positive")
        expires_ms = None if ttl_s is None else now_ms() + int(ttl_s * 1000)
        if len(items) == 1:  # the common case: one shard, nothing to undo
            (sku_id,) = items
            shard = self.shard_of(sku_id)
            code = await self.submit(shard, Reserve(f"{key}@{shard}", items, expires_ms))
            raise_for(code, key=key, skus=items)
            return
        by_shard = self._split(items)
        taken: list[int] = []
        for shard in sorted(by_shard):
            part = by_shard[shard]
            try:
                code = await self.submit(shard, Reserve(f"{key}@{shard}", part, expires_ms))
            except BaseException:
                await self._undo(key, [*taken, shard])
                raise
            if code != "ok":
                await self._undo(key, taken)
                raise_for(code, key=key, skus=part)
            taken.append(shard)

    async def _undo(self, key: str, shards: list[int]) -> None:
        """Release what a failed multi-shard reservation took (best effort: a shard that
        cannot be reached keeps the hold until its deadline)."""
        for shard in shards:
            try:
                await self.submit(shard, Release(f"{key}@{shard}"))
            except Exception:
                log.warning("could not release %s@%s; its deadline will", key, shard)

    async def release(self, key: str, sku_ids: Iterable[int]) -> None:
        """Return the stock held under ``key``. Idempotent; InvalidTransition if confirmed."""
        await self._each_shard(key, sku_ids, Release)

    async def confirm(self, key: str, sku_ids: Iterable[int]) -> None:
        """Reserved becomes sold (on payment). Idempotent; InvalidTransition if the
        reservation was released or expired, NotFound if there is none."""
        await self._each_shard(key, sku_ids, Confirm)

    async def _each_shard(
        self, key: str, sku_ids: Iterable[int], kind: type[Release] | type[Confirm]
    ) -> None:
        _check_key(key)
        shards = sorted({self.shard_of(s) for s in sku_ids})
        if not shards:
            raise ValidationFailed("sku_ids must name the reserved SKUs")
        codes = await asyncio.gather(
            *(self.submit(s, kind(f"{key}@{s}")) for s in shards), return_exceptions=True
        )
        for code in codes:
            if isinstance(code, BaseException):
                raise code
        for code in codes:
            raise_for(str(code), key=key)

    async def adjust(
        self, key: str, sku_id: int, delta: int, reason: str, actor_id: int | None = None
    ) -> None:
        """Admin restock (delta > 0) or write-off (delta < 0), audited; never takes
        available below zero (OutOfStock). Idempotent by ``key``."""
        _check_key(key)
        if type(sku_id) is not int or type(delta) is not int or delta == 0:
            raise ValidationFailed("delta must be a non-zero integer")
        op = Adjust(key, sku_id, delta, reason[:255], actor_id)
        raise_for(await self.submit(self.shard_of(sku_id), op), key=key, skus=[sku_id])

    async def availability(self, sku_ids: Iterable[int]) -> dict[int, int]:
        """Available units per SKU (SKUs without inventory are left out), from the owning
        shards' memory. Retries actor faults for at most 3 s, then ``Unavailable``."""
        return await self._read("availability", sku_ids)

    async def snapshot(self, sku_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        """The owning shards' in-memory counters per SKU."""
        return await self._read("snapshot", sku_ids)

    async def _read(self, method: str, sku_ids: Iterable[int]) -> dict[int, Any]:
        by_shard: dict[int, list[int]] = {}
        for sku_id in sku_ids:
            by_shard.setdefault(self.shard_of(sku_id), []).append(sku_id)
        budget = min(READ_RETRY_S, self.retry_s)  # a page should not wait out a restart
        parts = await asyncio.gather(
            *(self.call(s, method, ids, budget_s=budget) for s, ids in by_shard.items())
        )
        out: dict[int, Any] = {}
        for part in parts:
            out.update(part)
        return out


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LEN:
        raise ValidationFailed(f"a key is a non-empty string of at most {MAX_KEY_LEN} chars")
