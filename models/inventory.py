"""Stock. Only the SKU's InventoryShard writes these tables (DESIGN invariant 1).

Conservation, for every SKU: ``total = available + reserved + sold``; ``reserved`` is the
sum of the open reservations in ``inventory_ops`` and ``sold`` the sum of the confirmed ones.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, ExactKey, Json


class Inventory(Base):
    __tablename__ = "inventory"
    sku_id: Mapped[int] = mapped_column(
        ForeignKey("skus.id"), primary_key=True, autoincrement=False
    )
    shard: Mapped[int] = mapped_column(Integer, index=True)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    sold: Mapped[int] = mapped_column(BigInteger, default=0)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class InventoryOp(Base):
    """The ledger of operation keys. A reservation row moves
    ``reserved -> confirmed`` or ``reserved -> released``; a rejected attempt is kept as
    ``rejected`` so that a replay returns the first answer."""

    __tablename__ = "inventory_ops"
    __table_args__ = (Index("ix_inventory_ops_shard_state", "shard", "state", "expires_ms"),)
    key: Mapped[str] = mapped_column(ExactKey(160), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    items: Mapped[dict[str, Any]] = mapped_column(Json)
    result: Mapped[str] = mapped_column(String(32), default="ok")
    expires_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class InventoryAdjustment(Base):
    """Audit trail of admin restocks and corrections."""

    __tablename__ = "inventory_adjustments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(ExactKey(160), unique=True)
    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id"), index=True)
    delta: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(255))
    actor_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
