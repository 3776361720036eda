"""Refunds in the database: plain functions over a ``Session`` (the order shard runs them
in its transactions, one operation at a time per order).

A refund moves ``pending -> succeeded | failed`` exactly once, by compare-and-set. The
money it asks for is **reserved when it is created**, in the same transaction, by guarded
updates that can only succeed while the bound holds:

- ``payments.refunded_cents + a <= payments.amount_cents`` (the payment), and
- ``order_items.refunded_cents + c <= line_total_cents - discount_cents`` (each line it
  takes money from; the rest of the amount is shipping, at most the shipping left).

So ``payments.refunded_cents`` and ``order_items.refunded_cents`` count pending **and**
succeeded refunds: two refunds in flight can never together exceed what was paid, even
before either is settled. A failed refund releases exactly what it reserved (its
``lines``) and gives its key up (``<key>~<id>``) so the same thing can be refunded again;
a succeeded one adds its amount to ``orders.refunded_cents`` (which sums succeeded
refunds only). Every new refund and every settlement writes its outbox event
(``refund.requested``, ``refund.succeeded``, ``refund.failed``) in the same transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import Order, OrderItem, Payment, Refund
from raymall.errors import (
    IdempotencyMismatch,
    OrderNotRefundable,
    RefundExceedsRemaining,
    ValidationFailed,
)
from raymall.orders import payments as pay
from raymall.orders import rows
from raymall.refunds.arithmetic import spread

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
OUTCOMES = ("succeed", "fail")
TOPICS = {PENDING: "refund.requested", SUCCEEDED: "refund.succeeded", FAILED: "refund.failed"}


def new_refund_id() -> str:
    return "rf_" + secrets.token_hex(12)


def line_paid(item: OrderItem) -> int:
    """What a line paid: its total less its allocated discount."""
    return int(item.line_total_cents) - int(item.discount_cents or 0)


def paid_payment(session: Session, order_id: int) -> Payment | None:
    """The order's succeeded payment (the one refunds go back on)."""
    return session.scalar(
        select(Payment)
        .where(Payment.order_id == order_id, Payment.status == pay.SUCCEEDED)
        .order_by(Payment.created_ms)
        .limit(1)
    )


def get(session: Session, refund_id: str) -> Refund | None:
    return session.get(Refund, refund_id, populate_existing=True)


def by_key(session: Session, key: str) -> Refund | None:
    return session.scalar(select(Refund).where(Refund.key == key))


def of_order(session: Session, order_id: int) -> list[Refund]:
    return list(
        session.scalars(
            select(Refund).where(Refund.order_id == order_id).order_by(Refund.created_ms)
        )
    )


def left_to_refund(session: Session, order: Order, items: Sequence[OrderItem]) -> dict[str, Any]:
    """What may still be refunded: in all, per line and on shipping (cents)."""
    payment = paid_payment(session, int(order.id))
    if payment is None:
        return {"payment_id": None, "left_cents": 0, "lines": {}, "shipping_cents": 0}
    lines = {int(i.id): line_paid(i) - int(i.refunded_cents or 0) for i in items}
    on_lines = sum(int(i.refunded_cents or 0) for i in items)
    shipping_left = int(order.shipping_cents or 0) - (int(payment.refunded_cents) - on_lines)
    return {
        "payment_id": payment.id,
        "left_cents": int(payment.amount_cents) - int(payment.refunded_cents),
        "lines": lines,
        "shipping_cents": max(shipping_left, 0),
    }


def reserve(
    session: Session,
    order: Order,
    items: Sequence[OrderItem],
    *,
    key: str,
    amount_cents: int | None,
    lines: Mapping[int, int] | None = None,
    reason: str,
    outcome: str = "succeed",
    return_id: int | None = None,
    now: int,
) -> tuple[Refund, bool]:
    """Create a pending refund under ``key`` with its money reserved (see the module
    docstring); answer (refund, created). ``amount_cents=None``: all that is left.
    ``lines``: the cents taken from each line (order item id); without them the amount is
    spread over the lines by what each has left, the rest going to shipping. A refund
    already stored under ``key`` is the answer if it asks for the same; else
    ``IdempotencyMismatch``. Raises ``RefundExceedsRemaining`` (nothing is written) when a
    bound would be broken."""
    existing = by_key(session, key)
    if existing is not None:
        same_amount = amount_cents is None or int(existing.amount_cents) == amount_cents
        same_lines = lines is None or _lines(existing) == {int(k): v for k, v in lines.items()}
        if not (same_amount and same_lines):
            raise IdempotencyMismatch(
                "this key was used for a different refund", details={"refund_id": existing.id}
            )
        return existing, False
    left = left_to_refund(session, order, items)
    if left["payment_id"] is None:
        raise OrderNotRefundable(
            f"order {order.id} has no payment to refund", details={"status": order.status}
        )
    amount = left["left_cents"] if amount_cents is None else amount_cents
    if amount <= 0:
        raise RefundExceedsRemaining("nothing is left to refund", details={"left_cents": 0})
    if amount > left["left_cents"]:
        raise RefundExceedsRemaining(
            f"at most {left['left_cents']} cents are left to refund",
            details={"left_cents": left["left_cents"]},
        )
    if lines is None:
        alloc = spread(amount, left["lines"])
        shipping = alloc.pop(0, 0)
    else:
        alloc = {int(k): int(v) for k, v in lines.items() if v}
        for item_id, cents in alloc.items():
            if item_id not in left["lines"]:
                raise ValidationFailed(f"order item {item_id} is not a line of the order")
            if cents < 0 or cents > left["lines"][item_id]:
                raise RefundExceedsRemaining(
                    f"at most {left['lines'][item_id]} cents are left on line {item_id}",
                    details={"order_item_id": str(item_id), "left_cents": left["lines"][item_id]},
                )
        shipping = amount - sum(alloc.values())
        if shipping < 0:
            raise ValidationFailed("the lines' amounts add up to more than the refund")
    if shipping > left["shipping_cents"]:
        raise RefundExceedsRemaining(
            f"at most {left['shipping_cents']} cents of shipping are left to refund",
            details={"left_cents": left["shipping_cents"], "part": "shipping"},
        )
    payment_id = str(left["payment_id"])
    _guarded_add(session, payment_id, int(order.id), amount, alloc)
    refund = Refund(
        id=new_refund_id(),
        payment_id=payment_id,
        order_id=int(order.id),
        return_id=return_id,
        key=key,
        amount_cents=amount,
        status=PENDING,
        reason=reason[:32],
        lines={str(k): v for k, v in sorted(alloc.items())},
        outcome=outcome if outcome in OUTCOMES else "succeed",
        callbacks=0,
        created_ms=now,
        updated_ms=now,
    )
    session.add(refund)
    session.flush()
    _event(session, refund, int(order.user_id), now)
    return refund, True


