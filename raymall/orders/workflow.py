"""What an OrderShard does: place orders and move them, with their stock effects.

``OrderWorkflow`` is plain async Python over a session factory and a stock port (the
inventory client); ``actors.order_shard`` wraps it in an actor with a deadline sweeper.
Placement (idempotent, never leaking stock) is ``raymall.orders.placement``. Guarantees
of the transitions:

- **one operation at a time per order** in its shard;
- **stock decides pay against cancel**: paying confirms the reservation first, cancelling
  releases it first. The inventory ledger moves a reservation out of ``reserved`` exactly
  once, so of a racing payment and timeout exactly one gets the stock, and the order's
  compare-and-set that follows always agrees with it. A crash between the two steps is
  healed by the next sweep or callback retry (release and confirm are idempotent);
- refunds return the sold units to stock under ``refund:{order}:{sku}`` keys, once, also
  when driven again by the ``order.refunded`` event;
- money goes back through the payment provider: a full refund (paid -> refunded) and the
  cancel of a paid order (paid -> cancelled, its coupons back) store a pending refund of
  all that is left, with its money reserved, in the transaction of their compare-and-set
  (``raymall.refunds``); the units of a cancelled paid order go back to stock under the
  same ``refund:{order}:{sku}`` keys (again from the ``order.cancelled`` event if needed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from models import Order, OrderItem
from raymall import metrics
from raymall.db import transaction
from raymall.domain import order_state as st
from raymall.errors import (
    AmountMismatch,
    Forbidden,
    InvalidTransition,
    NotFound,
)
from raymall.flash.returns import return_flash_units
from raymall.ids import Snowflake, now_ms
from raymall.logs import get_logger
from raymall.orders import payments as pay
from raymall.orders import repository as repo
from raymall.orders.placement import Placement
from raymall.orders.ports import Placed, PlaceOrder, StockPort
from raymall.orders.sweeps import for_each_overdue
from raymall.refunds.money import refund_rest
from raymall.shipping.fulfilment import Fulfilment
from raymall.shipping.tracking import MANUAL_CARRIER

log = get_logger("orders")
T = TypeVar("T")


async def restock_refund(stock: StockPort, order_id: int, items: Sequence[dict[str, int]]) -> None:
    """Return a refunded order's units to stock; idempotent by key."""
    for item in items:
        await stock.adjust(
            f"refund:{order_id}:{item['sku_id']}",
            int(item["sku_id"]),
            int(item["quantity"]),
            f"refund of order {order_id}",
            None,
        )


