"""OrderShardClient: how replicas reach the OrderShard that owns a user's orders.

Guarantees:

- routing by ``shard_for(user_id, order_shards)`` for new orders and by the stored
  ``orders.shard`` afterwards, so one order always has one owner;
- concurrent placements for one shard are coalesced into one actor call (``place_many``);
- actor faults (a shard restarting) are retried for up to ``ACTOR_RETRY_S`` (the one
  actor-call policy, ``actors.caller.ActorCaller``). Placement is safe to retry because it
  always carries an idempotency key; a retried transition that finds the order already in
  the target state answers that state instead of 409;
- after that, ``Unavailable`` (503, retriable).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from actors.caller import ActorCaller
from raymall.batching import Batcher
from raymall.errors import DomainError, InvalidTransition
from raymall.hashing import shard_for
from raymall.orders.ports import Placed, PlaceOrder
from raymall.settings import Settings

ACTOR_RETRY_S = 20.0
CALL_TIMEOUT_S = 60.0


def shard_name(index: int) -> str:
    return f"order-{index}"


def _reached(target: str) -> Callable[[DomainError], dict[str, Any] | None]:
    """A retried transition's answer when its first attempt took effect: the order is
    already in ``target``."""

    def replayed(error: DomainError) -> dict[str, Any] | None:
        if isinstance(error, InvalidTransition) and error.details.get("status") == target:
            return {"status": target, "retried": True}
        return None

    return replayed


class OrderShardClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.shards = settings.order_shards
        self.caller = ActorCaller(
            settings.namespace, shard_name, timeout_s=CALL_TIMEOUT_S, retry_s=ACTOR_RETRY_S
        )
        self._lanes: dict[int, Batcher[PlaceOrder, Placed]] = {}

    def shard_of_user(self, user_id: int) -> int:
        return shard_for(user_id, self.shards)

    def owner(self, stored_shard: int, user_id: int) -> int:
        """The shard that owns an existing order."""
        return stored_shard if 0 <= stored_shard < self.shards else self.shard_of_user(user_id)

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
        return await self.caller.call(
            shard,
            method,
            *args,
            retry_args=_retry_args,
            replayed=None if _target is None else _reached(_target),
            **kw,
        )

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
