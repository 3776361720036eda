"""The one error shape and the request id, checked on the real app builder (no Ray)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
import redis.exceptions
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field
from ray.exceptions import RayTaskError

from deployments import errors
from deployments.edge import Edge
from deployments.security import public
from raymall.errors import (
    FlashTokenInvalid,
    FlashTokenRequired,
    FlashTokenUsed,
    NotFound,
    OutOfStock,
    RateLimited,
    SoldOut,
    Unauthorized,
)


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

    @router.get("/redis-down")
    async def redis_down() -> None:
        raise redis.exceptions.ConnectionError("refused")

    @router.get("/actor-refused")
    async def actor_refused() -> None:  # as Ray raises what an actor method raised
        raise RayTaskError(
            "m", "tb", OutOfStock("none", details={"sku_id": 2})
        ).as_instanceof_cause()

    @router.get("/look-alike")
    async def look_alike() -> None:
        class RayActorError(Exception):  # the name of a fault, not its type
            pass

        raise RayActorError("bug")

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


def test_faults_are_mapped_by_type_and_actor_errors_unwrapped(client: TestClient) -> None:
    err = assert_error_shape(client.get("/redis-down"), 503, "unavailable")
    assert "ConnectionError" in err["message"]
    err = assert_error_shape(client.get("/actor-refused"), 409, "out_of_stock")
    assert err["details"] == {"sku_id": 2}
    assert_error_shape(client.get("/look-alike"), 500, "internal_error")


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


class _FakeRecommend:
    """The recommend service's similar read, counted; product 404 is unknown."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, bool]] = []

    async def similar(self, product_id: int, k: int, in_stock_only: bool) -> list[Any]:
        self.calls.append((product_id, k, in_stock_only))
        if product_id == 404:
            raise NotFound("product 404 not found")
        return [{"id": product_id + i, "title": f"t\u00e9{i}", "score": 0.5} for i in range(k)]

    async def similar_json(self, product_id: int, k: int, in_stock_only: bool) -> str:
        items = await self.similar(product_id, k, in_stock_only)
        return json.dumps(items, separators=(",", ":"))


def make_recommend_client(shortcut: bool) -> tuple[TestClient, _FakeRecommend]:
    from deployments import recommend_routes

    fake = _FakeRecommend()
    app = FastAPI()
    errors.install(app)
    app.state.services = SimpleNamespace(recommend=fake)
    app.include_router(recommend_routes.router)
    cuts = [recommend_routes.SimilarShortcut(fake)] if shortcut else []  # type: ignore[arg-type]
    return TestClient(Edge(app, shortcuts=cuts), raise_server_exceptions=False), fake


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/products/7/similar", (7, 10, False)),
        ("/products/7/similar?k=50", (7, 50, False)),
        ("/products/7/similar?in_stock_only=true&k=3", (7, 3, True)),
        ("/products/7/similar?in_stock_only=0", (7, 10, False)),
        (f"/products/{2**63 - 1}/similar", (2**63 - 1, 10, False)),
        ("/products/7/similar?k=0", None),
        ("/products/7/similar?k=51", None),
        ("/products/7/similar?k=05", None),
        ("/products/7/similar?k=1&k=2", None),
        ("/products/7/similar?k", None),
        ("/products/7/similar?in_stock_only=yes", None),
        ("/products/7/similar?other=1", None),
        ("/products/7/similar?k=%31", None),
        ("/products/0/similar", None),
        ("/products/07/similar", None),
        (f"/products/{2**63}/similar", None),
        ("/products/7/similar/", None),
        ("/products/x/similar", None),
    ],
)
def test_only_plain_similar_reads_take_the_shortcut(
    target: str, expected: tuple[int, int, bool] | None
) -> None:
    from deployments.recommend_routes import plain_similar_args

    path, _, query = target.partition("?")
    scope = {"method": "GET", "path": path, "query_string": query.encode(), "headers": []}
    assert plain_similar_args(scope) == expected
    signed_in = {**scope, "headers": [(b"authorization", b"Bearer x")]}
    assert plain_similar_args(signed_in) is None
    assert plain_similar_args({**scope, "method": "HEAD"}) is None


