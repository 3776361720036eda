"""Liveness (answered by the edge), readiness and metrics.

``/readyz`` names each check and its error only to a caller the edge marked as operations
(``deployments.headers``: everyone outside prod, the ops token's holder in prod); anyone
else learns ready (200) or not (503) and nothing of the internals. ``/metrics`` in prod is
refused by the edge without the ops token."""

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
CHECK_TIMEOUT_S = 2.0


async def check_database(app_ctx: AppContext) -> dict[str, Any]:
    await asyncio.to_thread(db.ping, app_ctx.engine)
    return {"ok": True, "dialect": app_ctx.engine.dialect.name}


async def check_redis(app_ctx: AppContext) -> dict[str, Any]:
    await app_ctx.redis.ping()
    return {"ok": True}


async def _run(name: str, check: Any) -> tuple[str, dict[str, Any]]:
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except Exception as exc:  # any failure means "not ready"; report it, never raise
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return name, result


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    app_ctx = ctx(request)
    checks: dict[str, ReadinessCheck] = {
        "database": lambda: check_database(app_ctx),
        "redis": lambda: check_redis(app_ctx),
        "actors": lambda: registry.check_all(app_ctx.settings),
    }
    checks.update(services(request).readiness)
    results = dict(await asyncio.gather(*(_run(n, c) for n, c in checks.items())))
    details = getattr(request.state, "ops", True)
    if all(r["ok"] for r in results.values()):
        return JSONResponse(
            {"status": "ready", "checks": results} if details else {"status": "ready"}
        )
    if not details:
        return JSONResponse(error_body(request_id(request), "not_ready", "not ready"), 503)
    down = sorted(n for n, r in results.items() if not r["ok"])
    body = error_body(
        request_id(request), "not_ready", f"not ready: {', '.join(down)}", {"checks": results}
    )
    return JSONResponse(body, status_code=503)


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    payload, content_type = metrics.render()
    return Response(payload, media_type=content_type)
