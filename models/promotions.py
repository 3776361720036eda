"""Automatic promotions, coupon campaigns and customers' coupons.

A campaign's ``claimed`` (and its total, limit, claim window and active flag) are written
only by the inventory shard that owns the campaign (``actors.coupon_store``), in the group
commit that decides the claims; a coupon row is inserted in that same transaction. A
coupon's ``state`` moves only by compare-and-set (``UPDATE ... WHERE id = ? AND state =
?``) in the transaction of its order's placement, payment, cancellation or timeout
(``raymall.domain.coupons``). Rules and scopes are JSON (``raymall.domain.promotions``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, ExactKey, Json


class Promotion(Base):
    """An automatic promotion: applies to every order in its scope and window, no code."""

    __tablename__ = "promotions"
    __table_args__ = (Index("ix_promotions_active_ends", "active", "ends_ms"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    rule: Mapped[dict[str, Any]] = mapped_column(Json)
    scope: Mapped[dict[str, Any]] = mapped_column(Json)
    starts_ms: Mapped[int] = mapped_column(BigInteger)
    ends_ms: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    flash_ok: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class CouponCampaign(Base):
    __tablename__ = "coupon_campaigns"
    __table_args__ = (Index("ix_coupon_campaigns_active_claim_ends", "active", "claim_ends_ms"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    rule: Mapped[dict[str, Any]] = mapped_column(Json)
    scope: Mapped[dict[str, Any]] = mapped_column(Json)
    total: Mapped[int] = mapped_column(BigInteger)
    claimed: Mapped[int] = mapped_column(BigInteger, default=0)
    per_user_limit: Mapped[int] = mapped_column(Integer, default=1)
    claim_starts_ms: Mapped[int] = mapped_column(BigInteger)
    claim_ends_ms: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    valid_from_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    valid_until_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    valid_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    code: Mapped[str | None] = mapped_column(ExactKey(64), nullable=True, unique=True)
    stacks: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    with_promotions: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    flash_ok: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class UserCoupon(Base):
    """One claimed coupon. ``id`` is a snowflake from the owning shard; ``claim_key`` makes
    a claim idempotent per (campaign, user)."""

    __tablename__ = "user_coupons"
    __table_args__ = (
        UniqueConstraint("campaign_id", "user_id", "claim_key", name="uq_user_coupons_claim"),
        Index("ix_user_coupons_user_state", "user_id", "state"),
        Index("ix_user_coupons_campaign_state", "campaign_id", "state"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("coupon_campaigns.id"))
    user_id: Mapped[int] = mapped_column(BigInteger)
    claim_key: Mapped[str] = mapped_column(ExactKey(128))
    state: Mapped[str] = mapped_column(String(16), default="available")
    order_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    valid_from_ms: Mapped[int] = mapped_column(BigInteger)
    valid_until_ms: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
