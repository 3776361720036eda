"""``/readyz``'s three states: ready, degraded (200, a non-critical store down, named only
to operations), not ready (503, the core path cannot be served)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI

from deployments import errors, health
from deployments.headers import HttpPolicy
from tests.unit.test_edge_hardening import OPS, client_for

DOWN = {"database": False, "redis": False, "actors": False, "milvus": False}


@pytest.fixture()
def app(monkeypatch: pytest.MonkeyPatch) -> tuple[FastAPI, dict[str, bool]]:
    down = dict(DOWN)

    def check(name: str) -> Any:
        async def run(*_args: Any, **_kw: Any) -> dict[str, Any]:
            if down[name]:
                raise ConnectionError(f"{name} at 10.0.0.9 refused")
            return {"ok": True}

        return run

    monkeypatch.setattr(health, "check_database", check("database"))
    monkeypatch.setattr(health, "check_redis", check("redis"))
    monkeypatch.setattr(health.registry, "check_all", check("actors"))
    app = FastAPI()
    errors.install(app)
    app.include_router(health.router)
    app.state.ctx = SimpleNamespace(settings=SimpleNamespace(readiness_timeout_s=2.0))
    app.state.services = SimpleNamespace(readiness={"milvus": check("milvus")})
    return app, down


def test_a_non_critical_store_down_is_degraded_and_named_only_to_operations(
    app: tuple[FastAPI, dict[str, bool]],
) -> None:
    fastapi_app, down = app
    prod = client_for(HttpPolicy(ops_closed=True, ops_token=OPS), fastapi_app)
    ops = {"Authorization": f"Bearer {OPS}"}
    assert prod.get("/readyz", headers=ops).json()["status"] == "ready"
    down["redis"] = True
    public = prod.get("/readyz")
    assert public.status_code == 200 and public.json() == {"status": "degraded"}
    detailed = prod.get("/readyz", headers=ops)
    assert detailed.status_code == 200
    body = detailed.json()
    assert body["status"] == "degraded" and body["degraded"] == ["redis"]
    assert "10.0.0.9" in body["checks"]["redis"]["error"]
    down["milvus"] = True
    assert prod.get("/readyz", headers=ops).json()["degraded"] == ["milvus", "redis"]


@pytest.mark.parametrize("critical", ["database", "actors"])
def test_the_core_path_down_is_not_ready(
    app: tuple[FastAPI, dict[str, bool]], critical: str
) -> None:
    fastapi_app, down = app
    dev = client_for(HttpPolicy(), fastapi_app)
    down["redis"] = down[critical] = True
    answer = dev.get("/readyz")
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "not_ready"
    assert critical in error["message"] and "redis" in error["message"]


def test_redis_unusable_by_the_replica_fails_its_check_without_a_ping() -> None:
    pinged: list[int] = []

    async def ping() -> None:
        pinged.append(1)

    usable = [False]
    replica_health = SimpleNamespace(usable=lambda: usable[0], down_since_ms=lambda: 123)
    request: Any = SimpleNamespace(
        app=SimpleNamespace(
            state=SimpleNamespace(services=SimpleNamespace(redis_health=replica_health))
        )
    )
    ctx: Any = SimpleNamespace(redis=SimpleNamespace(ping=ping))
    result = asyncio.run(health.check_redis(ctx, request))
    assert result == {"ok": False, "down_since_ms": 123, "ratelimit_mode": "local"}
    assert pinged == []
    usable[0] = True
    assert asyncio.run(health.check_redis(ctx, request))["ok"] and pinged == [1]


def test_a_check_slower_than_the_readiness_timeout_fails_and_is_named(
    app: tuple[FastAPI, dict[str, bool]],
) -> None:
    fastapi_app, _ = app

    async def slow() -> dict[str, Any]:
        await asyncio.sleep(0.5)
        return {"ok": True}

    fastapi_app.state.services.readiness["milvus"] = slow
    dev = client_for(HttpPolicy(), fastapi_app)
    assert dev.get("/readyz").json()["checks"]["milvus"]["ok"] is True  # 2 s: in time
    fastapi_app.state.ctx.settings.readiness_timeout_s = 0.1
    body = dev.get("/readyz").json()
    assert body["status"] == "degraded" and body["degraded"] == ["milvus"]
    assert body["checks"]["milvus"]["error"].startswith("TimeoutError")
    assert body["checks"]["milvus"]["ms"] < 400
