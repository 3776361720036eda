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
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from models import Order, Payment, PaymentAudit

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
REFUNDED = "refunded"
OUTCOMES = ("succeed", "fail")


def new_payment_id() -> str:
    return "pay_" + secrets.token_hex(12)


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
    result = session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == PENDING)
        .values(status=to, updated_ms=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def count_callback(session: Session, payment_id: str, now: int) -> None:
    session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(callbacks=Payment.callbacks + 1, updated_ms=now)
        .execution_options(synchronize_session=False)
    )


def payments_of(session: Session, order_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Payment).where(Payment.order_id == order_id).order_by(Payment.created_ms)
    )
    return [payment_view(p) for p in rows]


def payment_view(p: Payment) -> dict[str, Any]:
    return {
        "id": p.id,
        "order_id": str(p.order_id),
        "amount_cents": int(p.amount_cents),
        "status": p.status,
        "refunded_cents": int(p.refunded_cents or 0),
        "callbacks": int(p.callbacks),
        "created_ms": int(p.created_ms),
        "updated_ms": int(p.updated_ms),
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
