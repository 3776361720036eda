"""HTTP routes: admin stock views and adjustments.

- ``GET /admin/inventory/{sku_id}`` (``inventory:read``): the owning shard's in-memory
  counters next to the committed database row and the latest adjustments;
- ``POST /admin/inventory/{sku_id}/adjust`` (``inventory:adjust``) with
  ``{"delta": int != 0, "reason": str}`` and an optional ``Idempotency-Key`` header: a
  restock or write-off through the owning shard (never takes available below zero). The
  same header replayed answers the first result without a second effect; reused with a
  different delta it is refused (409 ``idempotency_key_reused``).

Both go through ``Services.stock`` (``raymall.catalog.stock_admin``) over the replica's
one ``InventoryClient``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from deployments.security import Principal, require
from deployments.services import services

router = APIRouter(tags=["inventory"])
MAX_DELTA = 1_000_000_000
SkuId = Annotated[int, Path(ge=1, le=2**63 - 1)]
IdemKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$"),
]


class AdjustBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delta: int = Field(ge=-MAX_DELTA, le=MAX_DELTA, description="units to add (or remove)")
    reason: str = Field(min_length=1, max_length=255)

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("delta must not be zero")
        return v

    @field_validator("reason")
    @classmethod
    def _reason_text(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("reason must not be blank")
        return v


@router.get("/admin/inventory/{sku_id}")
async def get_stock(
    request: Request,
    sku_id: SkuId,
    _: Principal = Depends(require("inventory", "read")),
) -> dict[str, Any]:
    return await services(request).stock.view(sku_id)


@router.post("/admin/inventory/{sku_id}/adjust")
async def adjust_stock(
    request: Request,
    sku_id: SkuId,
    body: AdjustBody,
    idempotency_key: IdemKey = None,
    principal: Principal = Depends(require("inventory", "adjust")),
) -> dict[str, Any]:
    return await services(request).stock.adjust(
        sku_id, body.delta, body.reason, principal.user_id, idempotency_key
    )