class OrderWorkflow:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        stock: StockPort,
        *,
        shard: int,
        timeout_s: float,
        grace_s: float,
        worker_id: int,
        auto_complete_days: float = 7.0,
    ) -> None:
        self.sessions = sessions
        self.stock = stock
        self.shard = shard
        self.placement = Placement(
            sessions,
            stock,
            shard=shard,
            timeout_s=timeout_s,
            grace_s=grace_s,
            ids=Snowflake(worker_id),
        )
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}
        # shipments, carrier tracking, delivery and automatic completion
        self.fulfilment = Fulfilment(
            self, self.placement.ids, auto_complete_days=auto_complete_days
        )

    # ---- plumbing -------------------------------------------------------------------
    async def _tx(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with transaction(self.sessions) as session:
                return fn(session)

        return await asyncio.to_thread(run)

    @asynccontextmanager
    async def _locked(self, order_id: int) -> AsyncIterator[None]:
        """One operation at a time per order in this shard."""
        lock, users = self._locks.get(order_id, (asyncio.Lock(), 0))
        self._locks[order_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[order_id]
            if users <= 1:
                del self._locks[order_id]
            else:
                self._locks[order_id] = (lock, users - 1)

    def _load(self, order_id: int) -> Callable[[Session], tuple[Order, list[OrderItem]]]:
        def load(session: Session) -> tuple[Order, list[OrderItem]]:
            order = repo.get_order(session, order_id)
            if order is None:
                raise NotFound(f"order {order_id} not found")
            return order, repo.items_of(session, [order_id])[order_id]

        return load

    # ---- placement ------------------------------------------------------------------
    async def place(self, cmd: PlaceOrder) -> Placed:
        return await self.placement.place(cmd)

    # ---- cancellation ---------------------------------------------------------------
    async def cancel(
        self,
        order_id: int,
        *,
        reason: str,
        actor: str,
        role: str,
        user_id: int | None = None,
    ) -> dict[str, Any]:
        async with self._locked(order_id):
            order, items = await self._tx(self._load(order_id))
            if user_id is not None and int(order.user_id) != user_id:
                raise NotFound(f"order {order_id} not found")
            st.check_move(order.status, st.CANCELLED, role)
            if order.status == st.PAID:
                view = await self._commit_move(
                    order, items, st.CANCELLED, reason=reason, actor=actor,
                    also=refund_rest(order_id, f"cancel:{order_id}", reason="cancel"),
                )  # fmt: skip
            else:
                return await self._cancel_locked(order, items, reason=reason, actor=actor)
        await self._restock_refunded(order_id, items)
        return view

    async def _cancel_locked(
        self, order: Order, items: list[OrderItem], *, reason: str, actor: str
    ) -> dict[str, Any]:
        sku_ids = [int(i.sku_id) for i in items]
        try:
            if order.kind == "flash":  # the units go back to the sale while it runs
                await return_flash_units(self.stock, order, sku_ids)
            else:
                await self.stock.release(order.reservation_key, sku_ids)
        except InvalidTransition as exc:
            if exc.details.get("state") != "confirmed":
                raise
            # A payment confirmed the stock but did not get to mark the order: finish it.
            await self._mark_paid(
                order, repo.stock_items(items), reason="payment_reconciled", actor="system"
            )
            raise InvalidTransition(
                "the order has been paid", details={"status": st.PAID, "to": st.CANCELLED}
            ) from None
        return await self._commit_move(order, items, st.CANCELLED, reason=reason, actor=actor)

    async def _commit_move(
        self,
        order: Order,
        items: list[OrderItem],
        to: str,
        *,
        reason: str,
        actor: str,
        also: Callable[[Session], None] | None = None,
    ) -> dict[str, Any]:
        frm = order.status
        now = now_ms()

        def write(session: Session) -> tuple[bool, dict[str, Any]]:
            won = repo.transition(
                session, order, to, reason=reason, actor=actor, now=now,
                items=repo.stock_items(items),
            )  # fmt: skip
            if won and also is not None:
                also(session)
            current = repo.get_order(session, int(order.id))
            assert current is not None
            return won, repo.order_view(current, items)

        won, view = await self._tx(write)
        if not won:
            raise InvalidTransition(
                f"the order is {view['status']}", details={"status": view["status"], "to": to}
            )
        metrics.ORDER_TRANSITIONS.labels(frm, to, reason).inc()
        return view

    # ---- payment --------------------------------------------------------------------
    async def settle(
        self, payment_id: str, *, succeeded: bool, amount_cents: int, order_id: int | None = None
    ) -> dict:
        """Apply a verified payment callback. Duplicates change nothing. ``order_id``: the
        payment's order, when the caller has read it (else it is looked up first)."""
        if order_id is None:
            found = await self._tx(lambda s: pay.payment_owner(s, payment_id))
            if found is None:
                raise NotFound(f"payment {payment_id} not found")
            order_id = found[0]
        async with self._locked(order_id):
            now = now_ms()

            def check(session: Session) -> tuple[pay.PaymentTarget, str, bool, list[dict]]:
                """Count the callback, and settle it at once when the order cannot take the
                money; answer the payment and its order, the payment's status, whether this
                callback found it settled already, and the order's lines (when it is still
                to be paid)."""
                target = pay.payment_target(session, payment_id)
                if target is None or target.order.id != order_id:
                    raise NotFound(f"payment {payment_id} not found")
                order = target.order
                if amount_cents != target.amount_cents or amount_cents != order.total_cents:
                    raise AmountMismatch(
                        "the callback amount does not match the payment",
                        details={"expected_cents": target.amount_cents},
                    )
                pay.count_callback(session, payment_id, now)
                if target.status != pay.PENDING:
                    return target, target.status, True, []
                if not succeeded:
                    pay.settle(session, payment_id, pay.FAILED, now)
                    return target, pay.FAILED, False, []
                if order.status != st.PENDING_PAYMENT:  # the money goes back at once
                    pay.settle(session, payment_id, pay.REFUNDED, now)
                    return target, pay.REFUNDED, False, []
                return target, pay.PENDING, False, repo.stock_lines(session, order_id)

            target, status, duplicate, lines = await self._tx(check)
            order = target.order
            if status != pay.PENDING:
                return _settled(payment_id, status, order.status, duplicate=duplicate)
            try:
                await self.stock.confirm(order.reservation_key, [ln["sku_id"] for ln in lines])
            except InvalidTransition:
                # The stock went back (the deadline won): the money goes back too.
                await self._tx(lambda s: pay.settle(s, payment_id, pay.REFUNDED, now_ms()))
                loaded, items = await self._tx(self._load(order_id))
                view = await self._cancel_locked(
                    loaded, items, reason="reservation_expired", actor="system"
                )
                return _settled(payment_id, pay.REFUNDED, view["status"])
            moved = await self._mark_paid(
                order,
                lines,
                reason="payment",
                actor=f"payment:{payment_id}",
                payment=payment_id,
                holds_coupons=target.holds_coupons,
            )
            return _settled(payment_id, pay.SUCCEEDED, moved)

    async def _mark_paid(
        self,
        order: Order | repo.OrderHead,
        lines: list[dict[str, int]],
        *,
        reason: str,
        actor: str,
        payment: str | None = None,
        holds_coupons: bool = True,
    ) -> str:
        """pending_payment -> paid with the payment settled in the same transaction (the
        one named, or else the pending one that confirmed the stock); answers the status,
        or raises ``InvalidTransition`` with the order's status if another move won."""
        frm = order.status
        now = now_ms()

        def write(session: Session) -> str | None:
            if not repo.transition(
                session,
                order,
                st.PAID,
                reason=reason,
                actor=actor,
                now=now,
                items=lines,
                holds_coupons=holds_coupons,
            ):
                return repo.status_of(session, int(order.id)) or frm
            if payment is not None:
                pay.settle(session, payment, pay.SUCCEEDED, now)
            else:  # reconciliation: the payment that confirmed the stock
                p = pay.open_payment(session, int(order.id))
                if p is not None and p.outcome == "succeed":
                    pay.settle(session, p.id, pay.SUCCEEDED, now)
            return None

        lost = await self._tx(write)
        if lost is not None:
            raise InvalidTransition(f"the order is {lost}", details={"status": lost, "to": st.PAID})
        metrics.ORDER_TRANSITIONS.labels(frm, st.PAID, reason).inc()
        return st.PAID

    # ---- fulfilment and refunds -----------------------------------------------------
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
        """Ship, complete or refund (pay and cancel have their own paths). Shipping here
        ships every unit that remains in one shipment without a carrier (``manual``)."""
        if to in (st.PAID, st.CANCELLED, st.PENDING_PAYMENT):
            raise InvalidTransition(f"use the {to} path", details={"to": to})
        if to == st.SHIPPED:
            if user_id is not None:
                raise Forbidden(f"{role} may not ship an order")
            answer = await self.fulfilment.ship(
                order_id,
                carrier=MANUAL_CARRIER,
                tracking_number=f"order-{order_id}",
                lines=None,
                actor=actor,
                role=role,
            )
            return dict(answer["order"])
        async with self._locked(order_id):
            order, items = await self._tx(self._load(order_id))
            if user_id is not None and int(order.user_id) != user_id:
                raise NotFound(f"order {order_id} not found")
            st.check_move(order.status, to, role)
            also = None
            if to == st.REFUNDED:  # all that is left goes back through the provider
                also = refund_rest(order_id, f"refund:{order_id}", reason="refund")
            view = await self._commit_move(order, items, to, reason=reason, actor=actor, also=also)
        if to == st.REFUNDED:
            await self._restock_refunded(order_id, items)
        return view

    async def _restock_refunded(self, order_id: int, items: list[OrderItem]) -> None:
        try:
            await restock_refund(self.stock, order_id, repo.stock_items(items))
        except Exception:  # the order.refunded / order.cancelled event drives it again
            log.warning("refund restock of %s deferred to the event", order_id, exc_info=True)

    # ---- deadlines ------------------------------------------------------------------
    async def sweep(self, limit: int = 500, concurrency: int = 64) -> int:
        """Cancel this shard's overdue unpaid orders; answer how many were cancelled."""
        ids = await self._tx(lambda s: repo.overdue(s, self.shard, now_ms(), limit))
        return await for_each_overdue(ids, self._time_out, concurrency, "timeout")

    async def _time_out(self, order_id: int) -> bool:
        async with self._locked(order_id):
            order, items = await self._tx(self._load(order_id))
            if order.status != st.PENDING_PAYMENT or (order.expires_ms or 0) > now_ms():
                return False
            await self._cancel_locked(order, items, reason="timeout", actor="system")
            return True


def _settled(payment_id: str, payment: str, order: str, duplicate: bool = False) -> dict:
    return {"payment_id": payment_id, "payment": payment, "order": order, "duplicate": duplicate}
