"""Promotion, campaign and coupon rows as the replicas read and write them (plain functions
over a Session; run them in a thread).

Replicas insert campaigns (inactive: the owning shard activates them) and promotions, edit
their descriptive fields, and read. A campaign's counters, limits, claim window and active
flag are the owning shard's (``actors.coupon_store``); coupons are inserted by that shard
and move by compare-and-set in their order's transaction (``raymall.coupons.locks``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from models import CouponCampaign, Promotion, UserCoupon
from raymall.coupons.rows import CAMPAIGN_COLUMNS, campaign_of
from raymall.domain.coupons import LOCKED, USED, Campaign, state_at
from raymall.domain.promotions import PROMOTION, Offer, Rule, Scope
from raymall.errors import (
    CampaignNotFound,
    CouponNotFound,
    CouponNotOwned,
    CouponUnavailable,
    NotFound,
)

_CAMPAIGN_SELECT = f"SELECT {CAMPAIGN_COLUMNS} FROM coupon_campaigns"


def _ph(session: Session) -> str:
    return "%s" if session.connection().dialect.paramstyle in ("format", "pyformat") else "?"


# ---- campaigns ---------------------------------------------------------------------------
def get_campaign(session: Session, campaign_id: int) -> Campaign:
    row = (
        session.connection()
        .exec_driver_sql(f"{_CAMPAIGN_SELECT} WHERE id = {_ph(session)}", (campaign_id,))
        .first()
    )
    if row is None:
        raise CampaignNotFound(
            f"coupon campaign {campaign_id} not found", details={"campaign_id": campaign_id}
        )
    return campaign_of(row)


def campaign_by_code(session: Session, code: str) -> Campaign | None:
    row = (
        session.connection()
        .exec_driver_sql(f"{_CAMPAIGN_SELECT} WHERE code = {_ph(session)}", (code,))
        .first()
    )
    return None if row is None else campaign_of(row)


def claimable(session: Session, now_ms: int, limit: int = 200) -> list[Campaign]:
    """Active campaigns whose claim window has not closed, the soonest closing first."""
    ph = _ph(session)
    rows = (
        session.connection()
        .exec_driver_sql(
            f"{_CAMPAIGN_SELECT} WHERE active = {ph} AND claim_ends_ms > {ph} "
            f"ORDER BY claim_ends_ms, id LIMIT {int(limit)}",
            (True, now_ms),
        )
        .all()
    )
    return [campaign_of(r) for r in rows]


def list_campaigns(session: Session, *, limit: int, before_id: int | None) -> list[Campaign]:
    ph = _ph(session)
    where, args = ("", ()) if before_id is None else (f" WHERE id < {ph}", (before_id,))
    rows = (
        session.connection()
        .exec_driver_sql(f"{_CAMPAIGN_SELECT}{where} ORDER BY id DESC LIMIT {int(limit)}", args)
        .all()
    )
    return [campaign_of(r) for r in rows]


def insert_campaign(session: Session, values: dict[str, Any], now_ms: int) -> Campaign:
    """A new campaign, inactive (activating it is the owning shard's ``CouponUpdate``)."""
    row = {**values, "active": False, "claimed": 0, "created_ms": now_ms, "updated_ms": now_ms}
    result = session.execute(insert(CouponCampaign).values(**row))
    return get_campaign(session, int(result.inserted_primary_key[0]))  # type: ignore[attr-defined]


def edit_campaign(session: Session, campaign_id: int, values: dict[str, Any], now_ms: int) -> None:
    """Descriptive fields only (title, rule, scope, validity, code, stacking)."""
    if values:
        session.execute(
            update(CouponCampaign)
            .where(CouponCampaign.id == campaign_id)
            .values(**values, updated_ms=now_ms)
        )


def usage(session: Session, campaign_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Coupons per state for each campaign (the claim and use statistics)."""
    out: dict[int, dict[str, int]] = {int(c): {} for c in campaign_ids}
    if not campaign_ids:
        return out
    rows = session.execute(
        select(UserCoupon.campaign_id, UserCoupon.state, func.count())
        .where(UserCoupon.campaign_id.in_(list(campaign_ids)))
        .group_by(UserCoupon.campaign_id, UserCoupon.state)
    )
    for cid, state, n in rows:
        out[int(cid)][str(state)] = int(n)
    return out


# ---- coupons -----------------------------------------------------------------------------
def claims_by_keys(session: Session, keys: Sequence[tuple[int, int, str]]) -> list[dict[str, Any]]:
    """For each (campaign, user, key): the coupon claimed under it (``coupon``, None if
    none) and how many coupons of the campaign the user holds (``held``): what a replay, or
    the desk's limit check, answers."""
    by_campaign: dict[int, set[int]] = {}
    for cid, uid, _ in keys:
        by_campaign.setdefault(cid, set()).add(uid)
    found: dict[tuple[int, int, str], dict[str, Any]] = {}
    held: dict[tuple[int, int], int] = {}
    for cid, users in by_campaign.items():
        rows = session.execute(
            select(
                UserCoupon.user_id,
                UserCoupon.claim_key,
                UserCoupon.id,
                UserCoupon.valid_from_ms,
                UserCoupon.valid_until_ms,
            ).where(UserCoupon.campaign_id == cid, UserCoupon.user_id.in_(sorted(users)))
        )
        for uid, key, coupon_id, vf, vu in rows:
            held[(cid, int(uid))] = held.get((cid, int(uid)), 0) + 1
            found[(cid, int(uid), str(key))] = {
                "coupon_id": int(coupon_id),
                "valid_from_ms": int(vf),
                "valid_until_ms": int(vu),
            }
    return [{"coupon": found.get((c, u, k)), "held": held.get((c, u), 0)} for c, u, k in keys]


def campaign_claims(
    session: Session, campaign_id: int
) -> tuple[dict[tuple[int, str], dict[str, Any]], dict[int, int]]:
    """Every claim of a campaign by (user, key), with what a replay answers, and the number
    of coupons each user holds (a replica's snapshot under a sold-out lease)."""
    rows = session.execute(
        select(
            UserCoupon.user_id,
            UserCoupon.claim_key,
            UserCoupon.id,
            UserCoupon.valid_from_ms,
            UserCoupon.valid_until_ms,
        ).where(UserCoupon.campaign_id == campaign_id)
    )
    found: dict[tuple[int, str], dict[str, Any]] = {}
    held: dict[int, int] = {}
    for uid, key, coupon_id, vf, vu in rows:
        held[int(uid)] = held.get(int(uid), 0) + 1
        found[(int(uid), str(key))] = {
            "coupon_id": int(coupon_id),
            "valid_from_ms": int(vf),
            "valid_until_ms": int(vu),
        }
    return found, held


def coupon_view(row: UserCoupon, campaign: Campaign | None, now_ms: int) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": str(row.id),
        "campaign_id": int(row.campaign_id),
        "state": state_at(row.state, int(row.valid_until_ms), now_ms),
        "order_id": None if row.order_id is None else str(row.order_id),
        "valid_from_ms": int(row.valid_from_ms),
        "valid_until_ms": int(row.valid_until_ms),
        "claimed_ms": int(row.created_ms),
    }
    if campaign is not None:
        view.update(
            title=campaign.title,
            rule=campaign.rule.as_dict(),
            scope=campaign.scope.as_dict(),
            stacks=campaign.stacks,
            with_promotions=campaign.with_promotions,
        )
    return view


def wallet(
    session: Session, user_id: int, now_ms: int, state: str | None = None
) -> list[dict[str, Any]]:
    """The user's coupons, newest first, each with its state as the user sees it."""
    rows = list(
        session.scalars(
            select(UserCoupon).where(UserCoupon.user_id == user_id).order_by(UserCoupon.id.desc())
        )
    )
    campaigns = {c.id: c for c in campaigns_by_ids(session, {int(r.campaign_id) for r in rows})}
    views = [coupon_view(r, campaigns.get(int(r.campaign_id)), now_ms) for r in rows]
    return [v for v in views if state is None or v["state"] == state]


def campaigns_by_ids(session: Session, ids: set[int]) -> list[Campaign]:
    if not ids:
        return []
    marks = ", ".join([_ph(session)] * len(ids))
    rows = (
        session.connection()
        .exec_driver_sql(f"{_CAMPAIGN_SELECT} WHERE id IN ({marks})", tuple(sorted(ids)))
        .all()
    )
    return [campaign_of(r) for r in rows]


def usable_coupons(session: Session, user_id: int, now_ms: int) -> list[Offer]:
    """The user's available coupons that are valid now, as pricing offers. Every cart view
    and quote of a signed-in customer asks, so it is one plain statement (no ORM objects),
    and most customers, who hold none, cost that one statement only."""
    ph = _ph(session)
    rows = (
        session.connection()
        .exec_driver_sql(
            "SELECT id, campaign_id, valid_from_ms, valid_until_ms FROM user_coupons "
            f"WHERE user_id = {ph} AND state = 'available' AND valid_until_ms > {ph}",
            (user_id, now_ms),
        )
        .all()
    )
    campaigns = {c.id: c for c in campaigns_by_ids(session, {int(r[1]) for r in rows})}
    return [
        campaigns[int(r[1])].offer(int(r[0]), int(r[2]), int(r[3]))
        for r in rows
        if int(r[1]) in campaigns
    ]


def named_coupons(session: Session, user_id: int, coupon_ids: Sequence[int]) -> list[Offer]:
    """The named coupons as offers; NotFound / Forbidden / unavailable refusals first."""
    rows = {
        int(r.id): r
        for r in session.scalars(select(UserCoupon).where(UserCoupon.id.in_(list(coupon_ids))))
    }
    campaigns = {
        c.id: c for c in campaigns_by_ids(session, {int(r.campaign_id) for r in rows.values()})
    }
    out = []
    for cid in coupon_ids:
        row = rows.get(cid)
        if row is None:
            raise CouponNotFound(f"coupon {cid} not found", details={"coupon_id": str(cid)})
        if int(row.user_id) != user_id:
            raise CouponNotOwned(f"coupon {cid} is not yours", details={"coupon_id": str(cid)})
        if row.state in (LOCKED, USED):
            raise CouponUnavailable(
                f"coupon {cid} is {row.state}",
                details={"coupon_id": str(cid), "state": row.state},
            )
        campaign = campaigns[int(row.campaign_id)]
        out.append(campaign.offer(cid, int(row.valid_from_ms), int(row.valid_until_ms)))
    return out


# ---- promotions --------------------------------------------------------------------------
def promotion_offer(row: Promotion) -> Offer:
    return Offer(
        kind=PROMOTION,
        ref=int(row.id),
        rule=Rule.from_dict(row.rule),
        scope=Scope.from_dict(row.scope),
        starts_ms=int(row.starts_ms),
        ends_ms=int(row.ends_ms),
        title=row.title,
        flash_ok=bool(row.flash_ok),
    )


def promotion_view(row: Promotion, now_ms: int) -> dict[str, Any]:
    status = (
        "inactive"
        if not row.active
        else "scheduled"
        if now_ms < row.starts_ms
        else "ended"
        if now_ms >= row.ends_ms
        else "running"
    )
    return {
        "id": int(row.id),
        "title": row.title,
        "rule": row.rule,
        "scope": row.scope,
        "starts_at_ms": int(row.starts_ms),
        "ends_at_ms": int(row.ends_ms),
        "active": bool(row.active),
        "flash_ok": bool(row.flash_ok),
        "status": status,
    }


def running_promotions(session: Session, now_ms: int) -> list[Offer]:
    rows = session.scalars(
        select(Promotion).where(
            Promotion.active.is_(True), Promotion.starts_ms <= now_ms, Promotion.ends_ms > now_ms
        )
    )
    return [promotion_offer(r) for r in rows]


def get_promotion(session: Session, promotion_id: int) -> Promotion:
    row = session.get(Promotion, promotion_id, populate_existing=True)
    if row is None:
        raise NotFound(f"promotion {promotion_id} not found")
    return row


def list_promotions(session: Session, *, limit: int, before_id: int | None) -> list[Promotion]:
    stmt = select(Promotion).order_by(Promotion.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(Promotion.id < before_id)
    return list(session.scalars(stmt))
