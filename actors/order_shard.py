"""OrderShard: the owner of the orders of the users that hash to it.

A thin actor over ``raymall.orders.workflow.OrderWorkflow`` (placement, transitions,
payment settlement, refunds) that adds the deadline sweeper. Guarantees:

- **one owner per order**: ``shard_for(user_id, order_shards)`` picks the shard, which is
  stored in ``orders.shard``; every transition of the order runs here, one at a time per
  order, and each is a compare-and-set in the database (DESIGN invariant 6);
- **deadlines live in the database** (``orders.expires_ms``): every
  ``order_sweep_interval_s`` the shard cancels its overdue unpaid orders and releases
  their stock, and completes its delivered orders past their automatic completion
  (``raymall.shipping.fulfilment``). A restarted shard does the same at once, so orders
  that fell due while it was down are handled and the others keep their deadlines;
- order ids are snowflakes whose worker id is derived from the shard index
  (``ORDER_WORKER_BASE + index``), unique among live shards.
"""

from __future__ import annotations

import asyncio
from typing import Any

from actors.inventory_client import InventoryClient
from actors.observe import count_restart
from raymall import logs
from raymall.db import make_engine, session_factory
from raymall.errors import DomainError, Unavailable
from raymall.ids import MAX_WORKER, now_ms
from raymall.logs import get_logger
from raymall.orders.ports import Placed, PlaceOrder
from raymall.orders.workflow import OrderWorkflow
from raymall.refunds.money import MoneyBack
from raymall.returns.desk import ReturnDesk
from raymall.settings import Settings

log = get_logger("orders.shard")
ORDER_WORKER_BASE = 3072  # snowflake worker ids 3072..4095 belong to order shards
SWEEP_LIMIT = 500  # overdue orders cancelled per round


def worker_id(index: int) -> int:
    return min(MAX_WORKER, ORDER_WORKER_BASE + index % (MAX_WORKER + 1 - ORDER_WORKER_BASE))


class OrderShard:
    """Owner of the orders of users with ``shard_for(user_id, order_shards) == index``."""

    def __init__(self, settings: Settings, index: int) -> None:
        logs.configure(settings.log_level)
        count_restart(f"order-{index}")
        self.settings = settings
        self.index = index
        self.engine = make_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
        self.inventory = InventoryClient(settings)
        self.workflow = OrderWorkflow(
            session_factory(self.engine),
            self.inventory,
            shard=index,
            timeout_s=settings.order_timeout_s,
            grace_s=settings.order_reservation_grace_s,
            worker_id=worker_id(index),
            auto_complete_days=settings.auto_complete_days,
        )
        # refunds and returns run here too: one operation at a time per order
        self.money = MoneyBack(self.workflow)
        self.returns = ReturnDesk(self.workflow, window_days=settings.return_window_days)
        self._started_ms = now_ms()
        self._sweeps = 0
        self._timed_out = 0
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def _sweep_loop(self) -> None:
        while True:
            cancelled = 0
            try:
                cancelled = await self.workflow.sweep(limit=SWEEP_LIMIT)
                self._sweeps += 1
                self._timed_out += cancelled
                if cancelled:
                    log.info("shard %s cancelled %s overdue orders", self.index, cancelled)
            except Exception:  # the sweeper must outlive a database or inventory outage
                log.warning("shard %s sweep failed", self.index, exc_info=True)
            try:
                completed = await self.workflow.fulfilment.complete_overdue(limit=SWEEP_LIMIT)
                if completed:
                    log.info("shard %s completed %s delivered orders", self.index, completed)
            except Exception:
                log.warning("shard %s auto-completion failed", self.index, exc_info=True)
            if cancelled < SWEEP_LIMIT:  # a full round means a backlog: go on at once
                await asyncio.sleep(self.settings.order_sweep_interval_s)

    # ---- operations (called by replicas through actors.order_client) -------------------
    async def place(self, cmd: PlaceOrder) -> Placed:
        return await self.workflow.place(cmd)

    async def place_many(self, cmds: list[PlaceOrder]) -> list[Placed | DomainError]:
        """Place a replica's coalesced orders; one result or domain error per command."""
        results = await asyncio.gather(
            *(self.workflow.place(c) for c in cmds), return_exceptions=True
        )
        out: list[Placed | DomainError] = []
        for result in results:
            if isinstance(result, Placed | DomainError):
                out.append(result)
            elif isinstance(result, Exception):
                log.warning("placement failed: %r", result)
                out.append(Unavailable(f"the order could not be placed ({type(result).__name__})"))
            else:
                raise result
        return out

    async def cancel(
        self, order_id: int, *, reason: str, actor: str, role: str, user_id: int | None = None
    ) -> dict[str, Any]:
        return await self.workflow.cancel(
            order_id, reason=reason, actor=actor, role=role, user_id=user_id
        )

    async def move(
        self,
        order_id: int,
        to: str,
        *,
        reason: str,
        actor: str,
        role: str,
        user_id: int | None = None,
    ) -> dict[str, Any]:
        return await self.workflow.move(
            order_id, to, reason=reason, actor=actor, role=role, user_id=user_id
        )

    async def settle(
        self, payment_id: str, *, succeeded: bool, amount_cents: int, order_id: int | None = None
    ) -> dict:
        return await self.workflow.settle(
            payment_id, succeeded=succeeded, amount_cents=amount_cents, order_id=order_id
        )

    async def sweep_now(self) -> int:
        """Run one deadline sweep at once (operators and tests)."""
        return await self.workflow.sweep()

    # ---- fulfilment (raymall.shipping.fulfilment) -----------------------------------------
    async def ship(
        self,
        order_id: int,
        *,
        carrier: str,
        tracking_number: str,
        lines: list[tuple[int, int]] | None,
        actor: str,
    ) -> dict[str, Any]:
        return await self.workflow.fulfilment.ship(
            order_id, carrier=carrier, tracking_number=tracking_number, lines=lines, actor=actor
        )

    async def track(self, order_id: int, shipment_id: int, **event: Any) -> dict[str, Any]:
        return await self.workflow.fulfilment.track(order_id, shipment_id, **event)

    async def complete_now(self) -> int:
        """Complete overdue delivered orders at once (operators and tests)."""
        return await self.workflow.fulfilment.complete_overdue()

    # ---- money back and returns (raymall.refunds.money, raymall.returns.desk) -----------
    async def refund(self, order_id: int, **kw: Any) -> dict[str, Any]:
        return await self.money.refund(order_id, **kw)

    async def settle_refund(self, refund_id: str, **kw: Any) -> dict[str, Any]:
        return await self.money.settle(refund_id, **kw)

    async def retry_refund(self, refund_id: str, **kw: Any) -> dict[str, Any]:
        return await self.money.retry(refund_id, **kw)

    async def request_return(self, order_id: int, **kw: Any) -> dict[str, Any]:
        return await self.returns.request(order_id, **kw)

    async def move_return(self, return_id: int, to: str, **kw: Any) -> dict[str, Any]:
        return await self.returns.move(return_id, to, **kw)

    async def refund_return(self, return_id: int) -> dict[str, Any]:
        return await self.returns.refund(return_id)

    # ---- lifecycle ----------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        return {
            "shard": self.index,
            "started_ms": self._started_ms,
            "sweeps": self._sweeps,
            "timed_out": self._timed_out,
        }

    async def check_alive(self) -> dict[str, Any]:
        return {"ok": True, "shard": self.index, "started_ms": self._started_ms}
