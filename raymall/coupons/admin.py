"""Administration of coupon campaigns and automatic promotions (a replica's side).

A campaign is written inactive; its quantity-deciding fields (total, per-user limit,
claim window, active) change only through its owning shard (``CouponUpdate``), which
writes them in the same group commit as the claims it decides, so a total is never set
below the claims made and a claim is never decided against a limit the shard has not
seen. Descriptive fields (title, rule, scope, validity, code, stacking) are written here
and apply to coupons as they are priced. Promotions are plain rows: pricing reads the
running ones (``raymall.coupons.pricing``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import Promotion
from raymall.coupons import repo
from raymall.coupons.service import CouponService
from raymall.db import transaction
from raymall.domain import outcomes
from raymall.domain.coupons import Campaign
from raymall.domain.promotions import Rule, Scope
from raymall.domain.shard_ops import CouponUpdate, CouponWarm
from raymall.errors import AlreadyExists, ValidationFailed
from raymall.ids import now_ms

OWNER_FIELDS = ("total", "per_user_limit", "claim_starts_ms", "claim_ends_ms")
DESCRIPTIVE_FIELDS = (
    "title",
    "rule",
    "scope",
    "valid_from_ms",
    "valid_until_ms",
    "valid_days",
    "code",
    "stacks",
    "with_promotions",
    "flash_ok",
)


def check_rule(rule: dict[str, Any]) -> dict[str, Any]:
    try:
        parsed = Rule.from_dict(rule)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationFailed(f"invalid rule: {exc}") from None
    problems = parsed.problems()
    if problems:
        raise ValidationFailed("invalid rule", details={"problems": problems})
    return parsed.as_dict()


def check_scope(scope: dict[str, Any]) -> dict[str, Any]:
    try:
        return Scope.from_dict(scope).as_dict()
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"invalid scope: {exc}") from None


def _check_validity(v: dict[str, Any]) -> None:
    fixed = v.get("valid_until_ms") is not None
    days = v.get("valid_days") is not None
    if fixed == days:
        raise ValidationFailed("give either valid_until_ms (a fixed window) or valid_days")
    if fixed and (v.get("valid_from_ms") or 0) >= v["valid_until_ms"]:
        raise ValidationFailed("valid_until_ms must be after valid_from_ms")


class CouponAdmin:
    def __init__(self, sessions: sessionmaker[Session], coupons: CouponService) -> None:
        self.sessions = sessions
        self.coupons = coupons

    async def _tx(self, fn: Callable[[Session], Any]) -> Any:
        def run() -> Any:
            with transaction(self.sessions) as session:
                return fn(session)

        return await asyncio.to_thread(run)

    # ---- campaigns ----------------------------------------------------------------------
    async def create_campaign(self, values: dict[str, Any], *, activate: bool) -> dict[str, Any]:
        values = dict(values)
        values["rule"] = check_rule(values["rule"])
        values["scope"] = check_scope(values.get("scope") or {"shop": True})
        _check_validity(values)
        if values["claim_ends_ms"] <= values["claim_starts_ms"]:
            raise ValidationFailed("claim_ends_at_ms must be after claim_starts_at_ms")
        try:
            campaign: Campaign = await self._tx(lambda s: repo.insert_campaign(s, values, now_ms()))
        except IntegrityError:
            raise AlreadyExists("a campaign already has this code") from None
        shard = self.coupons.shard_of(campaign.id)
        await self.coupons.shards.submit(shard, CouponWarm(campaign.id))
        if activate:
            return await self.set_active(campaign.id, True)
        return campaign.view(now_ms(), admin=True)

    async def _owner_update(self, campaign: Campaign) -> None:
        op = CouponUpdate(
            campaign.id,
            campaign.total,
            campaign.per_user_limit,
            campaign.claim_starts_ms,
            campaign.claim_ends_ms,
            campaign.active,
        )
        code = str(await self.coupons.shards.submit(self.coupons.shard_of(campaign.id), op))
        if code == "invalid":
            raise ValidationFailed(
                "the total cannot go below the coupons claimed, the limit must be at least 1 "
                "and the claim window must end after it starts",
                details={"claimed": campaign.claimed},
            )
        outcomes.raise_for(code, key=f"campaign:{campaign.id}")
        self.coupons.forget(campaign.id)

    async def update_campaign(self, campaign_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        current: Campaign = await self._tx(lambda s: repo.get_campaign(s, campaign_id))
        owner = {k: v for k, v in changes.items() if k in OWNER_FIELDS}
        described = {k: v for k, v in changes.items() if k in DESCRIPTIVE_FIELDS}
        if "rule" in described:
            described["rule"] = check_rule(described["rule"])
        if "scope" in described:
            described["scope"] = check_scope(described["scope"])
        if {"valid_from_ms", "valid_until_ms", "valid_days"} & described.keys():
            merged = {
                "valid_from_ms": current.valid_from_ms,
                "valid_until_ms": current.valid_until_ms,
                "valid_days": current.valid_days,
                **{k: described[k] for k in described if k.startswith("valid")},
            }
            _check_validity(merged)
        if owner:
            for name, value in owner.items():
                setattr(current, name, value)
            await self._owner_update(current)
        if described:
            try:
                await self._tx(lambda s: repo.edit_campaign(s, campaign_id, described, now_ms()))
            except IntegrityError:
                raise AlreadyExists("a campaign already has this code") from None
            self.coupons.forget(campaign_id)
        return await self.campaign_stats(campaign_id)

    async def set_active(self, campaign_id: int, active: bool) -> dict[str, Any]:
        current: Campaign = await self._tx(lambda s: repo.get_campaign(s, campaign_id))
        current.active = active
        await self._owner_update(current)
        return await self.campaign_stats(campaign_id)

    async def campaign_stats(self, campaign_id: int) -> dict[str, Any]:
        """The campaign (as written now) with its coupons per state."""

        def read(session: Session) -> tuple[Campaign, dict[str, int]]:
            campaign = repo.get_campaign(session, campaign_id)
            return campaign, repo.usage(session, [campaign_id])[campaign_id]

        campaign, by_state = await self._tx(read)
        view = campaign.view(now_ms(), admin=True)
        view["coupons"] = {
            state: by_state.get(state, 0) for state in ("available", "locked", "used")
        }
        view["used"] = by_state.get("used", 0)
        return view

    async def list_campaigns(self, limit: int, before_id: int | None) -> dict[str, Any]:
        found: list[Campaign] = await self._tx(
            lambda s: repo.list_campaigns(s, limit=limit, before_id=before_id)
        )
        now = now_ms()
        items = [c.view(now, admin=True) for c in found]
        return {"items": items, "next_cursor": items[-1]["id"] if len(items) == limit else None}

    # ---- promotions -----------------------------------------------------------------------
    async def create_promotion(self, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        values["rule"] = check_rule(values["rule"])
        values["scope"] = check_scope(values.get("scope") or {"shop": True})
        if values["ends_ms"] <= values["starts_ms"]:
            raise ValidationFailed("ends_at_ms must be after starts_at_ms")

        def write(session: Session) -> dict[str, Any]:
            now = now_ms()
            row = Promotion(**values, created_ms=now, updated_ms=now)
            session.add(row)
            session.flush()
            return repo.promotion_view(row, now)

        return await self._tx(write)  # type: ignore[no-any-return]

    async def update_promotion(self, promotion_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        if "rule" in changes:
            changes["rule"] = check_rule(changes["rule"])
        if "scope" in changes:
            changes["scope"] = check_scope(changes["scope"])

        def write(session: Session) -> dict[str, Any]:
            row = repo.get_promotion(session, promotion_id)
            for name, value in changes.items():
                setattr(row, name, value)
            if row.ends_ms <= row.starts_ms:
                raise ValidationFailed("ends_at_ms must be after starts_at_ms")
            row.updated_ms = now_ms()
            session.flush()
            return repo.promotion_view(row, now_ms())

        return await self._tx(write)  # type: ignore[no-any-return]

    async def delete_promotion(self, promotion_id: int) -> None:
        """Remove a promotion (orders keep what it took off: their lines store it). A
        campaign is never deleted, only deactivated: its coupons and its shard refer to it."""

        def write(session: Session) -> None:
            session.delete(repo.get_promotion(session, promotion_id))

        await self._tx(write)

    async def list_promotions(self, limit: int, before_id: int | None) -> dict[str, Any]:
        def read(session: Session) -> list[dict[str, Any]]:
            now = now_ms()
            found = repo.list_promotions(session, limit=limit, before_id=before_id)
            return [repo.promotion_view(r, now) for r in found]

        items = await self._tx(read)
        return {"items": items, "next_cursor": items[-1]["id"] if len(items) == limit else None}
