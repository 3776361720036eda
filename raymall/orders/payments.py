"""Payments and the callback audit trail: plain functions over a ``Session``.

A payment moves ``pending -> succeeded | failed | refunded`` exactly once, by
compare-and-set, so a duplicate callback finds it settled and changes nothing.
``refunded`` means the money went back at once: the order could not take it (cancelled or
its stock gone). Refunds of a succeeded payment are rows of their own
(``raymall.refunds.ledger``): the payment stays ``succeeded`` and ``refunded_cents`` counts
its pending and succeeded refunds, never above ``amount_cents``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from models import Order, Payment, PaymentAudit
from raymall.domain import order_state as st
from raymall.errors import InvalidTransition, NotFound
from raymall.orders.repository import OrderHead
from raymall.orders.rows import placeholder

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
REFUNDED = "refunded"
OUTCOMES = ("succeed", "fail")


_COLUMNS = (
    "id",
    "order_id",
    "amount_cents",
    "status",
    "outcome",
    "callbacks",
    "refunded_cents",
    "created_ms",
    "updated_ms",
)


@dataclass(frozen=True)
class PaymentTarget:
    """What settling a payment needs: the payment's amount and status, its order's head,
    and whether the order holds coupons (they are locked only when it is placed)."""

    payment_id: str
    amount_cents: int
    status: str
    order: OrderHead
    holds_coupons: bool


def new_payment_id() -> str:
    return "pay_" + secrets.token_hex(12)


def start_payment(session: Session, user_id: int, order_id: int, outcome: str, now: int) -> dict:
    """``POST /orders/{id}/pay``'s write: the user's order must be pending payment (else
    ``NotFound`` / ``InvalidTransition``); its latest pending payment is reused when it
    has this ``outcome``, otherwise a new one for the order's total is inserted. Answers
    the payment's view with its ``outcome``. One query and at most one insert."""
    conn = session.connection()
    ph = placeholder(conn)
    cols = ", ".join(f"p.{c}" for c in _COLUMNS)
    row = conn.exec_driver_sql(
        f"SELECT o.user_id, o.status, o.total_cents, {cols} FROM orders o "
        f"LEFT JOIN payments p ON p.order_id = o.id AND p.status = {ph} "
        f"WHERE o.id = {ph} ORDER BY p.created_ms DESC LIMIT 1",
        (PENDING, order_id),
    ).first()
    if row is None or int(row[0]) != user_id:
        raise NotFound(f"order {order_id} not found")
    status, total = str(row[1]), int(row[2])
    if status != st.PENDING_PAYMENT:
        raise InvalidTransition(
            f"an order that is {status} cannot be paid",
            details={"status": status, "to": st.PAID},
        )
    found = dict(zip(_COLUMNS, row[3:], strict=True))
    if found["id"] is None or found["outcome"] != outcome:
        found = {
            "id": new_payment_id(),
            "order_id": order_id,
            "amount_cents": total,
            "status": PENDING,
            "outcome": outcome,
            "callbacks": 0,
            "refunded_cents": 0,
            "created_ms": now,
            "updated_ms": now,
        }
        marks = ", ".join([ph] * len(_COLUMNS))
        conn.exec_driver_sql(
            f"INSERT INTO payments ({', '.join(_COLUMNS)}) VALUES ({marks})",
            tuple(found[c] for c in _COLUMNS),
        )
    return {**_view(found), "outcome": found["outcome"]}


def payment_owner(session: Session, payment_id: str) -> tuple[int, int, int] | None:
    """(order id, order shard, order user) of a payment, or None if there is none."""
    conn = session.connection()
    ph = placeholder(conn)
    row = conn.exec_driver_sql(
        "SELECT o.id, o.shard, o.user_id FROM payments p JOIN orders o ON o.id = p.order_id "
        f"WHERE p.id = {ph}",
        (payment_id,),
    ).first()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def payment_target(session: Session, payment_id: str) -> PaymentTarget | None:
    """The payment and its order's head (``PaymentTarget``), or None if there is none."""
    conn = session.connection()
    ph = placeholder(conn)
    row = conn.exec_driver_sql(
        "SELECT p.amount_cents, p.status, o.id, o.user_id, o.status, o.kind, o.total_cents, "
        "o.reservation_key, o.flash_sale_id, "
        "EXISTS (SELECT 1 FROM user_coupons c WHERE c.order_id = o.id) "
        f"FROM payments p JOIN orders o ON o.id = p.order_id WHERE p.id = {ph}",
        (payment_id,),
    ).first()
    if row is None:
        return None
    order = OrderHead(
        id=int(row[2]),
        user_id=int(row[3]),
        status=str(row[4]),
        kind=str(row[5]),
        total_cents=int(row[6]),
        reservation_key=str(row[7]),
        flash_sale_id=None if row[8] is None else int(row[8]),
    )
    return PaymentTarget(payment_id, int(row[0]), str(row[1]), order, bool(row[9]))


def open_payment(session: Session, order_id: int) -> Payment | None:
    return session.scalar(
        select(Payment)
        .where(Payment.order_id == order_id, Payment.status == PENDING)
        .order_by(Payment.created_ms.desc())
        .limit(1)
    )


def create_payment(session: Session, order: Order, outcome: str, now: int) -> Payment:
    payment = Payment(
        id=new_payment_id(),
        order_id=order.id,
        amount_cents=order.total_cents,
        status=PENDING,
        outcome=outcome,
        callbacks=0,
        created_ms=now,
        updated_ms=now,
    )
    session.add(payment)
    session.flush()
    return payment


def get_payment(session: Session, payment_id: str) -> Payment | None:
    return session.get(Payment, payment_id, populate_existing=True)


def settle(session: Session, payment_id: str, to: str, now: int) -> bool:
    """Compare-and-set ``pending -> to``; ``False`` if it was already settled."""
    conn = session.connection()
    ph = placeholder(conn)
    result = conn.exec_driver_sql(
        f"UPDATE payments SET status = {ph}, updated_ms = {ph} WHERE id = {ph} AND status = {ph}",
        (to, now, payment_id, PENDING),
    )
    return bool(result.rowcount == 1)


def count_callback(session: Session, payment_id: str, now: int) -> None:
    conn = session.connection()
    ph = placeholder(conn)
    conn.exec_driver_sql(
        f"UPDATE payments SET callbacks = callbacks + 1, updated_ms = {ph} WHERE id = {ph}",
        (now, payment_id),
    )


def payments_of(session: Session, order_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Payment).where(Payment.order_id == order_id).order_by(Payment.created_ms)
    )
    return [payment_view(p) for p in rows]


def payment_view(p: Payment) -> dict[str, Any]:
    return _view({c: getattr(p, c) for c in _COLUMNS})


def _view(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": p["id"],
        "order_id": str(p["order_id"]),
        "amount_cents": int(p["amount_cents"]),
        "status": p["status"],
        "refunded_cents": int(p["refunded_cents"] or 0),
        "callbacks": int(p["callbacks"]),
        "created_ms": int(p["created_ms"]),
        "updated_ms": int(p["updated_ms"]),
    }


def audit(
    session: Session,
    *,
    payment_id: str | None,
    reason: str,
    remote_addr: str,
    body_sha256: str,
    now: int,
) -> None:
    session.execute(
        insert(PaymentAudit),
        [
            {
                "payment_id": (payment_id or None) and payment_id[:64],
                "reason": reason[:64],
                "remote_addr": remote_addr[:64],
                "body_sha256": body_sha256,
                "created_ms": now,
            }
        ],
    )
