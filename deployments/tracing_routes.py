"""HTTP routes: the tracing sampling ratio, changed while the shop runs.

- ``GET /admin/tracing`` (``tracing:manage``): whether this replica exports spans, the
  ratio in force, the settings' ratio, and an operator's override with its time left;
- ``PUT /admin/tracing`` (``tracing:manage``) with ``{"sample_ratio": 0..1}`` and an
  optional ``ttl_s`` (the override lapses back to the settings' ratio after it): stored in
  Redis, applied by this replica at once and by every other replica within one poll of
  its ``deployments.drain.ReplicaWatch`` (``POLL_S``). 409 ``tracing_off`` when no exporter
  is configured: a ratio would trace nothing;
- ``DELETE /admin/tracing`` (``tracing:manage``): back to the settings' ratio.

Only the edge samples (``raymall.tracing.sample_root``), so the ratio is the whole switch:
actors, group commits and consumers follow the sampled requests' parents.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from deployments.context import ctx
from deployments.drain import POLL_S, trace_ratio_key
from deployments.security import Principal, require
from raymall import tracing
from raymall.errors import TracingOff

router = APIRouter(tags=["tracing"])
MAX_TTL_S = 7 * 86400


class RatioBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sample_ratio: float = Field(ge=0, le=1, description="share of requests traced at the edge")
    ttl_s: int | None = Field(
        None, ge=1, le=MAX_TTL_S, description="seconds until the settings' ratio is back"
    )


async def state(request: Request) -> dict[str, Any]:
    app_ctx = ctx(request)
    key = trace_ratio_key(app_ctx.settings)
    pipe = app_ctx.redis.pipeline(transaction=False)
    pipe.get(key)
    pipe.ttl(key)
    stored, ttl = await pipe.execute()
    return {
        "exporting": tracing.enabled,
        "sample_ratio": tracing.sample_ratio,
        "configured_ratio": app_ctx.settings.trace_sample_ratio,
        "override": None if stored is None else float(stored),
        "override_ttl_s": ttl if stored is not None and ttl >= 0 else None,
        "applies_within_s": POLL_S,
    }


@router.get("/admin/tracing")
async def get_tracing(
    request: Request, _: Principal = Depends(require("tracing", "manage"))
) -> dict[str, Any]:
    return await state(request)


@router.put("/admin/tracing")
async def set_tracing(
    request: Request, body: RatioBody, _: Principal = Depends(require("tracing", "manage"))
) -> dict[str, Any]:
    if not tracing.enabled:
        raise TracingOff(
            "tracing is off: set RAYMALL_TRACE_OTLP_ENDPOINT or RAYMALL_TRACE_FILE to export spans"
        )
    app_ctx = ctx(request)
    await app_ctx.redis.set(
        trace_ratio_key(app_ctx.settings), repr(body.sample_ratio), ex=body.ttl_s
    )
    tracing.set_sample_ratio(body.sample_ratio)
    return await state(request)


@router.delete("/admin/tracing", status_code=204)
async def reset_tracing(
    request: Request, _: Principal = Depends(require("tracing", "manage"))
) -> Response:
    app_ctx = ctx(request)
    await app_ctx.redis.delete(trace_ratio_key(app_ctx.settings))
    tracing.set_sample_ratio(None)
    return Response(status_code=204)