def _lines(refund: Refund) -> dict[int, int]:
    return {int(k): int(v) for k, v in (refund.lines or {}).items()}


def _guarded_add(
    session: Session, payment_id: str, order_id: int, amount: int, alloc: Mapping[int, int]
) -> None:
    """Reserve ``amount`` on the payment and ``alloc`` on the lines, each by a guarded
    UPDATE; raise (the caller's transaction rolls back) if any bound would break."""
    result = session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.status == pay.SUCCEEDED,
            Payment.refunded_cents + amount <= Payment.amount_cents,
        )
        .values(refunded_cents=Payment.refunded_cents + amount)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise RefundExceedsRemaining("the payment has less left to refund")
    for item_id, cents in sorted(alloc.items()):
        result = session.execute(
            update(OrderItem)
            .where(
                OrderItem.id == item_id,
                OrderItem.order_id == order_id,
                OrderItem.refunded_cents + cents
                <= OrderItem.line_total_cents - OrderItem.discount_cents,
            )
            .values(refunded_cents=OrderItem.refunded_cents + cents)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise RefundExceedsRemaining(
                f"line {item_id} has less left to refund", details={"order_item_id": str(item_id)}
            )


def settle(
    session: Session, refund_id: str, *, succeeded: bool, user_id: int, now: int
) -> tuple[bool, Refund]:
    """Compare-and-set ``pending -> succeeded | failed`` (see the module docstring);
    answer (won, refund). A loser (a duplicate callback) changes nothing but the count."""
    refund = get(session, refund_id)
    assert refund is not None
    to = SUCCEEDED if succeeded else FAILED
    values: dict[str, Any] = {"status": to, "updated_ms": now, "callbacks": Refund.callbacks + 1}
    if not succeeded:
        values["key"] = f"{refund.key}~{refund.id}"[:96]
    result = session.execute(
        update(Refund)
        .where(Refund.id == refund_id, Refund.status == PENDING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.execute(
            update(Refund)
            .where(Refund.id == refund_id)
            .values(callbacks=Refund.callbacks + 1)
            .execution_options(synchronize_session=False)
        )
        return False, refund
    amount = int(refund.amount_cents)
    if succeeded:
        session.execute(
            update(Order)
            .where(Order.id == refund.order_id)
            .values(refunded_cents=Order.refunded_cents + amount, updated_ms=now)
            .execution_options(synchronize_session=False)
        )
    else:  # give back what it reserved
        session.execute(
            update(Payment)
            .where(Payment.id == refund.payment_id, Payment.refunded_cents >= amount)
            .values(refunded_cents=Payment.refunded_cents - amount)
            .execution_options(synchronize_session=False)
        )
        for item_id, cents in sorted(_lines(refund).items()):
            session.execute(
                update(OrderItem)
                .where(OrderItem.id == item_id, OrderItem.refunded_cents >= cents)
                .values(refunded_cents=OrderItem.refunded_cents - cents)
                .execution_options(synchronize_session=False)
            )
    refund = get(session, refund_id)
    assert refund is not None
    _event(session, refund, user_id, now)
    return True, refund


def _event(session: Session, refund: Refund, user_id: int, now: int) -> None:
    payload = {**view(refund), "user_id": user_id}
    row = rows.outbox_row(TOPICS[refund.status], refund.id, payload, now)
    conn = session.connection()
    ph = "%s" if conn.dialect.paramstyle in ("format", "pyformat") else "?"
    conn.exec_driver_sql(rows.insert_sql(rows.OUTBOX, rows.OUTBOX_COLUMNS, ph), [row])


def view(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "order_id": str(refund.order_id),
        "payment_id": refund.payment_id,
        "return_id": None if refund.return_id is None else str(refund.return_id),
        "amount_cents": int(refund.amount_cents),
        "status": refund.status,
        "reason": refund.reason,
        "lines": {str(k): int(v) for k, v in (refund.lines or {}).items()},
        "created_ms": int(refund.created_ms),
        "updated_ms": int(refund.updated_ms),
    }


def charge_of(refund: Refund) -> dict[str, Any]:
    """What the payment provider is asked to do for a pending refund."""
    return {
        "refund_id": refund.id,
        "payment_id": refund.payment_id,
        "order_id": str(refund.order_id),
        "amount_cents": int(refund.amount_cents),
        "outcome": refund.outcome,
    }
