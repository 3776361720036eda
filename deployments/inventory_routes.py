"""HTTP routes: admin stock views and adjustments.

- ``GET /admin/inventory/{sku_id}`` (``inventory:read``): the owning shard's in-memory
  counters next to the committed database row and the latest adjustments;
- ``POST /admin/inventory/{sku_id}/adjust`` (``inventory:adjust``) with
  ``{"delta": int != 0, "reason": str}`` and an optional ``Idempotency-Key`` header: a
  restock or write-off through the owning shard (never takes available below zero). The
  same header replayed answers the first result without a second effect; reused with a
  different delta it is refused (409 ``idempotency_key_reused``).

``startup`` builds the replica's ``InventoryClient`` (``app_ctx.services["inventory"]``),
which other areas (orders, flash sales, catalog) use too.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from actors.inventory_client import InventoryClient
from deployments.context import AppContext, ctx
from deployments.security import Principal, require
from models import Inventory, InventoryAdjustment
from raymall.errors import NotFound

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


async def startup(app_ctx: AppContext) -> None:
    client = InventoryClient(app_ctx.settings)
    app_ctx.services["inventory"] = client
    app_ctx.readiness["inventory"] = client.check


def _database_view(app_ctx: AppContext, sku_id: int) -> dict[str, Any] | None:
    with app_ctx.sessions() as session:
        row = session.get(Inventory, sku_id)
        if row is None:
            return None
        recent = session.scalars(
            select(InventoryAdjustment)
            .where(InventoryAdjustment.sku_id == sku_id)
            .order_by(InventoryAdjustment.id.desc())
            .limit(10)
        ).all()
        return {
            "shard": row.shard,
            "total": row.total,
            "available": row.available,
            "reserved": row.reserved,
            "sold": row.sold,
            "version": row.version,
            "updated_ms": row.updated_ms,
            "recent_adjustments": [
                {
                    "delta": a.delta,
                    "reason": a.reason,
                    "actor_id": a.actor_id,
                    "created_ms": a.created_ms,
                }
                for a in recent
            ],
        }


async def _view(request: Request, sku_id: int) -> dict[str, Any]:
    app_ctx = ctx(request)
    client: InventoryClient = app_ctx.service("inventory")
    memory = (await client.snapshot([sku_id])).get(sku_id)
    database = await app_ctx.in_thread(_database_view, app_ctx, sku_id)
    if memory is None and database is None:
        raise NotFound(f"SKU {sku_id} has no inventory")
    counters = ("total", "available", "reserved", "sold", "version")
    in_sync = (
        memory is not None
        and database is not None
        and all(memory[c] == database[c] for c in counters)
    )
    return {
        "sku_id": sku_id,
        "shard": client.shard_of(sku_id),
        "memory": memory,
        "database": database,
        "in_sync": in_sync,
    }


@router.get("/admin/inventory/{sku_id}")
async def get_stock(
    request: Request,
    sku_id: SkuId,
    _: Principal = Depends(require("inventory", "read")),
) -> dict[str, Any]:
    return await _view(request, sku_id)


@router.post("/admin/inventory/{sku_id}/adjust")
async def adjust_stock(
    request: Request,
    sku_id: SkuId,
    body: AdjustBody,
    idempotency_key: IdemKey = None,
    principal: Principal = Depends(require("inventory", "adjust")),
) -> dict[str, Any]:
    client: InventoryClient = ctx(request).service("inventory")
    key = f"adj:{sku_id}:{idempotency_key or uuid.uuid4().hex}"
    await client.adjust(key, sku_id, body.delta, body.reason, principal.user_id)
    view = await _view(request, sku_id)
    return {"key": key, "delta": body.delta, **view}
