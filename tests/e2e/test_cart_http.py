"""The cart over HTTP: user carts in ``cart:{user_id}``, guest carts by token, the merge
at sign-in, limits, refusals of unknown and unpublished SKUs, live prices and stock, and
ordering selected cart lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.auth_helpers import TestUser, login, new_user
from tests.order_helpers import Shop, restock

pytestmark = pytest.mark.e2e


def _error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return dict(body["error"])


@pytest.fixture(scope="module")
def rds(app: Any) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(app.settings.redis_url, decode_responses=True)
    yield client
    client.close()


def test_a_user_cart_holds_lines_with_live_prices_and_stock(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop, rds: redis.Redis
) -> None:
    kettle, mug = shop.sku(price_cents=2999), shop.sku(price_cents=450)
    restock(client, admin.headers, kettle, 3)
    uid, h = shop.customer()
    client.post("/cart/items", json={"sku_id": kettle, "quantity": 1}, headers=h)
    client.post("/cart/items", json={"sku_id": kettle, "quantity": 1}, headers=h)
    resp = client.post("/cart/items", json={"sku_id": mug, "quantity": 2}, headers=h)
    assert resp.status_code == 200, resp.text
    assert rds.hgetall(f"cart:{uid}") == {str(kettle): "2", str(mug): "2"}
    lines = {line["sku_id"]: line for line in resp.json()["items"]}
    assert lines[kettle]["quantity"] == 2 and lines[kettle]["line_total_cents"] == 5998
    assert lines[kettle]["available"] == 3 and lines[kettle]["purchasable"]
    assert lines[mug]["problem"] == "out_of_stock" and not lines[mug]["purchasable"]
    assert resp.json()["total_cents"] == 5998
    # prices are live: a price change shows at once
    patched = client.patch(
        f"/admin/skus/{kettle}", json={"price_cents": 2500}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    assert client.get("/cart", headers=h).json()["total_cents"] == 5000
    # so is taking a product off sale: its line is flagged, adding it is refused
    product = lines[kettle]["product_id"]
    off = client.post(f"/admin/products/{product}/unpublish", headers=admin.headers)
    assert off.status_code == 200, off.text
    hidden = {line["sku_id"]: line for line in client.get("/cart", headers=h).json()["items"]}
    assert hidden[kettle]["problem"] == "sku_not_for_sale" and not hidden[kettle]["purchasable"]
    _error(
        client.post("/cart/items", json={"sku_id": kettle, "quantity": 1}, headers=h),
        409,
        "sku_not_for_sale",
    )
    on = client.post(f"/admin/products/{product}/publish", headers=admin.headers)
    assert on.status_code == 200, on.text
    assert client.get("/cart", headers=h).json()["total_cents"] == 5000
    # set, remove, clear
    assert client.put(f"/cart/items/{kettle}", json={"quantity": 1}, headers=h).status_code == 200
    assert client.delete(f"/cart/items/{mug}", headers=h).status_code == 204
    _error(client.delete(f"/cart/items/{mug}", headers=h), 404, "not_found")
    assert rds.hgetall(f"cart:{uid}") == {str(kettle): "1"}
    assert client.delete("/cart", headers=h).status_code == 204
    assert client.get("/cart", headers=h).json() == {
        "items": [],
        "lines": 0,
        "units": 0,
        "total_cents": 0,
    }


def test_unknown_and_unpublished_skus_and_limits_are_refused_clearly(
    app: Any, client: httpx.Client, shop: Shop
) -> None:
    hidden = shop.sku(published=False)
    ok = shop.sku()
    _, h = shop.customer()
    _error(
        client.post("/cart/items", json={"sku_id": 2**62, "quantity": 1}, headers=h),
        404,
        "unknown_sku",
    )
    _error(
        client.post("/cart/items", json={"sku_id": hidden, "quantity": 1}, headers=h),
        409,
        "sku_not_for_sale",
    )
    _error(
        client.put(f"/cart/items/{hidden}", json={"quantity": 1}, headers=h),
        409,
        "sku_not_for_sale",
    )
    top = app.settings.cart_max_qty_per_line
    err = _error(
        client.post("/cart/items", json={"sku_id": ok, "quantity": top + 1}, headers=h),
        409,
        "cart_limit_exceeded",
    )
    assert err["details"]["max_quantity"] == top
    assert client.post("/cart/items", json={"sku_id": ok, "quantity": top}, headers=h).is_success
    _error(
        client.post("/cart/items", json={"sku_id": ok, "quantity": 1}, headers=h),
        409,
        "cart_limit_exceeded",
    )
    _error(
        client.post("/cart/items", json={"sku_id": ok, "quantity": 0}, headers=h),
        422,
        "validation_error",
    )
    _error(
        client.post("/cart/items", json={"sku_id": "x", "quantity": 1}, headers=h),
        422,
        "validation_error",
    )
    _error(client.get("/cart"), 401, "unauthorized")
    _error(client.get("/cart", headers={"X-Cart-Token": "g.forged"}), 401, "unauthorized")


def test_a_guest_cart_merges_into_the_user_cart_at_login(
    app: Any, client: httpx.Client, shop: Shop, rds: redis.Redis
) -> None:
    a, b = shop.sku(price_cents=100), shop.sku(price_cents=200)
    issued = client.post("/cart/guest")
    assert issued.status_code == 201, issued.text
    token = issued.json()["cart_token"]
    g = {"X-Cart-Token": token}
    assert client.post("/cart/items", json={"sku_id": a, "quantity": 2}, headers=g).is_success
    assert client.post("/cart/items", json={"sku_id": b, "quantity": 1}, headers=g).is_success
    assert client.get("/cart", headers=g).json()["units"] == 3
    assert rds.ttl(f"cart:guest:{token}") > 0
    user = new_user(client, sign_in=False)
    # the user already has one `a` in their cart from another device
    rds.hset(f"cart:{user.user_id}", str(a), "1")
    login(client, user, headers=g)  # signing in with the guest token merges its cart
    assert rds.hgetall(f"cart:{user.user_id}") == {str(a): "3", str(b): "1"}
    assert not rds.exists(f"cart:guest:{token}")
    # merging is capped at the per-line maximum
    token2 = client.post("/cart/guest").json()["cart_token"]
    top = app.settings.cart_max_qty_per_line
    client.put(f"/cart/items/{a}", json={"quantity": top}, headers={"X-Cart-Token": token2})
    merged = client.post("/cart/merge", headers={**user.headers, "X-Cart-Token": token2})
    assert merged.status_code == 200, merged.text
    assert rds.hget(f"cart:{user.user_id}", str(a)) == str(top)


def test_ordering_selected_cart_lines_removes_only_those(
    client: httpx.Client, admin: TestUser, shop: Shop, rds: redis.Redis
) -> None:
    a, b = shop.sku(price_cents=700), shop.sku(price_cents=300)
    restock(client, admin.headers, a, 5)
    restock(client, admin.headers, b, 5)
    uid, h = shop.customer()
    client.post("/cart/items", json={"sku_id": a, "quantity": 2}, headers=h)
    client.post("/cart/items", json={"sku_id": b, "quantity": 4}, headers=h)
    _error(
        client.post("/orders", json={"cart_sku_ids": [a, 999999]}, headers=h),
        422,
        "validation_error",
    )
    placed = client.post("/orders", json={"cart_sku_ids": [a]}, headers=h)
    assert placed.status_code == 201, placed.text
    assert placed.json()["total_cents"] == 1400
    assert [(i["sku_id"], i["quantity"]) for i in placed.json()["items"]] == [(a, 2)]
    assert rds.hgetall(f"cart:{uid}") == {str(b): "4"}
    # a failed order leaves the cart alone
    client.post("/cart/items", json={"sku_id": a, "quantity": 9}, headers=h)
    _error(client.post("/orders", json={}, headers=h), 409, "out_of_stock")
    assert rds.hgetall(f"cart:{uid}") == {str(a): "9", str(b): "4"}
