"""The claim shortcut below FastAPI answers exactly as the app's route: same status, body,
headers and errors, the claim run once either way; anything but the plainest claim is
declined to the app."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from deployments import errors
from deployments.edge import Edge
from raymall.errors import CampaignNotFound, CouponLimitReached, CouponsSoldOut, Unauthorized


class FakeAuth:
    async def authenticate(self, token: str) -> Any:
        if token == "good":
            return SimpleNamespace(user_id=11, role="customer", jti="j", family_id="f")
        if token == "guest":
            return SimpleNamespace(user_id=12, role="guest", jti="j", family_id="f")
        raise Unauthorized("bad token")

    async def allowed(self, role: str, resource: str, action: str) -> bool:
        return role == "customer" and (resource, action) == ("coupons", "use")


class FakeCoupons:
    """Campaign 404 is unknown, 5 sold out, 6 at the limit, 503 loses its connection;
    key ``again`` is a replay."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def claim(self, user_id: int, campaign_id: int, key: str | None) -> dict[str, Any]:
        self.calls.append((user_id, campaign_id, key))
        if campaign_id == 404:
            raise CampaignNotFound("no such campaign", details={"campaign_id": 404})
        if campaign_id == 5:
            raise CouponsSoldOut("sold out")
        if campaign_id == 6:
            raise CouponLimitReached("at most 1", details={"per_user_limit": 1})
        if campaign_id == 503:
            raise ConnectionError("lost")
        return {"coupon_id": "123", "campaign_id": campaign_id, "replayed": key == "again"}


class Answered:
    def __init__(self, inner: Any) -> None:
        self.inner, self.path, self.count = inner, inner.path, 0

    async def __call__(self, scope: Any, send: Any) -> bool:
        done = bool(await self.inner(scope, send))
        self.count += done
        return done


def make_client(shortcut: bool) -> tuple[TestClient, FakeCoupons, Answered | None]:
    from deployments import auth_routes, coupon_routes
    from deployments.security import authenticate

    auth, coupons = FakeAuth(), FakeCoupons()
    settings = SimpleNamespace(ha_proxy=False, trusted_proxy_hops=0)
    app = FastAPI(dependencies=[Depends(authenticate)])
    errors.install(app)
    app.state.ctx = SimpleNamespace(settings=settings)
    app.state.services = SimpleNamespace(coupons=coupons, settings=settings)
    auth_routes.install(app, auth)  # type: ignore[arg-type]
    app.include_router(coupon_routes.router)
    cut = Answered(coupon_routes.ClaimShortcut(auth, coupons)) if shortcut else None  # type: ignore[arg-type]
    client = TestClient(Edge(app, shortcuts=[cut] if cut else []), raise_server_exceptions=False)
    return client, coupons, cut


GOOD = {"Authorization": "Bearer good"}


@pytest.mark.parametrize(
    ("path", "headers", "body", "below"),
    [
        ("/coupon-campaigns/3/claim", GOOD, None, True),
        ("/coupon-campaigns/3/claim", {**GOOD, "Idempotency-Key": "k1"}, None, True),
        ("/coupon-campaigns/3/claim", {**GOOD, "Idempotency-Key": "again"}, None, True),
        ("/coupon-campaigns/404/claim", GOOD, None, True),
        ("/coupon-campaigns/5/claim", GOOD, None, True),
        ("/coupon-campaigns/6/claim", GOOD, None, True),
        ("/coupon-campaigns/503/claim", GOOD, None, True),
        ("/coupon-campaigns/3/claim", {"Authorization": "Bearer nope"}, None, False),
        ("/coupon-campaigns/3/claim", {"Authorization": "Bearer guest"}, None, False),
        ("/coupon-campaigns/3/claim", {"Authorization": "Basic Z29vZA=="}, None, False),
        ("/coupon-campaigns/3/claim", {}, None, False),
        ("/coupon-campaigns/3/claim", {**GOOD, "Idempotency-Key": "a b"}, None, False),
        ("/coupon-campaigns/3/claim", GOOD, {"x": 1}, False),
        ("/coupon-campaigns/0/claim", GOOD, None, False),
        ("/coupon-campaigns/3/claim?x=1", GOOD, None, False),
    ],
)
def test_the_claim_shortcut_answers_exactly_as_the_app(
    path: str, headers: dict[str, str], body: dict[str, Any] | None, below: bool
) -> None:
    plain, plain_svc, _ = make_client(shortcut=False)
    fast, fast_svc, cut = make_client(shortcut=True)
    a = plain.post(path, headers=headers, json=body)
    b = fast.post(path, headers=headers, json=body)
    assert cut is not None and cut.count == int(below)
    assert (a.status_code, a.headers["content-type"]) == (b.status_code, b.headers["content-type"])
    assert a.headers.get("idempotent-replayed") == b.headers.get("idempotent-replayed")
    assert fast_svc.calls == plain_svc.calls
    if a.status_code == 201:
        assert a.content == b.content
    else:
        ea, eb = a.json()["error"], b.json()["error"]
        assert eb["request_id"] == b.headers["x-request-id"]
        ea.pop("request_id"), eb.pop("request_id")
        assert ea == eb
