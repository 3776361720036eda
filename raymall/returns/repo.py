"""Returns (RMAs) in the database: plain functions over a ``Session`` (the order shard
runs the writes in its transactions, one operation at a time per order; replicas run the
reads).

- ``insert`` writes the return, its lines, its first history event and its
  ``return.requested`` outbox event together; the unique ``(user_id, idempotency_key)``
  makes a second return under one key impossible;
- ``move`` is a compare-and-set ``UPDATE returns ... WHERE id = :id AND status = :from``:
  only the winner appends the history event and the outbox event (same transaction);
- ``claimed_units`` counts, per order line, the units of the order's returns that are not
  rejected (what may still be returned is bought minus that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models import ReturnEvent, ReturnItem, ReturnRequest
from raymall.orders import rows
from raymall.returns import states as rs


@dataclass(frozen=True)
class ReturnFilters:
    status: str | None = None
    order_id: int | None = None
    user_id: int | None = None


def get(session: Session, return_id: int) -> ReturnRequest | None:
    return session.get(ReturnRequest, return_id, populate_existing=True)


def by_key(session: Session, user_id: int, key: str) -> ReturnRequest | None:
    return session.scalar(
        select(ReturnRequest).where(
            ReturnRequest.user_id == user_id, ReturnRequest.idempotency_key == key
        )
    )


def items_of(session: Session, return_ids: Sequence[int]) -> dict[int, list[ReturnItem]]:
    out: dict[int, list[ReturnItem]] = {int(i): [] for i in return_ids}
    if not return_ids:
        return out
    for item in session.scalars(
        select(ReturnItem).where(ReturnItem.return_id.in_(list(return_ids))).order_by(ReturnItem.id)
    ):
        out[int(item.return_id)].append(item)
    return out


def claimed_units(session: Session, order_id: int) -> dict[int, int]:
    """Units per order item asked back by the order's returns that are not rejected."""
    result = session.execute(
        select(ReturnItem.order_item_id, func.sum(ReturnItem.quantity))
        .join(ReturnRequest, ReturnRequest.id == ReturnItem.return_id)
        .where(ReturnRequest.order_id == order_id, ReturnRequest.status.in_(sorted(rs.CLAIMING)))
        .group_by(ReturnItem.order_item_id)
    )
    return {int(item_id): int(qty or 0) for item_id, qty in result}


def insert(
    session: Session,
    *,
    return_id: int,
    order_id: int,
    user_id: int,
    lines: Sequence[tuple[int, int, int]],
    reason: str,
    note: str,
    photos: Sequence[str],
    idempotency_key: str | None,
    now: int,
) -> None:
    """The return (``lines``: (order item id, sku id, quantity)), its first event and its
    outbox event."""
    session.add(
        ReturnRequest(
            id=return_id,
            order_id=order_id,
            user_id=user_id,
            status=rs.REQUESTED,
            reason=reason,
            note=note,
            photos=list(photos),
            return_tracking=None,
            refund_cents=0,
            idempotency_key=idempotency_key,
            created_ms=now,
            updated_ms=now,
        )
    )
    session.flush()
    session.add_all(
        ReturnItem(
            return_id=return_id, order_item_id=item_id, sku_id=sku_id, quantity=qty, refund_cents=0
        )
        for item_id, sku_id, qty in lines
    )
    _event(session, return_id, None, rs.REQUESTED, f"user:{user_id}", reason, now)
    _outbox(session, return_id, order_id, user_id, rs.REQUESTED, now, lines=lines)


