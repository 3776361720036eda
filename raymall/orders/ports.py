"""What orders need of the world outside ``raymall/``, as Protocols that orders own.

- ``OrderShards``: the OrderShard actors that own order state (``actors.order_client``
  implements it for a Serve replica): placement by the user's shard, transitions and
  payment settlement by the order's owner;
- ``StockPort``: the inventory owner (``actors.inventory_client.InventoryClient``):
  reserve, release and confirm an order's stock, adjust it for refunds;
- ``PaymentGateway``: the payment provider a payment is handed to;
- ``OrderSerial``: what the shard's after-sales parts (``raymall.shipping.fulfilment``,
  ``raymall.refunds.money``) use of ``raymall.orders.workflow.OrderWorkflow``: one
  operation at a time per order, transactions off the event loop, an order's load and a
  compare-and-set move.

``PlaceOrder`` and ``Placed`` are what a replica sends an order shard and gets back; they
travel through Ray, so they are plain picklable values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from raymall.domain.pricing import PricedLine

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from models import Order, OrderItem

T = TypeVar("T")

AUTO_KEY_PREFIX = "auto:"  # keys the replica makes up when the client sent none


@dataclass(frozen=True)
class PlaceOrder:
    """A priced, validated order request (built by the replica; picklable)."""

    user_id: int
    idempotency_key: str
    request_hash: str
    lines: tuple[PricedLine, ...]
    currency: str
    address: dict[str, Any]
    # the replica found no order under the key just before (or made the key up), so the
    # lookup before reserving is skipped; a retry after a shard fault sends False
    checked: bool = False
    # promotions and coupons, priced by the replica (raymall.coupons.pricing): the
    # discount allocated to each line (sku id -> cents) and the coupons the order locks
    line_discounts: tuple[tuple[int, int], ...] = ()
    coupon_ids: tuple[int, ...] = ()
    # the shipping method chosen and its fee, priced by the replica (raymall.shipping.fees)
    shipping_method_id: int | None = None
    shipping_cents: int = 0


@dataclass(frozen=True)
class Placed:
    order: dict[str, Any]
    created: bool


class StockPort(Protocol):
    async def reserve(self, key: str, items: dict[int, int], ttl_s: float | None) -> None: ...
    async def release(self, key: str, sku_ids: Sequence[int]) -> None: ...
    async def confirm(self, key: str, sku_ids: Sequence[int]) -> None: ...
    async def adjust(
        self, key: str, sku_id: int, delta: int, reason: str, actor_id: int | None = None
    ) -> None: ...


class OrderShards(Protocol):
    """The order shards as a replica reaches them. Transitions take the owning shard
    (``owner``) and keyword details (reason, actor, role, user_id); a transition retried
    after a shard fault that finds the order already moved answers ``{"status", "retried"}``.
    Failures are domain errors (``Unavailable`` once the owner stays unreachable)."""

    def owner(self, stored_shard: int, user_id: int) -> int: ...
    async def place(self, cmd: PlaceOrder) -> Placed: ...
    async def cancel(self, shard: int, order_id: int, **kw: Any) -> dict[str, Any]: ...
    async def move(self, shard: int, order_id: int, to: str, **kw: Any) -> dict[str, Any]: ...
    async def settle(self, shard: int, payment_id: str, **kw: Any) -> dict[str, Any]: ...
    async def call(
        self, shard: int, method: str, *args: Any, _target: str | None = None, **kw: Any
    ) -> Any:
        """Any other shard operation (refunds, returns: ``actors.order_shard``), retried
        like the others; ``_target``: the status a transition moves to."""


class PaymentGateway(Protocol):
    """Takes a pending payment (``payment_id``, ``order_id``, ``amount_cents``,
    ``outcome``); the result arrives later by the signed callback."""

    async def charge(self, charge: dict[str, Any]) -> None: ...


class OrderSerial(Protocol):
    """The order shard's serialized access to its orders (``OrderWorkflow``)."""

    shard: int

    def _locked(self, order_id: int) -> AbstractAsyncContextManager[None]: ...

    async def _tx(self, fn: Callable[[Session], T]) -> T: ...

    def _load(self, order_id: int) -> Callable[[Session], tuple[Order, list[OrderItem]]]: ...

    async def _commit_move(
        self,
        order: Order,
        items: list[OrderItem],
        to: str,
        *,
        reason: str,
        actor: str,
        also: Callable[[Session], None] | None = None,
    ) -> dict[str, Any]: ...
