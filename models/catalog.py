"""Catalog: a category tree, brands, products (SPU) and their SKUs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, Json

PRODUCT_STATUSES = ("draft", "published", "unpublished")


class Category(Base):
    __tablename__ = "categories"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Brand(Base):
    __tablename__ = "brands"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Product(Base):
    """An SPU. ``search_text`` denormalises title, brand, category path and description
    for keyword search (a FULLTEXT index on MySQL/MariaDB)."""

    __tablename__ = "products"
    __table_args__ = (
        Index("ix_products_status_category", "status", "category_id"),
        Index("ix_products_status_created", "status", "created_ms"),
        Index("ix_products_status_sales", "status", "sales_count"),
        Index("ix_products_status_rating", "status", "rating_x100"),
        Index("ft_products_search", "title", "search_text", mysql_prefix="FULLTEXT"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brands.id"), nullable=True, index=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    images: Mapped[list[str]] = mapped_column(Json, default=list)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    min_price_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    max_price_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    sales_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # visible reviews: how many, their sum, and the average x100 (for sort=rating)
    rating_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rating_sum: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    rating_x100: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    search_text: Mapped[str] = mapped_column(Text, default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Sku(Base):
    __tablename__ = "skus"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(64), unique=True)
    specs: Mapped[dict[str, str]] = mapped_column(Json, default=dict)
    price_cents: Mapped[int] = mapped_column(BigInteger)
    low_stock_threshold: Mapped[int] = mapped_column(Integer, default=10)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
