"""After the sale: shipping methods, shipments and their tracking events, refunds, returns
and reviews.

Every status here moves only by compare-and-set (``UPDATE ... WHERE id = ? AND status =
?``), so of two racing moves exactly one wins. Money is integer minor units; the running
totals that bound refunds (``payments.refunded_cents``, ``order_items.refunded_cents``)
grow only by a guarded ``UPDATE ... SET x = x + :a WHERE x + :a <= <bound>``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, ExactKey, Json


class ShippingMethod(Base):
    """An admin-defined way to ship: a flat fee, free over a threshold, per-region fees."""

    __tablename__ = "shipping_methods"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    fee_cents: Mapped[int] = mapped_column(BigInteger)
    # the order's goods (after discounts) at or above this ship free; NULL: never free
    free_over_cents: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # {"<region>": fee_cents} overriding fee_cents for addresses in that region
    region_fees: Mapped[dict[str, int]] = mapped_column(Json, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Shipment(Base):
    """Some of an order's units handed to a carrier under one tracking number."""

    __tablename__ = "shipments"
    __table_args__ = (
        UniqueConstraint("carrier", "tracking_number", name="uq_shipments_carrier_tracking"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    carrier: Mapped[str] = mapped_column(String(32))
    tracking_number: Mapped[str] = mapped_column(ExactKey(64))
    # label_created -> picked_up -> in_transit -> out_for_delivery -> delivered
    status: Mapped[str] = mapped_column(String(20))
    delivered_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class ShipmentItem(Base):
    __tablename__ = "shipment_items"
    __table_args__ = (
        UniqueConstraint("shipment_id", "order_item_id", name="uq_shipment_items_line"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"))
    order_item_id: Mapped[int] = mapped_column(
        ForeignKey("order_items.id", ondelete="CASCADE"), index=True
    )
    quantity: Mapped[int] = mapped_column(Integer)


class ShipmentEvent(Base):
    """A carrier's tracking event, once per ``event_id`` (a duplicate callback adds none)."""

    __tablename__ = "shipment_events"
    __table_args__ = (UniqueConstraint("event_id", name="uq_shipment_events_event_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shipment_id: Mapped[int] = mapped_column(
        ForeignKey("shipments.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[str] = mapped_column(ExactKey(64))
    status: Mapped[str] = mapped_column(String(20))
    location: Mapped[str] = mapped_column(String(64), default="")
    occurred_ms: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class CarrierAudit(Base):
    """Every carrier callback that was refused (bad or stale signature, unknown shipment,
    another order's shipment, malformed), kept for audit like ``payment_audit``."""

    __tablename__ = "carrier_audit"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shipment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(String(64))
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    body_sha256: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Refund(Base):
    """Money going back on a payment: ``pending -> succeeded | failed``, settled by the
    provider's signed refund callback. ``key`` names what it refunds (``cancel:<order>``,
    ``return:<rma>``, ``admin:<order>:<idempotency key>``), so a second refund of the same
    thing is refused; a failed refund gives its key up (``<key>~<id>``) so it can be retried.
    ``lines`` is how the amount was reserved on the order's lines ({order_item_id: cents};
    the rest is shipping), so a failed refund releases exactly what it reserved."""

    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("key", name="uq_refunds_key"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    return_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    key: Mapped[str] = mapped_column(ExactKey(96))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str] = mapped_column(String(32), default="")
    lines: Mapped[dict[str, int]] = mapped_column(Json, default=dict)
    # what the simulated provider is asked to answer (succeed | fail)
    outcome: Mapped[str] = mapped_column(String(16), default="succeed")
    callbacks: Mapped[int] = mapped_column(Integer, default=0)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class ReturnRequest(Base):
    """A customer's return (RMA): requested -> approved | rejected; approved -> (the
    customer's tracking number) shipped_back -> received (restocked) -> refunded."""

    __tablename__ = "returns"
    __table_args__ = (
        Index("ix_returns_order", "order_id"),
        Index("ix_returns_status_created", "status", "created_ms"),
        UniqueConstraint("user_id", "idempotency_key", name="uq_returns_user_idem"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(String(1000), default="")
    photos: Mapped[list[str]] = mapped_column(Json, default=list)
    return_tracking: Mapped[str | None] = mapped_column(String(64), nullable=True)
    refund_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(ExactKey(128), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class ReturnItem(Base):
    __tablename__ = "return_items"
    __table_args__ = (UniqueConstraint("return_id", "order_item_id", name="uq_return_items_line"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"))
    order_item_id: Mapped[int] = mapped_column(
        ForeignKey("order_items.id", ondelete="CASCADE"), index=True
    )
    sku_id: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    # what this line's returned units paid (their share of the line after its discount)
    refund_cents: Mapped[int] = mapped_column(BigInteger)


class ReturnEvent(Base):
    """Append-only history of a return: one row per step, the first at the request."""

    __tablename__ = "return_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    return_id: Mapped[int] = mapped_column(ForeignKey("returns.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(64), default="system")
    note: Mapped[str] = mapped_column(String(200), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Review(Base):
    """A verified buyer's review of one delivered order line (once per line)."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("order_item_id", name="uq_reviews_order_item_id"),
        Index("ix_reviews_product_created", "product_id", "created_ms"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(BigInteger)
    sku_id: Mapped[int] = mapped_column(BigInteger)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    order_item_id: Mapped[int] = mapped_column(ForeignKey("order_items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    rating: Mapped[int] = mapped_column(SmallInteger)
    text: Mapped[str] = mapped_column(String(2000), default="")
    images: Mapped[list[str]] = mapped_column(Json, default=list)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
