"""What an OrderShard does with returns (RMAs): every step of a return runs in the shard
that owns its order, under the order's lock, so one operation at a time touches an
order, its returns and its refunds (``raymall.refunds.money``).

Guarantees:

- **a request** is accepted only for the customer's own order, delivered or completed,
  within ``return_window_days`` of ``orders.delivered_ms`` (or of its completion when no
  delivery was recorded), for lines of that order, at most the units bought less those
  claimed by its other returns that are not rejected; under an ``Idempotency-Key`` a
  second request answers the first;
- **every move** is a compare-and-set with a history event and an outbox event
  (``raymall.returns.repo``); of two racing moves exactly one wins, the other answers 409
  with the current status;
- **receipt** (admin) in one transaction: the return moves to ``received``, each line's
  ``returned_quantity`` grows by a guarded UPDATE (never above what was bought), each
  line's refund is fixed as exactly what the returned units paid after their allocated
  discounts (``raymall.refunds.arithmetic.units_refund``: the next units' floor/remainder
  shares, so a line's returns sum exactly to what it paid), capped by what is left
  to refund on that line, and the refund is reserved under ``return:{rma}``. Then the
  units go back to stock through each SKU's inventory shard by key
  (``return:{rma}:{sku}``); the ``return.received`` event drives the same keyed restock
  again if that attempt fails (``raymall.orders.consumers``), so the units come back once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import OrderEvent, OrderItem
from raymall.domain import order_state as st
from raymall.errors import (
    IdempotencyMismatch,
    InvalidTransition,
    OrderNotReturnable,
    ReturnNotFound,
    ReturnQuantityExceeded,
    ReturnWindowClosed,
    ValidationFailed,
)
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.orders import repository as repo
from raymall.orders.ports import StockPort
from raymall.refunds import ledger
from raymall.refunds.arithmetic import units_refund
from raymall.returns import repo as rrepo
from raymall.returns import states as rs

if TYPE_CHECKING:
    from raymall.orders.workflow import OrderWorkflow

log = get_logger("returns")


async def restock_return(
    stock: StockPort, return_id: int, order_id: int, items: Sequence[dict[str, Any]]
) -> None:
    """Put a received return's units back on sale; idempotent by key."""
    for item in items:
        await stock.adjust(
            f"return:{return_id}:{item['sku_id']}",
            int(item["sku_id"]),
            int(item["quantity"]),
            f"return {return_id} of order {order_id}",
            None,
        )


def received_at(session: Session, order_id: int, delivered_ms: int | None) -> int | None:
    """When the customer received the order: its delivery, else its completion."""
    if delivered_ms is not None:
        return int(delivered_ms)
    done = session.scalar(
        select(func.max(OrderEvent.created_ms)).where(
            OrderEvent.order_id == order_id, OrderEvent.to_status == st.COMPLETED
        )
    )
    return None if done is None else int(done)