@pytest.mark.parametrize(
    "target",
    [
        "/products/7/similar",
        "/products/7/similar?k=3&in_stock_only=true",
        "/products/7/similar?k=51",
        "/products/7/similar?k=2&in_stock_only=yes",
        "/products/404/similar",
        "/products/0/similar",
    ],
)
def test_the_similar_shortcut_answers_exactly_as_the_app(target: str) -> None:
    plain, plain_fake = make_recommend_client(shortcut=False)
    fast, fast_fake = make_recommend_client(shortcut=True)
    a, b = plain.get(target), fast.get(target)
    assert (a.status_code, a.headers["content-type"]) == (b.status_code, b.headers["content-type"])
    if a.status_code == 200:
        assert a.content == b.content
        assert fast_fake.calls == plain_fake.calls  # answered once, below the app
    else:
        assert a.json()["error"]["code"] == b.json()["error"]["code"]
        assert b.json()["error"]["request_id"] == b.headers["x-request-id"]


def test_the_similar_shortcut_refuses_a_route_that_is_not_public(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from deployments import recommend_routes

    monkeypatch.setattr(recommend_routes, "PUBLIC_ROUTES", set())
    with pytest.raises(RuntimeError):
        recommend_routes.SimilarShortcut(_FakeRecommend())  # type: ignore[arg-type]


class _FakeAuth:
    """Tokens: ``good`` (a customer), ``guest`` (no purchase permission), anything else
    is refused."""

    async def authenticate(self, token: str) -> Any:
        if token == "good":
            return SimpleNamespace(user_id=11, role="customer", jti="j", family_id="f")
        if token == "guest":
            return SimpleNamespace(user_id=12, role="guest", jti="j", family_id="f")
        raise Unauthorized("bad token")

    async def allowed(self, role: str, resource: str, action: str) -> bool:
        return role == "customer" and (resource, action) == ("flash_sale", "purchase")


class _FakeFlash:
    """The flash service's purchase, counted. Sale 404 is unknown, 5 sold out, 9 rate
    limited, 503 loses its connection; key ``again`` is a replay. Sale 7 requires a flash
    token: ``ok`` buys, ``used`` has bought, any other is invalid."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def purchase(
        self,
        user_id: int,
        sale_id: int,
        key: str | None,
        ip: str | None,
        qty: int = 1,
        token: str | None = None,
    ) -> dict[str, Any]:
        self.calls.append((user_id, sale_id, key, ip, qty, token))
        if sale_id == 7 and token is None:
            raise FlashTokenRequired("a token is required", details={"sale_id": 7})
        if sale_id == 7 and token == "used":
            raise FlashTokenUsed("used", details={"order_id": "12"})
        if sale_id == 7 and token != "ok":
            raise FlashTokenInvalid("invalid", details={"reason": "malformed"})
        if sale_id == 404:
            raise NotFound("no such sale")
        if sale_id == 5:
            raise SoldOut("sold out")
        if sale_id == 9:
            raise RateLimited(retry_after=3)
        if sale_id == 503:
            raise ConnectionError("lost")
        return {
            "order_id": 1234567890123,
            "sale_id": sale_id,
            "title": "caf\u00e9",
            "quantity": qty,
            "replayed": key == "again",
        }


class _Answered:
    """Counts the requests a shortcut answered (rather than declined)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.path, self.count = inner, inner.path, 0

    async def __call__(self, scope: Any, send: Any) -> bool:
        done = bool(await self.inner(scope, send))
        self.count += done
        return done


def make_flash_client(shortcut: bool) -> tuple[TestClient, _FakeFlash, _Answered | None]:
    from deployments import auth_routes, flash_routes
    from deployments.security import authenticate

    auth, flash = _FakeAuth(), _FakeFlash()
    settings = SimpleNamespace(ha_proxy=False, trusted_proxy_hops=0)
    app = FastAPI(dependencies=[Depends(authenticate)])
    errors.install(app)
    app.state.ctx = SimpleNamespace(settings=settings)
    app.state.services = SimpleNamespace(flash=flash, settings=settings)

    auth_routes.install(app, auth)  # type: ignore[arg-type]
    app.include_router(flash_routes.router)
    cut = _Answered(flash_routes.PurchaseShortcut(auth, flash, settings)) if shortcut else None  # type: ignore[arg-type]
    client = TestClient(Edge(app, shortcuts=[cut] if cut else []), raise_server_exceptions=False)
    return client, flash, cut


@pytest.mark.parametrize(
    ("path", "headers", "body", "below"),
    [
        ("/flash-sales/3/purchase", {"Authorization": "Bearer good"}, None, True),
        (
            "/flash-sales/3/purchase",
            {"Authorization": "bearer good", "Idempotency-Key": "k1"},
            None,
            True,
        ),
        (
            "/flash-sales/3/purchase",
            {"Authorization": "Bearer good", "Idempotency-Key": "again"},
            None,
            True,
        ),
        ("/flash-sales/404/purchase", {"Authorization": "Bearer good"}, None, True),
        ("/flash-sales/5/purchase", {"Authorization": "Bearer good"}, None, True),
        ("/flash-sales/9/purchase", {"Authorization": "Bearer good"}, None, True),
        ("/flash-sales/503/purchase", {"Authorization": "Bearer good"}, None, True),
        ("/flash-sales/3/purchase", {"Authorization": "Bearer nope"}, None, False),
        ("/flash-sales/3/purchase", {"Authorization": "Bearer guest"}, None, False),
        ("/flash-sales/3/purchase", {"Authorization": "Basic Z29vZA=="}, None, False),
        ("/flash-sales/3/purchase", {}, None, False),
        (
            "/flash-sales/3/purchase",
            {"Authorization": "Bearer good", "Idempotency-Key": "a b"},
            None,
            False,
        ),
        ("/flash-sales/3/purchase", {"Authorization": "Bearer good"}, {"quantity": 2}, False),
        ("/flash-sales/3/purchase", {"Authorization": "Bearer good"}, {"quantity": "2"}, False),
        ("/flash-sales/0/purchase", {"Authorization": "Bearer good"}, None, False),
        ("/flash-sales/3/purchase?x=1", {"Authorization": "Bearer good"}, None, False),
        ("/flash-sales/7/purchase", {"Authorization": "Bearer good"}, None, True),
        (
            "/flash-sales/7/purchase",
            {"Authorization": "Bearer good", "X-Flash-Token": "ok"},
            None,
            True,
        ),
        (
            "/flash-sales/7/purchase",
            {"Authorization": "Bearer good", "X-Flash-Token": "used"},
            None,
            True,
        ),
        (
            "/flash-sales/7/purchase",
            {"Authorization": "Bearer good", "X-Flash-Token": "x.y"},
            None,
            True,
        ),
        (
            "/flash-sales/7/purchase",
            {"Authorization": "Bearer good", "X-Flash-Token": "a b"},
            None,
            False,
        ),
        (
            "/flash-sales/7/purchase",
            {"Authorization": "Bearer good", "X-Flash-Token": "x" * 201},
            None,
            False,
        ),
        (
            "/flash-sales/3/purchase",
            {"Authorization": "Bearer good", "X-Flash-Token": "ok"},
            None,
            True,
        ),
    ],
)
def test_the_purchase_shortcut_answers_exactly_as_the_app(
    path: str, headers: dict[str, str], body: dict[str, Any] | None, below: bool
) -> None:
    plain, plain_flash, _ = make_flash_client(shortcut=False)
    fast, fast_flash, cut = make_flash_client(shortcut=True)
    a = plain.post(path, headers=headers, json=body)
    b = fast.post(path, headers=headers, json=body)
    assert cut is not None and cut.count == int(below)  # answered below the app, or declined
    assert (a.status_code, a.headers["content-type"]) == (b.status_code, b.headers["content-type"])
    for name in ("retry-after", "idempotent-replayed"):
        assert a.headers.get(name) == b.headers.get(name)
    assert fast_flash.calls == plain_flash.calls  # every purchase ran once, in either
    if a.status_code == 201:
        assert a.content == b.content
    else:
        ea, eb = a.json()["error"], b.json()["error"]
        assert eb["request_id"] == b.headers["x-request-id"]
        ea.pop("request_id"), eb.pop("request_id")
        assert ea == eb


def test_the_purchase_shortcut_answers_plain_purchases_and_declines_the_rest() -> None:
    from deployments.flash_routes import plain_purchase_args

    def scope(path: str = "/flash-sales/3/purchase", *headers: tuple[bytes, bytes]) -> Any:
        auth = [(b"authorization", b"Bearer tok")]
        return {
            "method": "POST",
            "path": path,
            "query_string": b"",
            "headers": auth + list(headers),
        }

    assert plain_purchase_args(scope()) == (3, "tok", None, None)
    assert plain_purchase_args(scope("/flash-sales/3/purchase", (b"idempotency-key", b"k-1"))) == (
        3,
        "tok",
        "k-1",
        None,
    )
    assert plain_purchase_args(scope("/flash-sales/3/purchase", (b"x-flash-token", b"1.2.x"))) == (
        3,
        "tok",
        None,
        "1.2.x",
    )
    assert plain_purchase_args(scope("/flash-sales/3/purchase", (b"content-length", b"0")))
    assert plain_purchase_args(scope(f"/flash-sales/{2**63 - 1}/purchase")) is not None
    declined = [
        scope(f"/flash-sales/{2**63}/purchase"),
        scope("/flash-sales/03/purchase"),
        scope("/flash-sales/3/purchase/"),
        scope("/flash-sales/3/purchase", (b"content-length", b"13")),
        scope("/flash-sales/3/purchase", (b"transfer-encoding", b"chunked")),
        scope("/flash-sales/3/purchase", (b"authorization", b"Bearer other")),
        scope("/flash-sales/3/purchase", (b"idempotency-key", b"a"), (b"idempotency-key", b"b")),
        scope("/flash-sales/3/purchase", (b"idempotency-key", b"x" * 101)),
        scope("/flash-sales/3/purchase", (b"idempotency-key", b"")),
        scope("/flash-sales/3/purchase", (b"x-flash-token", b"a"), (b"x-flash-token", b"a")),
        scope("/flash-sales/3/purchase", (b"x-flash-token", b"")),
        scope("/flash-sales/3/purchase", (b"x-flash-token", b"t\xe9")),
        scope("/flash-sales/3/purchase", (b"x-flash-token", b"x" * 201)),
        {**scope(), "method": "PUT"},
        {**scope(), "query_string": b"a=1"},
        {**scope(), "headers": []},
        {**scope(), "headers": [(b"authorization", b"Bearer ")]},
    ]
    assert [plain_purchase_args(s) for s in declined] == [None] * len(declined)


def test_the_purchase_shortcut_refuses_a_public_route(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments import flash_routes

    monkeypatch.setattr(flash_routes, "PUBLIC_ROUTES", {("POST", flash_routes.PURCHASE_PATH)})
    with pytest.raises(RuntimeError):
        flash_routes.PurchaseShortcut(_FakeAuth(), _FakeFlash(), None)  # type: ignore[arg-type]


def test_the_edge_counts_every_request_by_route_method_and_status(client: TestClient) -> None:
    from raymall import metrics

    def count(route: str, method: str, status: str) -> float:
        return float(metrics.HTTP_REQUESTS.labels(route, method, status)._value.get())

    before = (count("/healthz", "GET", "200"), count("unmatched", "GET", "404"))
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no-such-route").status_code == 404
    after = (count("/healthz", "GET", "200"), count("unmatched", "GET", "404"))
    assert (after[0] - before[0], after[1] - before[1]) == (3, 1)
