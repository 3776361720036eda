"""The one error shape and the request id, checked on the real app builder (no Ray)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field

from deployments import errors
from deployments.edge import Edge
from deployments.security import public
from raymall.errors import OutOfStock


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=10)
    qty: int


def make_client() -> TestClient:
    app = FastAPI()
    errors.install(app)
    router = APIRouter()

    @router.post("/echo")
    async def echo(item: Item) -> dict[str, Any]:
        return item.model_dump()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    @router.get("/sold-out")
    async def sold_out() -> None:
        raise OutOfStock("no stock", details={"sku_id": 1})

    app.include_router(router)
    public("POST", "/echo")
    return TestClient(Edge(app), raise_server_exceptions=False)


def assert_error_shape(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert {"code", "message", "request_id"} <= set(err)
    assert err["code"] == code
    assert err["request_id"] == resp.headers["x-request-id"]
    return err


@pytest.fixture()
def client() -> TestClient:
    return make_client()


def test_unknown_route_is_404_in_the_error_shape(client: TestClient) -> None:
    assert_error_shape(client.get("/no/such/route"), 404, "not_found")


def test_malformed_json_is_422(client: TestClient) -> None:
    resp = client.post("/echo", content=b"{not json", headers={"content-type": "application/json"})
    assert_error_shape(resp, 422, "validation_error")


def test_wrong_type_is_422_with_the_field(client: TestClient) -> None:
    err = assert_error_shape(
        client.post("/echo", json={"name": "a", "qty": "many"}), 422, "validation_error"
    )
    assert any(e["loc"][-1] == "qty" for e in err["details"]["errors"])


def test_extra_and_overlong_fields_are_422(client: TestClient) -> None:
    assert_error_shape(
        client.post("/echo", json={"name": "a", "qty": 1, "x": 1}), 422, "validation_error"
    )
    assert_error_shape(
        client.post("/echo", json={"name": "a" * 11, "qty": 1}), 422, "validation_error"
    )


def test_wrong_method_is_405(client: TestClient) -> None:
    assert_error_shape(client.get("/echo"), 405, "method_not_allowed")


def test_domain_error_keeps_its_code_and_details(client: TestClient) -> None:
    err = assert_error_shape(client.get("/sold-out"), 409, "out_of_stock")
    assert err["details"] == {"sku_id": 1}


def test_unhandled_exception_is_500_in_the_shape(client: TestClient) -> None:
    assert_error_shape(client.get("/boom"), 500, "internal_error")


def test_request_id_is_echoed_when_given(client: TestClient) -> None:
    resp = client.get("/no/such/route", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    assert resp.json()["error"]["request_id"] == "abc-123"


def test_request_id_is_generated_when_missing_and_liveness_answers(client: TestClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    assert len(resp.headers["x-request-id"]) >= 16


def test_a_draining_edge_refuses_new_requests_with_503_but_stays_live() -> None:
    app = FastAPI()
    errors.install(app)
    client = TestClient(Edge(app, draining=lambda: True), raise_server_exceptions=False)
    err = assert_error_shape(client.get("/anything"), 503, "unavailable")
    assert "shutting down" in err["message"]
    assert client.get("/anything").headers["retry-after"] == "1"
    assert client.get("/healthz").status_code == 200


def test_no_request_can_match_routes_of_two_router_modules() -> None:
    """The ingress orders its router modules by traffic, not by precedence: that is only
    safe while no request path matches routes of two modules (same method)."""
    import importlib
    import re

    from fastapi.routing import APIRoute

    from deployments.ingress import ROUTER_MODULES

    routes = [
        (name, route)
        for name in ROUTER_MODULES
        for route in importlib.import_module(name).router.routes
        if isinstance(route, APIRoute)
    ]
    assert len(routes) > 40
    clashes = []
    for name, route in routes:
        # a concrete path of this route: every parameter filled with a value both an int
        # and a str parameter accept
        sample = re.sub(r"\{[^}]+\}", "1", route.path_format)
        for other_name, other in routes:
            if other_name != name and route.methods & other.methods:
                if other.path_regex.match(sample):
                    clashes.append((name, route.path_format, other_name, other.path_format))
    assert clashes == []
