"""A coupon's moves with its order, each a compare-and-set in the order's transaction
(DESIGN invariant 8; the moves are ``raymall.domain.coupons.MOVES``):

- ``lock``: in the transaction that inserts the order, ``available -> locked`` naming the
  order, only if the coupon is the customer's and valid now. Of two orders placed at once
  with one coupon exactly one locks it; the other's transaction fails with
  ``CouponUnavailable`` (and stores nothing);
- ``follow``: in the transaction of the order's winning transition, ``locked -> used``
  when it is paid, ``locked -> available`` (order cleared) when it is cancelled or timed
  out, ``used -> available`` (order cleared) when a paid order is cancelled (the
  customer's cancel after payment, refunded in full), with a ``coupon.used`` /
  ``coupon.returned`` outbox event per coupon moved. Only the coupons held by that order
  move, once: a second run finds none left to move.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import UserCoupon
from raymall.domain import order_state as st
from raymall.domain.coupons import AVAILABLE, LOCKED, MOVES, RESTORE, RETURN, USE
from raymall.errors import CouponUnavailable
from raymall.orders import rows

# an order is cancelled either unpaid (its coupons locked) or paid (used): both go back
_MOVES_FOR = {st.PAID: (USE,), st.CANCELLED: (RETURN, RESTORE)}


def lock(
    session: Session, order_id: int, user_id: int, coupon_ids: Sequence[int], now: int
) -> None:
    """Lock the coupons for the order (the caller's transaction), or raise."""
    for coupon_id in coupon_ids:
        result = session.execute(
            update(UserCoupon)
            .where(
                UserCoupon.id == coupon_id,
                UserCoupon.user_id == user_id,
                UserCoupon.state == AVAILABLE,
                UserCoupon.valid_from_ms <= now,
                UserCoupon.valid_until_ms > now,
            )
            .values(state=LOCKED, order_id=order_id, updated_ms=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise CouponUnavailable(
                f"coupon {coupon_id} is no longer available",
                details={"coupon_id": str(coupon_id)},
            )


def held_coupons(session: Session, order_id: int) -> list[str]:
    """The coupons the order holds now (locked while unpaid, used once paid)."""
    rows = session.scalars(
        select(UserCoupon.id).where(UserCoupon.order_id == order_id).order_by(UserCoupon.id)
    )
    return [str(r) for r in rows]


def follow(session: Session, order_id: int, to: str, now: int) -> list[int]:
    """Move the coupons the order holds as its transition to ``to`` says (see the module
    docstring); the ids moved."""
    moved: list[int] = []
    for move in _MOVES_FOR.get(to, ()):
        moved += _move(session, order_id, move, now)
    return moved


def _move(session: Session, order_id: int, move: str, now: int) -> list[int]:
    frm, dest, topic = MOVES[move]
    held = session.execute(
        select(UserCoupon.id, UserCoupon.user_id, UserCoupon.campaign_id).where(
            UserCoupon.order_id == order_id, UserCoupon.state == frm
        )
    ).all()
    moved = []
    for coupon_id, user_id, campaign_id in held:
        values: dict[str, object] = {"state": dest, "updated_ms": now}
        if dest == AVAILABLE:
            values["order_id"] = None
        result = session.execute(
            update(UserCoupon)
            .where(
                UserCoupon.id == coupon_id,
                UserCoupon.state == frm,
                UserCoupon.order_id == order_id,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            continue
        moved.append(int(coupon_id))
        if topic is not None:
            payload = {
                "coupon_id": str(coupon_id),
                "campaign_id": int(campaign_id),
                "user_id": int(user_id),
                "order_id": str(order_id),
            }
            event = rows.outbox_row(topic, coupon_id, payload, now)
            conn = session.connection()
            ph = "%s" if conn.dialect.paramstyle in ("format", "pyformat") else "?"
            conn.exec_driver_sql(rows.insert_sql(rows.OUTBOX, rows.OUTBOX_COLUMNS, ph), [event])
    return moved
