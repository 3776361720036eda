"""What shipping needs of the world outside ``raymall/``, as Protocols it owns.

- ``FulfilmentShards``: the OrderShards (``actors.order_client.OrderShardClient``): the
  owning shard of an order, and a call of its ``ship`` / ``track`` operations;
- ``CarrierGateway``: the carrier a shipment is handed to for tracking (the simulated
  carrier deployment, ``deployments.carrier``).
"""

from __future__ import annotations

from typing import Any, Protocol


class FulfilmentShards(Protocol):
    def owner(self, stored_shard: int, user_id: int) -> int: ...
    async def call(self, shard: int, method: str, *args: Any, **kw: Any) -> Any: ...


class CarrierGateway(Protocol):
    """Takes a new shipment (``shipment_id``, ``order_id``, ``tracking_number``); its
    tracking events arrive later by the signed callback."""

    async def track(self, shipment: dict[str, Any]) -> None: ...
