"""Liveness (answered by the edge), readiness and metrics.

``/readyz`` answers one of three states:

- ``ready`` (200): every check passed;
- ``degraded`` (200): only checks of stores the shop can serve without failed
  (``NON_CRITICAL``: Redis, whose absence turns the rate limits replica-local, keeps
  tokens checked against the replica's mirror and makes carts and sign-in answer 503;
  Milvus and the recommender, whose absence sends search to keyword search). ``degraded``
  lists them;
- ``not_ready`` (503): a check of the core path failed: the database (shards cannot
  commit), the actors, the permission table, or a revocation mirror that never loaded.

Each check's details and the names of the failing ones go only to a caller the edge marked
as operations (``deployments.headers``: everyone outside prod, the ops token's holder in
prod); anyone else learns the state alone. ``/metrics`` in prod is refused by the edge
without the ops token."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from actors import registry
from deployments.context import AppContext, ReadinessCheck, ctx
from deployments.errors import request_id
from deployments.services import services
from raymall import db, metrics
from raymall.errors import error_body

router = APIRouter(tags=["health"])
# checks whose failure degrades the service instead of stopping it
NON_CRITICAL = frozenset({"redis", "milvus", "recommender"})


async def check_database(app_ctx: AppContext) -> dict[str, Any]:
    await asyncio.to_thread(db.ping, app_ctx.engine)
    return {"ok": True, "dialect": app_ctx.engine.dialect.name}


async def check_redis(app_ctx: AppContext, request: Request) -> dict[str, Any]:
    """Redis answers, and this replica uses it (its feed is subscribed and no command
    failed just now); otherwise the rate limits are replica-local."""
    health = services(request).redis_health
    if health is not None and not health.usable():
        return {"ok": False, "down_since_ms": health.down_since_ms(), "ratelimit_mode": "local"}
    await app_ctx.redis.ping()
    return {"ok": True, "ratelimit_mode": "shared"}


async def _run(name: str, check: Any, timeout_s: float) -> tuple[str, dict[str, Any]]:
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(check(), timeout_s)
    except Exception as exc:  # any failure means "not ready"; report it, never raise
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return name, result


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    app_ctx = ctx(request)
    timeout_s = app_ctx.settings.readiness_timeout_s
    checks: dict[str, ReadinessCheck] = {
        "database": lambda: check_database(app_ctx),
        "redis": lambda: check_redis(app_ctx, request),
        "actors": lambda: registry.check_all(app_ctx.settings),
    }
    checks.update(services(request).readiness)
    results = dict(await asyncio.gather(*(_run(n, c, timeout_s) for n, c in checks.items())))
    details = getattr(request.state, "ops", True)
    failed = sorted(n for n, r in results.items() if not r["ok"])
    if not failed or all(n in NON_CRITICAL for n in failed):
        status = "degraded" if failed else "ready"
        if not details:
            return JSONResponse({"status": status})
        body: dict[str, Any] = {"status": status, "checks": results}
        if failed:
            body["degraded"] = failed
        return JSONResponse(body)
    if not details:
        return JSONResponse(error_body(request_id(request), "not_ready", "not ready"), 503)
    body = error_body(
        request_id(request), "not_ready", f"not ready: {', '.join(failed)}", {"checks": results}
    )
    return JSONResponse(body, status_code=503)


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
