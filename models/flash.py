"""Flash sales. The event's quantity is held in the owning InventoryShard as a reservation
(key ``flash:{id}``), so ordinary orders cannot take it and conservation holds unchanged."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, ExactKey

FLASH_STATUSES = ("scheduled", "active", "ended")


class FlashSale(Base):
    __tablename__ = "flash_sales"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    price_cents: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)
    per_user_limit: Mapped[int] = mapped_column(Integer, default=1)
    starts_ms: Mapped[int] = mapped_column(BigInteger)
    ends_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    # how long a buyer has to pay (None: RAYMALL_FLASH_ORDER_TIMEOUT_S)
    payment_timeout_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # purchases need a flash token (GET /flash-sales/{id}/token)
    require_token: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    sold: Mapped[int] = mapped_column(BigInteger, default=0)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class FlashPurchase(Base):
    """One successful purchase: written in the same commit as its order."""

    __tablename__ = "flash_purchases"
    __table_args__ = (
        UniqueConstraint("sale_id", "user_id", "idempotency_key", name="uq_flash_purchase_key"),
        Index("ix_flash_purchases_sale_user", "sale_id", "user_id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sale_id: Mapped[int] = mapped_column(ForeignKey("flash_sales.id"))
    user_id: Mapped[int] = mapped_column(BigInteger)
    order_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    idempotency_key: Mapped[str] = mapped_column(ExactKey(128))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="reserved")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
