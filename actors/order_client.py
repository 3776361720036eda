"""OrderShardClient: how replicas reach the OrderShard that owns a user's orders.

Guarantees:

- routing by ``shard_for(user_id, order_shards)`` for new orders and by the stored
  ``orders.shard`` afterwards, so one order always has one owner;
- concurrent placements for one shard are coalesced into one actor call (``place_many``);
- actor faults (a shard restarting) are retried for up to ``ACTOR_RETRY_S``. Placement is
  safe to retry because it always carries an idempotency key; a retried transition that
  finds the order already in the target state answers that state instead of 409;
- after that, ``Unavailable`` (503, retriable).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from raymall.batching import Batcher
from raymall.errors import DomainError, InvalidTransition, Unavailable
from raymall.hashing import shard_for
from raymall.orders.workflow import Placed, PlaceOrder
from raymall.settings import Settings

ACTOR_RETRY_S = 20.0
CALL_TIMEOUT_S = 60.0


def shard_name(index: int) -> str:
    return f"order-{index}"


def _actor_fault(exc: BaseException) -> bool:
    if isinstance(exc, DomainError) or isinstance(getattr(exc, "cause", None), DomainError):
        return False
    return isinstance(exc, RayActorError | GetTimeoutError | ValueError)


def _domain(exc: BaseException) -> DomainError | None:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, DomainError):
        return cause
    return exc if isinstance(exc, DomainError) else None


class OrderShardClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.shards = settings.order_shards
        self._handles: dict[int, Any] = {}
        self._lanes: dict[int, Batcher[PlaceOrder, Placed]] = {}

    def shard_of_user(self, user_id: int) -> int:
        return shard_for(user_id, self.shards)

    def owner(self, stored_shard: int, user_id: int) -> int:
        """The shard that owns an existing order."""
        return stored_shard if 0 <= stored_shard < self.shards else self.shard_of_user(user_id)

    async def _handle(self, shard: int) -> Any:
        handle = self._handles.get(shard)
        if handle is None:
            handle = await asyncio.to_thread(
                ray.get_actor, shard_name(shard), namespace=self.settings.namespace
            )
            self._handles[shard] = handle
        return handle

    async def call(
        self,
        shard: int,
        method: str,
        *args: Any,
        _target: str | None = None,
        _retry_args: tuple[Any, ...] | None = None,
        **kw: Any,
    ) -> Any:
        """Call a shard method, retrying actor faults (see the module docstring).
        ``_target``: the status a transition moves to, for recognising a retried success;
        ``_retry_args``: the arguments for attempts after the first, if they differ."""
        deadline = time.monotonic() + ACTOR_RETRY_S
        delay = 0.05
        retried = False
        while True:
            try:
                handle = await self._handle(shard)
                call_args = _retry_args if retried and _retry_args is not None else args
                ref = getattr(handle, method).remote(*call_args, **kw)
                return await asyncio.wait_for(ref, CALL_TIMEOUT_S)
            except Exception as exc:
                domain = _domain(exc)
                if domain is not None:
                    if (
                        retried
                        and _target is not None
                        and isinstance(domain, InvalidTransition)
                        and domain.details.get("status") == _target
                    ):
                        return {"status": _target, "retried": True}
                    raise domain from None
                if not _actor_fault(exc):
                    raise
                self._handles.pop(shard, None)
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"order shard {shard} is unavailable") from exc
                retried = True
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)

    async def place(self, cmd: PlaceOrder) -> Placed:
        """Place an order. Concurrent placements for one shard travel in one
        ``place_many`` call; a retry after a shard fault makes the shard look each key up
        first (the first attempt may have been stored before the shard failed)."""
        shard = self.shard_of_user(cmd.user_id)
        lane = self._lanes.get(shard)
        if lane is None:

            async def send(cmds: list[PlaceOrder]) -> list[Placed | BaseException]:
                retry = ([dataclasses.replace(c, checked=False) for c in cmds],)
                results: list[Placed | BaseException] = await self.call(
                    shard, "place_many", cmds, _retry_args=retry
                )
                return results

            lane = self._lanes[shard] = Batcher(send, max_batch=256, max_inflight=2)
        return await lane.submit(cmd)

    async def cancel(self, shard: int, order_id: int, **kw: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            shard, "cancel", order_id, _target="cancelled", **kw
        )
        return result

    async def move(self, shard: int, order_id: int, to: str, **kw: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(shard, "move", order_id, to, _target=to, **kw)
        return result

    async def settle(self, shard: int, payment_id: str, **kw: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(shard, "settle", payment_id, **kw)
        return result

    async def check(self) -> dict[str, Any]:
        from actors import registry

        return await registry.check_all(self.settings, kinds=("order",))