def move(
    session: Session,
    ret: ReturnRequest,
    to: str,
    *,
    actor: str,
    note: str = "",
    now: int,
    **values: Any,
) -> bool:
    """Compare-and-set ``ret.status -> to`` (with ``values``); only the winner writes the
    history and outbox events."""
    frm = ret.status
    result = session.execute(
        update(ReturnRequest)
        .where(ReturnRequest.id == ret.id, ReturnRequest.status == frm)
        .values(status=to, updated_ms=now, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    _event(session, int(ret.id), frm, to, actor, note, now)
    items = items_of(session, [int(ret.id)])[int(ret.id)]
    lines = [(int(i.order_item_id), int(i.sku_id), int(i.quantity)) for i in items]
    extra = {"refund_cents": int(values.get("refund_cents", ret.refund_cents or 0))}
    _outbox(session, int(ret.id), int(ret.order_id), int(ret.user_id), to, now, lines, **extra)
    return True


def set_line_refunds(session: Session, return_id: int, refunds: dict[int, int]) -> None:
    """Each returned line's refund (order item id -> cents), fixed at receipt."""
    for item_id, cents in refunds.items():
        session.execute(
            update(ReturnItem)
            .where(ReturnItem.return_id == return_id, ReturnItem.order_item_id == item_id)
            .values(refund_cents=cents)
            .execution_options(synchronize_session=False)
        )


def _event(
    session: Session, return_id: int, frm: str | None, to: str, actor: str, note: str, now: int
) -> None:
    session.add(
        ReturnEvent(
            return_id=return_id,
            from_status=frm,
            to_status=to,
            actor=actor[:64],
            note=note[:200],
            created_ms=now,
        )
    )
    session.flush()


def _outbox(
    session: Session,
    return_id: int,
    order_id: int,
    user_id: int,
    status: str,
    now: int,
    lines: Sequence[tuple[int, int, int]],
    **extra: Any,
) -> None:
    payload = {
        "return_id": str(return_id),
        "order_id": str(order_id),
        "user_id": user_id,
        "status": status,
        "items": [{"order_item_id": str(i), "sku_id": s, "quantity": q} for i, s, q in lines],
        **extra,
    }
    row = rows.outbox_row(rs.TOPICS[status], return_id, payload, now)
    conn = session.connection()
    ph = "%s" if conn.dialect.paramstyle in ("format", "pyformat") else "?"
    conn.exec_driver_sql(rows.insert_sql(rows.OUTBOX, rows.OUTBOX_COLUMNS, ph), [row])


# ---- reads ------------------------------------------------------------------------------
def view(
    ret: ReturnRequest, items: Sequence[ReturnItem], events: Sequence[ReturnEvent] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(ret.id),
        "order_id": str(ret.order_id),
        "user_id": int(ret.user_id),
        "status": ret.status,
        "reason": ret.reason,
        "note": ret.note,
        "photos": list(ret.photos or []),
        "return_tracking": ret.return_tracking,
        "refund_cents": int(ret.refund_cents or 0),
        "created_ms": int(ret.created_ms),
        "updated_ms": int(ret.updated_ms),
        "items": [
            {
                "order_item_id": str(i.order_item_id),
                "sku_id": int(i.sku_id),
                "quantity": int(i.quantity),
                "refund_cents": int(i.refund_cents or 0),
            }
            for i in items
        ],
    }
    if events is not None:
        out["history"] = [
            {
                "from_status": e.from_status,
                "to_status": e.to_status,
                "actor": e.actor,
                "note": e.note,
                "created_ms": int(e.created_ms),
            }
            for e in events
        ]
    return out


def full_view(session: Session, return_id: int) -> dict[str, Any] | None:
    ret = get(session, return_id)
    if ret is None:
        return None
    events = session.scalars(
        select(ReturnEvent).where(ReturnEvent.return_id == return_id).order_by(ReturnEvent.id)
    )
    return view(ret, items_of(session, [return_id])[return_id], list(events))


def page(
    session: Session, filters: ReturnFilters, *, limit: int, before_id: int | None
) -> dict[str, Any]:
    """A keyset page of returns, newest first."""
    stmt = select(ReturnRequest)
    if filters.status is not None:
        stmt = stmt.where(ReturnRequest.status == filters.status)
    if filters.order_id is not None:
        stmt = stmt.where(ReturnRequest.order_id == filters.order_id)
    if filters.user_id is not None:
        stmt = stmt.where(ReturnRequest.user_id == filters.user_id)
    if before_id is not None:
        stmt = stmt.where(ReturnRequest.id < before_id)
    found = list(session.scalars(stmt.order_by(ReturnRequest.id.desc()).limit(limit + 1)))
    more = len(found) > limit
    found = found[:limit]
    items = items_of(session, [int(r.id) for r in found])
    return {
        "items": [view(r, items[int(r.id)]) for r in found],
        "next_cursor": str(found[-1].id) if more and found else None,
    }