class ReturnDesk:
    """The shard's return operations (see the module docstring)."""

    def __init__(self, workflow: OrderWorkflow, *, window_days: int) -> None:
        self.wf = workflow
        self.window_days = window_days

    # ---- request ------------------------------------------------------------------------
    async def request(
        self,
        order_id: int,
        *,
        user_id: int,
        lines: Sequence[tuple[int, int]],
        reason: str,
        note: str = "",
        photos: Sequence[str] = (),
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Ask to return ``lines`` ((order item id, quantity)); answers the return with
        ``created`` (False: the key's earlier return)."""
        if reason not in rs.REASONS:
            raise ValidationFailed(f"reason must be one of {', '.join(rs.REASONS)}")
        wanted: dict[int, int] = {}
        for item_id, qty in lines:
            if qty <= 0:
                raise ValidationFailed("each quantity must be positive")
            wanted[int(item_id)] = wanted.get(int(item_id), 0) + int(qty)
        if not wanted:
            raise ValidationFailed("a return needs at least one line")
        async with self.wf._locked(order_id):

            def write(session: Session) -> dict[str, Any]:
                if idempotency_key is not None:
                    found = rrepo.by_key(session, user_id, idempotency_key)
                    if found is not None:
                        return self._replay(session, found.id, order_id, wanted)
                order = repo.get_user_order(session, user_id, order_id)
                if order.status not in st.RECEIVED:
                    raise OrderNotReturnable(
                        f"an order that is {order.status} takes no return",
                        details={"status": order.status},
                    )
                now = now_ms()
                since = received_at(session, order_id, order.delivered_ms)
                closes = rs.window_closes_ms(since if since is not None else now, self.window_days)
                if now > closes:
                    raise ReturnWindowClosed(
                        f"returns closed {self.window_days} days after delivery",
                        details={"closed_ms": closes},
                    )
                items = {int(i.id): i for i in repo.items_of(session, [order_id])[order_id]}
                claimed = rrepo.claimed_units(session, order_id)
                chosen = []
                for item_id, qty in sorted(wanted.items()):
                    item = items.get(item_id)
                    if item is None:
                        raise ValidationFailed(
                            f"order item {item_id} is not a line of order {order_id}",
                            details={"order_item_id": str(item_id)},
                        )
                    left = rs.returnable(int(item.quantity), claimed.get(item_id, 0))
                    if qty > left:
                        raise ReturnQuantityExceeded(
                            f"at most {left} units of line {item_id} may be returned",
                            details={
                                "order_item_id": str(item_id),
                                "bought": int(item.quantity),
                                "returnable": left,
                                "requested": qty,
                            },
                        )
                    chosen.append((item_id, int(item.sku_id), qty))
                return_id = self.wf.placement.ids.next_id()
                rrepo.insert(
                    session,
                    return_id=return_id,
                    order_id=order_id,
                    user_id=user_id,
                    lines=chosen,
                    reason=reason,
                    note=note,
                    photos=photos,
                    idempotency_key=idempotency_key,
                    now=now,
                )
                view = rrepo.full_view(session, return_id)
                assert view is not None
                return {**view, "created": True}

            try:
                return await self.wf._tx(write)
            except IntegrityError:  # the same key, stored by a request in flight elsewhere
                if idempotency_key is None:
                    raise
                return await self.wf._tx(
                    lambda s: self._replay(
                        s, _id_of(rrepo.by_key(s, user_id, idempotency_key)), order_id, wanted
                    )
                )

    def _replay(
        self, session: Session, return_id: int, order_id: int, wanted: dict[int, int]
    ) -> dict[str, Any]:
        view = rrepo.full_view(session, int(return_id))
        assert view is not None
        asked = {int(i["order_item_id"]): i["quantity"] for i in view["items"]}
        if view["order_id"] != str(order_id) or asked != wanted:
            raise IdempotencyMismatch(
                "this Idempotency-Key was used for a different return",
                details={"return_id": view["id"]},
            )
        return {**view, "created": False}

    # ---- moves --------------------------------------------------------------------------
    async def _order_of(self, return_id: int, user_id: int | None) -> int:
        def read(session: Session) -> int:
            ret = rrepo.get(session, return_id)
            if ret is None or (user_id is not None and int(ret.user_id) != user_id):
                raise ReturnNotFound(f"return {return_id} not found")
            return int(ret.order_id)

        return await self.wf._tx(read)

    async def move(
        self,
        return_id: int,
        to: str,
        *,
        role: str,
        actor: str,
        user_id: int | None = None,
        tracking: str | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """Approve, reject, add the return tracking number, or receive."""
        order_id = await self._order_of(return_id, user_id)
        async with self.wf._locked(order_id):
            if to == rs.RECEIVED:
                return await self._receive(return_id, order_id, role=role, actor=actor, note=note)

            def write(session: Session) -> dict[str, Any]:
                ret = rrepo.get(session, return_id)
                assert ret is not None
                rs.check_move(ret.status, to, role)
                values = {"return_tracking": tracking} if to == rs.SHIPPED_BACK else {}
                if not rrepo.move(session, ret, to, actor=actor, note=note, now=now_ms(), **values):
                    raise _lost(session, return_id, to)
                view = rrepo.full_view(session, return_id)
                assert view is not None
                return view

            return await self.wf._tx(write)

    async def _receive(
        self, return_id: int, order_id: int, *, role: str, actor: str, note: str
    ) -> dict[str, Any]:
        def write(session: Session) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            ret = rrepo.get(session, return_id)
            assert ret is not None
            rs.check_move(ret.status, rs.RECEIVED, role)
            order = repo.get_order(session, order_id)
            assert order is not None
            items = repo.items_of(session, [order_id])[order_id]
            by_id = {int(i.id): i for i in items}
            now = now_ms()
            refunds: dict[int, int] = {}
            restock: list[dict[str, Any]] = []
            for line in rrepo.items_of(session, [return_id])[return_id]:
                item = by_id[int(line.order_item_id)]
                qty = int(line.quantity)
                before = int(item.returned_quantity or 0)
                if not _add_returned(session, int(item.id), qty):
                    raise ReturnQuantityExceeded(
                        f"line {item.id} has fewer units left to take back",
                        details={"order_item_id": str(item.id), "returnable": 0},
                    )
                paid = ledger.line_paid(item)
                share = units_refund(paid, int(item.quantity), before, qty)
                left = paid - int(item.refunded_cents or 0)
                refunds[int(item.id)] = max(min(share, left), 0)
                restock.append({"sku_id": int(item.sku_id), "quantity": qty})
            total = sum(refunds.values())
            if not rrepo.move(
                session, ret, rs.RECEIVED, actor=actor, note=note, now=now, refund_cents=total
            ):
                raise _lost(session, return_id, rs.RECEIVED)
            rrepo.set_line_refunds(session, return_id, refunds)
            if total > 0:
                ledger.reserve(
                    session,
                    order,
                    items,
                    key=f"return:{return_id}",
                    amount_cents=total,
                    lines={k: v for k, v in refunds.items() if v},
                    reason="return",
                    return_id=return_id,
                    now=now,
                )
            else:  # the lines were refunded already: nothing more to pay back
                fresh = rrepo.get(session, return_id)
                assert fresh is not None
                rrepo.move(
                    session, fresh, rs.REFUNDED, actor="system", note="nothing left", now=now
                )
            view = rrepo.full_view(session, return_id)
            assert view is not None
            return view, restock

        view, restock = await self.wf._tx(write)
        try:
            await restock_return(self.wf.stock, return_id, order_id, restock)
        except Exception:  # the return.received event drives it again
            log.warning("restock of return %s deferred to the event", return_id, exc_info=True)
        return view

    async def refund(self, return_id: int) -> dict[str, Any]:
        """Ask again for a received return's refund (after a failed one); two at once make
        one refund, and a return whose refund is pending or done answers that refund."""
        order_id = await self._order_of(return_id, None)
        async with self.wf._locked(order_id):

            def write(session: Session) -> dict[str, Any]:
                ret = rrepo.get(session, return_id)
                assert ret is not None
                if ret.status != rs.RECEIVED:
                    raise InvalidTransition(
                        f"a return that is {ret.status} has no refund to ask for",
                        details={"status": ret.status, "to": rs.REFUNDED},
                    )
                order = repo.get_order(session, order_id)
                assert order is not None
                items = repo.items_of(session, [order_id])[order_id]
                lines = {
                    int(i.order_item_id): int(i.refund_cents)
                    for i in rrepo.items_of(session, [return_id])[return_id]
                    if i.refund_cents
                }
                refund, created = ledger.reserve(
                    session,
                    order,
                    items,
                    key=f"return:{return_id}",
                    amount_cents=int(ret.refund_cents),
                    lines=lines,
                    reason="return",
                    return_id=return_id,
                    now=now_ms(),
                )
                return {**ledger.view(refund), "created": created}

            return await self.wf._tx(write)


def _add_returned(session: Session, item_id: int, qty: int) -> bool:
    result = session.execute(
        update(OrderItem)
        .where(OrderItem.id == item_id, OrderItem.returned_quantity + qty <= OrderItem.quantity)
        .values(returned_quantity=OrderItem.returned_quantity + qty)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _lost(session: Session, return_id: int, to: str) -> InvalidTransition:
    current = rrepo.get(session, return_id)
    status = current.status if current is not None else "unknown"
    return InvalidTransition(f"the return is {status}", details={"status": status, "to": to})


def _id_of(ret: Any) -> int:
    if ret is None:
        raise ReturnNotFound("the return stored under this key is gone")
    return int(ret.id)
