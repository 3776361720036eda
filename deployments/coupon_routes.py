"""HTTP routes: coupon campaigns, the customer's coupons, and promotions.

Public: ``GET /coupon-campaigns`` (claimable campaigns without a code: rule, scope,
remaining, windows), ``GET /promotions`` (the automatic promotions running now).
Users (``coupons:use``): ``POST /coupon-campaigns/{id}/claim`` (optional
``Idempotency-Key``) answers 201 with the coupon (``Idempotent-Replayed: true`` on a
replay); ``POST /me/coupons/redeem {"code"}`` claims by a campaign's public code;
``GET /me/coupons`` (``?state=available|locked|used|expired``) is the wallet. Refusals:
404 ``campaign_not_found`` / ``coupon_code_invalid``, 409 ``claim_not_started`` /
``claim_ended`` / ``campaign_inactive`` / ``coupons_sold_out`` / ``coupon_limit_reached``,
503 ``unavailable`` (retry with the same key).
Admins (``promotions:manage``): ``POST/GET /admin/coupon-campaigns``,
``GET/PATCH /admin/coupon-campaigns/{id}`` (with claim and use statistics),
``POST /admin/coupon-campaigns/{id}/activate`` and ``/deactivate``; the same for
``/admin/promotions``, which can also be deleted (a campaign is deactivated, never
deleted: its coupons refer to it). Coupon ids are strings in bodies (64-bit).

The plainest claims (no body, no query) are answered below FastAPI by ``ClaimShortcut``:
the same permission, service call and answers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from deployments.edge import Scope, Send, Shortcut, send_json_body
from deployments.errors import domain_error_json, json_bytes
from deployments.security import PUBLIC_ROUTES, Principal, public, require
from deployments.services import Services, services
from raymall.auth.service import AuthService
from raymall.coupons.admin import CouponAdmin
from raymall.coupons.service import CouponService
from raymall.faults import to_domain
from raymall.ids import now_ms

router = APIRouter(tags=["coupons"])
public("GET", "/coupon-campaigns")
public("GET", "/promotions")

MAX_ID = 2**63 - 1
MAX_MS = 2**62
CampaignId = Annotated[int, Path(ge=1, le=MAX_ID)]
PromotionId = Annotated[int, Path(ge=1, le=MAX_ID)]
IdemKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$"),
]
CLAIM_PATH = "/coupon-campaigns/{campaign_id}/claim"
CLAIM_PERMISSION = ("coupons", "use")
Customer = Annotated[Principal, Depends(require(*CLAIM_PERMISSION))]
Manager = Annotated[Principal, Depends(require("promotions", "manage"))]
Ids = Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Field(max_length=200)]


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    spend_cents: int = Field(ge=0, le=2**53)
    off_cents: int = Field(ge=1, le=2**53)


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["amount_off", "percent_off", "tiers", "free_shipping"]
    amount_cents: int = Field(0, ge=0, le=2**53)
    percent: int = Field(0, ge=0, le=100)
    cap_cents: int | None = Field(None, ge=1, le=2**53)
    min_spend_cents: int = Field(0, ge=0, le=2**53)
    tiers: list[Tier] = Field(default_factory=list, max_length=20)

    def plain(self) -> dict[str, Any]:
        out = self.model_dump()
        out["tiers"] = [[t.spend_cents, t.off_cents] for t in self.tiers]
        return out


class ScopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    shop: bool = True
    category_ids: Ids = Field(default_factory=list)
    brand_ids: Ids = Field(default_factory=list)
    product_ids: Ids = Field(default_factory=list)
    sku_ids: Ids = Field(default_factory=list)
    exclude_category_ids: Ids = Field(default_factory=list)
    exclude_brand_ids: Ids = Field(default_factory=list)
    exclude_product_ids: Ids = Field(default_factory=list)
    exclude_sku_ids: Ids = Field(default_factory=list)


Ms = Annotated[int, Field(ge=0, le=MAX_MS)]
Code = Annotated[str, Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    title: str = Field("", max_length=200)
    rule: RuleIn
    scope: ScopeIn = Field(default_factory=ScopeIn)
    total: int = Field(ge=1, le=10**9)
    per_user_limit: int = Field(1, ge=1, le=10**6)
    claim_starts_at_ms: Ms
    claim_ends_at_ms: Ms
    valid_from_ms: Ms | None = None
    valid_until_ms: Ms | None = None
    valid_days: int | None = Field(None, ge=1, le=3_650)
    code: Code | None = None
    stacks: bool = False
    with_promotions: bool = True
    flash_ok: bool = False
    active: bool = True


class CampaignPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    title: str | None = Field(None, max_length=200)
    rule: RuleIn | None = None
    scope: ScopeIn | None = None
    total: int | None = Field(None, ge=1, le=10**9)
    per_user_limit: int | None = Field(None, ge=1, le=10**6)
    claim_starts_at_ms: Ms | None = None
    claim_ends_at_ms: Ms | None = None
    valid_from_ms: Ms | None = None
    valid_until_ms: Ms | None = None
    valid_days: int | None = Field(None, ge=1, le=3_650)
    code: Code | None = None
    stacks: bool | None = None
    with_promotions: bool | None = None
    flash_ok: bool | None = None


class PromotionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    title: str = Field("", max_length=200)
    rule: RuleIn
    scope: ScopeIn = Field(default_factory=ScopeIn)
    starts_at_ms: Ms
    ends_at_ms: Ms
    flash_ok: bool = False
    active: bool = True


class PromotionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    title: str | None = Field(None, max_length=200)
    rule: RuleIn | None = None
    scope: ScopeIn | None = None
    starts_at_ms: Ms | None = None
    ends_at_ms: Ms | None = None
    flash_ok: bool | None = None


class RedeemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    code: Code


_RENAMES = {
    "claim_starts_at_ms": "claim_starts_ms",
    "claim_ends_at_ms": "claim_ends_ms",
    "starts_at_ms": "starts_ms",
    "ends_at_ms": "ends_ms",
}


_CLEARABLE = frozenset({"valid_from_ms", "valid_until_ms", "valid_days", "code"})


def _columns(body: BaseModel, *, only_set: bool) -> dict[str, Any]:
    """A body as column values (rules and scopes as plain dicts). In a PATCH
    (``only_set``) a null clears only a validity bound or the code; elsewhere it means
    "unchanged"."""
    raw = body.model_dump(exclude_unset=only_set)
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if only_set and value is None and name not in _CLEARABLE:
            continue
        rule = getattr(body, "rule", None)
        if name == "rule" and isinstance(rule, RuleIn):
            value = rule.plain()
        out[_RENAMES.get(name, name)] = value
    return out


def _svc(request: Request) -> CouponService:
    return services(request).coupons


def _admin(request: Request) -> CouponAdmin:
    return services(request).coupon_admin


@router.get("/coupon-campaigns")
async def claimable(request: Request) -> dict[str, Any]:
    return await _svc(request).claimable()


@router.get("/promotions")
async def running_promotions(request: Request) -> dict[str, Any]:
    now = now_ms()
    found = await _admin(request).list_promotions(100, None)
    items = [p for p in found["items"] if p["status"] == "running"]
    return {"items": items, "as_of_ms": now}


@router.post(CLAIM_PATH, status_code=201)
async def claim(
    request: Request, response: Response, campaign_id: CampaignId, me: Customer, key: IdemKey = None
) -> dict[str, Any]:
    result = await _svc(request).claim(me.user_id, campaign_id, key)
    if result["replayed"]:
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.post("/me/coupons/redeem", status_code=201)
async def redeem(request: Request, response: Response, body: RedeemIn, me: Customer) -> dict:
    result = await _svc(request).redeem(me.user_id, body.code)
    if result["replayed"]:
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.get("/me/coupons")
async def my_coupons(
    request: Request,
    me: Customer,
    state: Annotated[str | None, Query(pattern="^(available|locked|used|expired)$")] = None,
) -> dict[str, Any]:
    return {"items": await _svc(request).wallet(me.user_id, state)}


# ---- administration -------------------------------------------------------------------------
@router.post("/admin/coupon-campaigns", status_code=201, tags=["admin"])
async def create_campaign(request: Request, body: CampaignIn, _: Manager) -> dict[str, Any]:
    values = _columns(body, only_set=False)
    activate = values.pop("active")
    return await _admin(request).create_campaign(values, activate=activate)


@router.get("/admin/coupon-campaigns", tags=["admin"])
async def list_campaigns(
    request: Request,
    _: Manager,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> dict[str, Any]:
    return await _admin(request).list_campaigns(limit, cursor)


@router.get("/admin/coupon-campaigns/{campaign_id}", tags=["admin"])
async def campaign_stats(request: Request, campaign_id: CampaignId, _: Manager) -> dict:
    return await _admin(request).campaign_stats(campaign_id)


@router.patch("/admin/coupon-campaigns/{campaign_id}", tags=["admin"])
async def update_campaign(
    request: Request, campaign_id: CampaignId, body: CampaignPatch, _: Manager
) -> dict[str, Any]:
    return await _admin(request).update_campaign(campaign_id, _columns(body, only_set=True))


@router.post("/admin/coupon-campaigns/{campaign_id}/activate", tags=["admin"])
async def activate_campaign(request: Request, campaign_id: CampaignId, _: Manager) -> dict:
    return await _admin(request).set_active(campaign_id, True)


@router.post("/admin/coupon-campaigns/{campaign_id}/deactivate", tags=["admin"])
async def deactivate_campaign(request: Request, campaign_id: CampaignId, _: Manager) -> dict:
    return await _admin(request).set_active(campaign_id, False)


@router.post("/admin/promotions", status_code=201, tags=["admin"])
async def create_promotion(request: Request, body: PromotionIn, _: Manager) -> dict[str, Any]:
    return await _admin(request).create_promotion(_columns(body, only_set=False))


@router.get("/admin/promotions", tags=["admin"])
async def list_promotions(
    request: Request,
    _: Manager,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> dict[str, Any]:
    return await _admin(request).list_promotions(limit, cursor)


@router.patch("/admin/promotions/{promotion_id}", tags=["admin"])
async def update_promotion(
    request: Request, promotion_id: PromotionId, body: PromotionPatch, _: Manager
) -> dict[str, Any]:
    return await _admin(request).update_promotion(promotion_id, _columns(body, only_set=True))


@router.delete("/admin/promotions/{promotion_id}", status_code=204, tags=["admin"])
async def delete_promotion(request: Request, promotion_id: PromotionId, _: Manager) -> Response:
    await _admin(request).delete_promotion(promotion_id)
    return Response(status_code=204)


@router.post("/admin/promotions/{promotion_id}/activate", tags=["admin"])
async def activate_promotion(request: Request, promotion_id: PromotionId, _: Manager) -> dict:
    return await _admin(request).update_promotion(promotion_id, {"active": True})


@router.post("/admin/promotions/{promotion_id}/deactivate", tags=["admin"])
async def deactivate_promotion(request: Request, promotion_id: PromotionId, _: Manager) -> dict:
    return await _admin(request).update_promotion(promotion_id, {"active": False})


_CLAIM = re.compile(r"/coupon-campaigns/([1-9][0-9]{0,18})/claim")
_IDEMPOTENCY_KEY = re.compile(rb"[\x21-\x7e]{1,100}")


def plain_claim_args(scope: Scope) -> tuple[int, str, str | None] | None:
    """(campaign id, bearer token, Idempotency-Key or None) of a claim in its plainest
    valid form: no query, no body, one ``Authorization: Bearer`` header, at most one valid
    ``Idempotency-Key``. None for anything else, which the app then rules on."""
    if scope["method"] != "POST" or scope.get("query_string"):
        return None
    found = _CLAIM.fullmatch(scope["path"])
    if found is None or int(found.group(1)) > MAX_ID:
        return None
    token: str | None = None
    key: str | None = None
    seen_key = False
    for name, value in scope["headers"]:
        if name == b"authorization":
            if token is not None:
                return None
            scheme, _, rest = value.partition(b" ")
            if scheme.lower() != b"bearer" or not rest.strip():
                return None
            token = rest.strip().decode("latin-1")
        elif name == b"idempotency-key":
            if seen_key or not _IDEMPOTENCY_KEY.fullmatch(value):
                return None
            seen_key = True
            key = value.decode("ascii")
        elif name == b"content-length":
            if value.strip() != b"0":
                return None
        elif name == b"transfer-encoding":
            return None
    if token is None:
        return None
    return int(found.group(1)), token, key


class ClaimShortcut:
    """``POST /coupon-campaigns/{id}/claim`` below FastAPI (``deployments.edge.Shortcut``)
    for requests ``plain_claim_args`` accepts: the access token verified and the permission
    checked as the app's dependencies do (a request failing either is declined and the app
    answers it), then the same ``CouponService.claim`` call as ``claim``, answered with the
    same status, body and headers, errors included (a claim is never run twice)."""

    path = CLAIM_PATH

    def __init__(self, auth: AuthService, svc: CouponService) -> None:
        if ("POST", CLAIM_PATH) in PUBLIC_ROUTES or ("*", CLAIM_PATH) in PUBLIC_ROUTES:
            raise RuntimeError(f"{CLAIM_PATH} must not be public")
        self.auth = auth
        self.svc = svc

    async def __call__(self, scope: Scope, send: Send) -> bool:
        args = plain_claim_args(scope)
        if args is None:
            return False
        campaign_id, token, key = args
        try:
            claims = await self.auth.authenticate(token)
            if not await self.auth.allowed(claims.role, *CLAIM_PERMISSION):
                return False
        except Exception:
            return False
        try:
            result = await self.svc.claim(claims.user_id, campaign_id, key)
        except Exception as exc:
            mapped = to_domain(exc)
            if mapped is None:
                raise  # the edge logs it and answers 500 in the one shape
            rid = str(scope.get("state", {}).get("request_id", "-"))
            status, body, headers = domain_error_json(mapped, rid, CLAIM_PATH)
            extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            await send_json_body(send, status, body, extra)
            return True
        extra = [(b"idempotent-replayed", b"true")] if result["replayed"] else []
        await send_json_body(send, 201, json_bytes(result), extra)
        return True


def shortcuts(svc: Services) -> list[Shortcut]:
    """This module's shortcuts for ``deployments.edge.Edge``."""
    return [ClaimShortcut(svc.auth, svc.coupons)]
