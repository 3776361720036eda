"""The edge's hardening, on the real app builder behind the real edge (no Ray): no
trailing-slash redirect (the Host header never reaches a Location), security headers on
every answer, CORS only for listed origins, safe request ids, and in prod the operations
routes closed without the ops token and readiness telling nothing of its internals."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from deployments import errors, health
from deployments.edge import Edge
from deployments.headers import HttpPolicy
from deployments.ingress import routed_app

OPS = "ops-token-for-tests-0123456789abcdef"
ORIGIN = "https://shop.example"


def client_for(policy: HttpPolicy, app: Any = None) -> TestClient:
    return TestClient(Edge(app or routed_app(), policy=policy), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def dev() -> TestClient:
    return client_for(HttpPolicy(cors_origins=[ORIGIN]))


@pytest.fixture(scope="module")
def prod() -> TestClient:
    return client_for(HttpPolicy(ops_closed=True, ops_token=OPS, behind_tls=True))


def error_of(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err: dict[str, Any] = resp.json()["error"]
    assert err["code"] == code and err["request_id"] == resp.headers["x-request-id"]
    return err


def test_a_trailing_slash_is_404_in_the_one_shape_and_never_a_redirect(dev: TestClient) -> None:
    for path in ("/products/", "/categories/", "/cart/"):
        resp = dev.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        error_of(resp, 404, "not_found")
        assert "location" not in resp.headers


def test_every_answer_carries_the_security_headers(dev: TestClient, prod: TestClient) -> None:
    for resp in (dev.get("/healthz"), dev.get("/no/such/route"), dev.post("/products")):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert resp.headers["content-security-policy"].startswith("default-src 'none'")
        assert "strict-transport-security" not in resp.headers  # not behind TLS
    docs = dev.get("/docs")
    assert docs.status_code == 200
    assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    assert "max-age=" in prod.get("/healthz").headers["strict-transport-security"]


def test_cors_answers_only_listed_origins(dev: TestClient, prod: TestClient) -> None:
    ask = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    pre = dev.options("/cart/items", headers=ask)
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == ORIGIN
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in pre.headers
    plain = dev.get("/healthz", headers={"Origin": ORIGIN})
    assert plain.headers["access-control-allow-origin"] == ORIGIN
    assert plain.headers["vary"] == "Origin"
    for client, origin in ((dev, "https://evil.example"), (prod, ORIGIN)):  # prod: CORS off
        other = client.options("/cart/items", headers={**ask, "Origin": origin})
        assert other.status_code != 204
        assert "access-control-allow-origin" not in other.headers
        plain = client.get("/healthz", headers={"Origin": origin})
        assert "access-control-allow-origin" not in plain.headers
    assert dev.get("/healthz").headers["vary"] == "Origin"  # CORS on: answers vary by origin
    assert "vary" not in prod.get("/healthz").headers


def test_request_ids_are_kept_only_when_safe(dev: TestClient) -> None:
    kept = dev.get("/no/such/route", headers={"X-Request-ID": "abc-1.2:3_Z"})
    assert kept.headers["x-request-id"] == "abc-1.2:3_Z"
    for bad in (b"\xff\xfe", b"a b", b"x" * 65, b"<script>", b"\xc3\xa9"):
        resp = dev.get("/no/such/route", headers={"X-Request-ID": bad})  # type: ignore[dict-item]
        rid = error_of(resp, 404, "not_found")["request_id"]
        assert rid != bad.decode("latin-1") and len(rid) == 32 and rid.isalnum()


def test_operations_routes_need_the_ops_token_in_prod(prod: TestClient, dev: TestClient) -> None:
    for path in ("/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        error_of(prod.get(path), 401, "unauthorized")
        error_of(prod.get(path, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert prod.get(path, headers={"Authorization": f"Bearer {OPS}"}).status_code == 200
        assert dev.get(path).status_code == 200  # outside prod they stay open
    closed = client_for(HttpPolicy(ops_closed=True, ops_token=None))  # no token set: closed
    error_of(closed.get("/metrics", headers={"Authorization": "Bearer "}), 401, "unauthorized")


@pytest.fixture()
def readiness_app(monkeypatch: pytest.MonkeyPatch) -> tuple[FastAPI, dict[str, bool]]:
    state = {"db": True}

    async def database(_ctx: Any) -> dict[str, Any]:
        if not state["db"]:
            raise ConnectionError("db-host-10.0.0.7:3306 refused")
        return {"ok": True, "dialect": "mysql"}

    async def fine(*_args: Any, **_kw: Any) -> dict[str, Any]:
        return {"ok": True}

    monkeypatch.setattr(health, "check_database", database)
    monkeypatch.setattr(health, "check_redis", fine)
    monkeypatch.setattr(health.registry, "check_all", fine)
    app = FastAPI()
    errors.install(app)
    app.include_router(health.router)
    app.state.ctx = SimpleNamespace(settings=SimpleNamespace(readiness_timeout_s=2.0))
    app.state.services = SimpleNamespace(readiness={})
    return app, state


def test_readiness_tells_the_public_only_ready_or_not_in_prod(
    readiness_app: tuple[FastAPI, dict[str, bool]],
) -> None:
    app, state = readiness_app
    prod = client_for(HttpPolicy(ops_closed=True, ops_token=OPS), app)
    dev = client_for(HttpPolicy(), app)
    assert prod.get("/readyz").json() == {"status": "ready"}
    assert "checks" in prod.get("/readyz", headers={"Authorization": f"Bearer {OPS}"}).json()
    assert "checks" in dev.get("/readyz").json()
    state["db"] = False
    public = prod.get("/readyz")
    assert error_of(public, 503, "not_ready")["message"] == "not ready"
    assert "10.0.0.7" not in public.text and "details" not in public.json()["error"]
    detailed = prod.get("/readyz", headers={"Authorization": f"Bearer {OPS}"})
    assert (
        "10.0.0.7" in error_of(detailed, 503, "not_ready")["details"]["checks"]["database"]["error"]
    )


def test_the_policy_follows_the_settings_and_prod_refuses_a_weak_ops_token() -> None:
    from raymall.settings import ConfigError, load_settings

    strong = {n: "s3cret-" + "x1y2z3w4v5" * 4 for n in ("jwt_secret", "payment_secret")}
    strong["flash_token_secret"] = strong["carrier_secret"] = strong["jwt_secret"]
    with pytest.raises(ConfigError, match="RAYMALL_OPS_TOKEN"):
        load_settings(env="prod", ops_token="short", **strong)
    prod = HttpPolicy.from_settings(load_settings(env="prod", ops_token=OPS + "-long", **strong))
    scope = {"path": "/metrics", "method": "GET", "headers": []}
    assert prod.refuses(scope)
    scope["headers"] = [(b"authorization", f"Bearer {OPS}-long".encode())]
    assert not prod.refuses(scope) and prod.is_ops(scope)
    dev = HttpPolicy.from_settings(load_settings(cors_origins=[ORIGIN], behind_tls=True))
    assert not dev.refuses({"path": "/metrics", "method": "GET", "headers": []})
    headers = dict(dev.response_headers({"path": "/x", "headers": [(b"origin", ORIGIN.encode())]}))
    assert headers[b"access-control-allow-origin"] == ORIGIN.encode()
    assert b"strict-transport-security" in headers
