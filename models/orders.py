"""Orders and their history, payments, and user notifications.

Order transitions are compare-and-set: ``UPDATE orders SET status=:to WHERE id=:id AND
status=:from`` (DESIGN invariant 6). ``shard`` is the owning OrderShard (by user).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, ExactKey, Json

ORDER_STATUSES = (
    "pending_payment", "paid", "partially_shipped", "shipped", "delivered", "completed",
    "cancelled", "refunded",
)  # fmt: skip


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_idem"),
        Index("ix_orders_user_created", "user_id", "created_ms"),
        Index("ix_orders_shard_status_expires", "shard", "status", "expires_ms"),
        Index("ix_orders_status_created", "status", "created_ms"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    shard: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="normal")
    status: Mapped[str] = mapped_column(String(20))
    total_cents: Mapped[int] = mapped_column(BigInteger)  # to pay: lines - discount_cents
    # promotions and coupons: the sum of the items' discount_cents
    discount_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # the shipping method chosen and its fee (part of total_cents)
    shipping_method_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    shipping_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # when the carrier delivered the last shipment (returns are counted from here)
    delivered_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Σ of the order's succeeded refunds
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    address: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    reservation_key: Mapped[str] = mapped_column(ExactKey(160))
    idempotency_key: Mapped[str | None] = mapped_column(ExactKey(128), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    flash_sale_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    # the next deadline of the order's state: the payment deadline while pending_payment,
    # the automatic completion while delivered (the shard's sweeper acts on both)
    expires_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancel_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class OrderItem(Base):
    __tablename__ = "order_items"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    sku_id: Mapped[int] = mapped_column(BigInteger, index=True)
    product_id: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(String(200))
    specs: Mapped[dict[str, str]] = mapped_column(Json, default=dict)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    line_total_cents: Mapped[int] = mapped_column(BigInteger)
    # what promotions and coupons took off this line (a refund of it pays back at most
    # line_total_cents - discount_cents)
    discount_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # units shipped, returned (received back) and refunded money, bounded by the line
    shipped_quantity: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    returned_quantity: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class OrderEvent(Base):
    """Append-only order history: one row per transition, the first one at creation."""

    __tablename__ = "order_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(64), default="")
    actor: Mapped[str] = mapped_column(String(64), default="system")
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Payment(Base):
    __tablename__ = "payments"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    outcome: Mapped[str] = mapped_column(String(16), default="succeed")
    callbacks: Mapped[int] = mapped_column(Integer, default=0)
    # Σ of this payment's succeeded refunds; never above amount_cents
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class PaymentAudit(Base):
    """Every callback that failed verification, kept for audit."""

    __tablename__ = "payment_audit"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    payment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(String(64))
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    body_sha256: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Notification(Base):
    """Simulated e-mail: one record per (user, event), written by the outbox consumer."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("user_id", "event_id", name="uq_notifications_user_event"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(String(2000))
    created_ms: Mapped[int] = mapped_column(BigInteger)
