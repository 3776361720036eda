"""The built-in consumers of order events, and the user's notification inbox.

- ``notifications``: a simulated e-mail. For order placed, paid, partially shipped,
  shipped, delivered, completed, cancelled and refunded, a further shipment of a partially
  shipped order, and a parcel out for delivery, it writes one ``notifications`` row per
  (user, event id); the unique key makes a redelivered event harmless. Events marked
  ``silent`` (a shipment whose order move notifies already, other tracking steps) write none.
- ``refund-restock``: returns the units of a refunded order, of a paid order cancelled by
  its customer, and of a received return to stock (idempotent by the
  ``refund:{order}:{sku}`` and ``return:{rma}:{sku}`` keys). The OrderShard does this at
  once; this consumer is the durable second path when that attempt failed.
- refunds and returns notify the customer too: a refund succeeded or failed, a return
  requested, approved, rejected or received.

Each consumer names its ``topics``; the stream consumer acknowledges the others without
calling it (and the handlers ignore them too). The notifications of one stream read are
written in one transaction; a duplicate among them falls back to one transaction per row,
so it never drops the others.

An event written under a sampled trace carries its ``traceparent`` (``raymall.tracing``,
payload key ``_trace``): the consumer's work on it is a CONSUMER span in that trace (one
span per read, a child of the first traced event and linked to each).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import Notification
from raymall import tracing
from raymall.db import transaction
from raymall.domain import order_state as st
from raymall.ids import now_ms
from raymall.orders.ports import StockPort
from raymall.orders.stream import Event
from raymall.orders.workflow import restock_refund
from raymall.returns.desk import restock_return

MESSAGES: dict[str, tuple[str, str]] = {
    "order.placed": (
        "order_placed",
        "We received your order {order_id}: {total} due within the payment window.",
    ),
    "order.paid": ("order_paid", "Payment received for order {order_id}: {total}."),
    "order.partially_shipped": (
        "order_partially_shipped",
        "Part of order {order_id} is on its way; the rest follows.",
    ),
    "order.shipped": ("order_shipped", "Order {order_id} is on its way."),
    "shipment.created": (
        "shipment_created",
        "More of order {order_id} is on its way: {carrier} {tracking_number}.",
    ),
    "shipment.tracking": (
        "shipment_out_for_delivery",
        "A parcel of order {order_id} is out for delivery today.",
    ),
    "order.delivered": (
        "order_delivered",
        "Order {order_id} was delivered. Confirm receipt, or it completes by itself.",
    ),
    "order.completed": ("order_completed", "Order {order_id} is complete. Thank you!"),
    "order.cancelled": ("order_cancelled", "Order {order_id} was cancelled ({reason})."),
    "order.refunded": ("order_refunded", "Order {order_id} was refunded: {total}."),
    "review.created": (
        "review_created",
        "Thank you for reviewing your purchase from order {order_id}.",
    ),
    "refund.succeeded": ("refund_succeeded", "We refunded {amount} for order {order_id}."),
    "refund.failed": (
        "refund_failed",
        "A refund of {amount} for order {order_id} did not go through; we will try again.",
    ),
    "return.requested": (
        "return_requested",
        "We received your return request {return_id} for order {order_id}.",
    ),
    "return.approved": (
        "return_approved",
        "Return {return_id} is approved: send the items back and add the tracking number.",
    ),
    "return.rejected": (
        "return_rejected",
        "Return {return_id} for order {order_id} was not approved.",
    ),
    "return.received": (
        "return_received",
        "We received return {return_id}; {amount} goes back to you.",
    ),
}
# rows are written with a Core INSERT (one executemany): the ORM's bulk path costs several
# times as much per row in the relay's CPU and nothing here needs it
NOTIFICATIONS = cast(Table, Notification.__table__)

SUBJECTS = {
    "order_placed": "Order received",
    "order_paid": "Payment received",
    "order_partially_shipped": "Order partially shipped",
    "order_shipped": "Order shipped",
    "shipment_created": "Another parcel shipped",
    "shipment_out_for_delivery": "Out for delivery",
    "order_delivered": "Order delivered",
    "order_completed": "Order completed",
    "order_cancelled": "Order cancelled",
    "order_refunded": "Order refunded",
    "review_created": "Thanks for your review",
    "refund_succeeded": "Refund sent",
    "refund_failed": "Refund delayed",
    "return_requested": "Return requested",
    "return_approved": "Return approved",
    "return_rejected": "Return not approved",
    "return_received": "Return received",
}


def money(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"


def render(event: Event) -> tuple[int, str, str, str] | None:
    """(user id, kind, subject, body) for a notifiable event, else None."""
    spec = MESSAGES.get(event.topic)
    user_id = event.payload.get("user_id")
    if spec is None or not isinstance(user_id, int) or event.payload.get("silent"):
        return None
    kind, template = spec
    body = template.format(
        order_id=event.payload.get("order_id", event.aggregate_id),
        total=money(int(event.payload.get("total_cents") or 0)),
        reason=event.payload.get("reason", ""),
        amount=money(
            int(event.payload.get("amount_cents") or event.payload.get("refund_cents") or 0)
        ),
        return_id=event.payload.get("return_id", ""),
        carrier=event.payload.get("carrier", ""),
        tracking_number=event.payload.get("tracking_number", ""),
    )
    return user_id, kind, SUBJECTS[kind], body


def _row(event: Event) -> dict[str, Any] | None:
    rendered = render(event)
    if rendered is None:
        return None
    user_id, kind, subject, body = rendered
    return {
        "user_id": user_id,
        "event_id": event.event_id,
        "kind": kind,
        "subject": subject,
        "body": body[:2000],
        "created_ms": event.created_ms or now_ms(),
    }


def write_notifications(
    sessions: sessionmaker[Session], events: Sequence[Event]
) -> list[BaseException | None]:
    """Store the notifications of ``events``; one outcome per event (None: stored, already
    stored, or nothing to notify).

    All rows go in one transaction. If it breaks a unique (user, event) key, the rows are
    written again one transaction each, so a duplicate never drops the others; any other
    error of the batch is raised (nothing was written)."""
    outcomes: list[BaseException | None] = [None] * len(events)
    rows = [(i, row) for i, row in enumerate(map(_row, events)) if row is not None]
    if not rows:
        return outcomes
    try:
        with transaction(sessions) as session:
            session.execute(insert(NOTIFICATIONS), [row for _, row in rows])
        return outcomes
    except IntegrityError:  # a redelivered event: its notification exists
        if len(rows) == 1:
            return outcomes
    for i, row in rows:
        try:
            with transaction(sessions) as session:
                session.execute(insert(NOTIFICATIONS), [row])
        except IntegrityError:  # the unique (user, event) says: already delivered
            pass
        except Exception as exc:
            outcomes[i] = exc
    return outcomes


def write_notification(sessions: sessionmaker[Session], event: Event) -> None:
    """Store the notification for ``event`` (a no-op if it is stored already)."""
    error = write_notifications(sessions, [event])[0]
    if error is not None:
        raise error


class NotificationConsumer:
    group = "notifications"
    topics = frozenset(MESSAGES)

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    async def __call__(self, event: Event) -> None:
        with tracing.use(_span(self.group, [event])):
            await asyncio.to_thread(write_notification, self.sessions, event)

    async def handle_batch(self, events: list[Event]) -> list[BaseException | None]:
        """All notifications of one read in one transaction (see ``write_notifications``)."""
        if tracing.enabled:
            with tracing.use(_span(self.group, events)):
                return await asyncio.to_thread(write_notifications, self.sessions, events)
        return await asyncio.to_thread(write_notifications, self.sessions, events)


class RefundRestockConsumer:
    group = "refund-restock"
    topics = frozenset({"order.refunded", "order.cancelled", "return.received"})

    def __init__(self, stock: StockPort) -> None:
        self.stock = stock

    async def __call__(self, event: Event) -> None:
        payload = event.payload
        items = payload.get("items") or []
        if event.topic == "return.received":
            with tracing.use(_span(self.group, [event])):
                await restock_return(
                    self.stock, int(payload["return_id"]), int(payload["order_id"]), items
                )
            return
        if event.topic == "order.cancelled" and payload.get("from_status") != st.PAID:
            return  # an unpaid order's stock was released, never sold
        if event.topic not in ("order.refunded", "order.cancelled"):
            return
        with tracing.use(_span(self.group, [event])):
            await restock_refund(self.stock, int(payload["order_id"]), items)


def _span(group: str, events: Sequence[Event]) -> Any:
    """The consumer's span for ``events`` (None when none of them was traced)."""
    if not tracing.enabled:
        return None
    carriers = [e.payload.get(tracing.TRACE_KEY) for e in events]
    return tracing.start_consumer(
        f"consume {group}",
        carriers,
        **{"messaging.consumer.group.name": group, "raymall.events": len(events)},
    )


def list_notifications(
    session: Session, user_id: int, *, limit: int, before_id: int | None
) -> dict[str, Any]:
    stmt = select(Notification).where(Notification.user_id == user_id)
    if before_id is not None:
        stmt = stmt.where(Notification.id < before_id)
    rows = list(session.scalars(stmt.order_by(Notification.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [
            {
                "id": int(n.id),
                "event_id": n.event_id,
                "kind": n.kind,
                "subject": n.subject,
                "body": n.body,
                "created_ms": int(n.created_ms),
            }
            for n in rows
        ],
        "next_cursor": str(rows[-1].id) if more and rows else None,
    }
