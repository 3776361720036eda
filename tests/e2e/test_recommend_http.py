"""Recommendations and search over HTTP against the running app: products created through
the admin API reach the index through the outbox; similar products, semantic/keyword/
hybrid search, personal picks from views and the cart, metrics, readiness, input errors,
and serving again after the Recommender actor is killed."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from tests.auth_helpers import TestUser, new_user
from tests.order_helpers import restock, wait_for

pytestmark = pytest.mark.e2e
INDEX_WAIT_S = 30.0  # generous: the e2e machine is shared; the 5 s bound is integration's
REPLICA_READS = 8  # consecutive reads that reach every ingress replica (requests are balanced)


@pytest.fixture(scope="module", autouse=True)
def _needs_recommender(app: Any) -> None:
    if not app.settings.recommender:
        pytest.skip("the recommender is off (RAYMALL_TEST_RECOMMENDER=0)")


def _error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert {"code", "message", "request_id"} <= set(body["error"])
    return dict(body["error"])


def _category(client: httpx.Client, admin: TestUser, name: str) -> int:
    resp = client.post(
        "/admin/categories",
        json={"name": f"{name} {secrets.token_hex(3)}"},
        headers=admin.headers,
    )
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def _product(
    client: httpx.Client, admin: TestUser, title: str, category_id: int, stock: int = 5
) -> dict[str, int]:
    code = f"REC-{secrets.token_hex(5)}"
    body = {
        "title": title,
        "description": f"{title}.",
        "category_id": category_id,
        "skus": [{"code": code, "price_cents": 1999}],
    }
    resp = client.post("/admin/products", json=body, headers=admin.headers)
    assert resp.status_code == 201, resp.text
    doc = resp.json()
    pub = client.post(f"/admin/products/{doc['id']}/publish", headers=admin.headers)
    assert pub.status_code == 200, pub.text
    if stock:
        restock(client, admin.headers, doc["skus"][0]["id"], stock)
    return {"id": int(doc["id"]), "sku_id": int(doc["skus"][0]["id"])}


@pytest.fixture(scope="module")
def shop(client: httpx.Client, admin: TestUser) -> dict[str, dict[str, int]]:
    coffee = _category(client, admin, "Coffee Drippers")
    boots = _category(client, admin, "Hiking Boots")
    items = {
        "dripper": _product(client, admin, "Ceramic pour-over coffee dripper", coffee),
        "cone": _product(client, admin, "Porcelain cone coffee filter holder", coffee, stock=0),
        "glass": _product(client, admin, "Glass pour-over coffee maker with filter", coffee),
        "boot": _product(client, admin, "Waterproof leather hiking boots", boots),
        "trail": _product(client, admin, "Trail hiking boots with ankle support", boots),
    }
    for a, b in (("dripper", "glass"), ("glass", "cone"), ("trail", "boot"), ("boot", "trail")):
        # b is indexed (through the outbox) once every replica shows it next to a
        wait_for(
            lambda a=a, b=b: _has_everywhere(client, items[a]["id"], items[b]["id"]), INDEX_WAIT_S
        )
    return items


def _similar(client: httpx.Client, product_id: int, **params: Any) -> httpx.Response:
    return client.get(f"/products/{product_id}/similar", params=params)


def _ids(resp: httpx.Response) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [int(item["id"]) for item in resp.json()["items"]]


def _has(client: httpx.Client, product_id: int, other: int) -> bool:
    resp = _similar(client, product_id, k=20)
    return resp.status_code == 200 and other in _ids(resp)


def _has_everywhere(client: httpx.Client, product_id: int, other: int) -> bool:
    """``_has`` on enough consecutive reads to cover every replica: each replica refreshes
    its copy of the index on its own schedule, so one replica may show a new product a
    moment before another does."""
    return all(_has(client, product_id, other) for _ in range(REPLICA_READS))


def test_similar_products_are_of_the_same_kind_and_never_the_product(
    client: httpx.Client, shop: dict[str, dict[str, int]]
) -> None:
    resp = _similar(client, shop["boot"]["id"], k=20)
    ids = _ids(resp)
    assert shop["boot"]["id"] not in ids
    assert ids.index(shop["trail"]["id"]) < ids.index(shop["dripper"]["id"])
    item = resp.json()["items"][0]
    assert {"id", "title", "score", "in_stock", "min_price_cents"} <= set(item)
    assert len(_ids(_similar(client, shop["boot"]["id"], k=1))) == 1


def test_in_stock_only_leaves_out_sold_out_products(
    client: httpx.Client, shop: dict[str, dict[str, int]]
) -> None:
    dripper, cone = shop["dripper"]["id"], shop["cone"]["id"]
    assert cone in _ids(_similar(client, dripper, k=20))
    stocked = _similar(client, dripper, k=20, in_stock_only="true")
    assert cone not in _ids(stocked)
    assert all(item["in_stock"] for item in stocked.json()["items"])


def test_an_unpublished_product_leaves_similar_results_and_is_404(
    client: httpx.Client, admin: TestUser, shop: dict[str, dict[str, int]]
) -> None:
    cat = _category(client, admin, "Coffee Drippers")
    extra = _product(client, admin, "Stainless steel pour-over coffee dripper", cat)
    wait_for(lambda: _has_everywhere(client, shop["dripper"]["id"], extra["id"]), INDEX_WAIT_S)
    resp = client.post(f"/admin/products/{extra['id']}/unpublish", headers=admin.headers)
    assert resp.status_code == 200, resp.text
    assert extra["id"] not in _ids(_similar(client, shop["dripper"]["id"], k=50))
    _error(_similar(client, extra["id"]), 404, "not_found")
    # and once the index has applied the event, the actor no longer holds it either
    wait_for(lambda: not _has(client, shop["glass"]["id"], extra["id"]), INDEX_WAIT_S)


def test_bad_similar_input_is_4xx_in_the_error_shape(client: httpx.Client) -> None:
    _error(_similar(client, 1, k=0), 422, "validation_error")
    _error(_similar(client, 1, k=51), 422, "validation_error")
    _error(_similar(client, 1, k="x"), 422, "validation_error")
    _error(client.get("/products/0/similar"), 422, "validation_error")
    _error(_similar(client, 2**62), 404, "not_found")


def test_semantic_keyword_and_hybrid_search(
    client: httpx.Client, shop: dict[str, dict[str, int]]
) -> None:
    boots = {shop["boot"]["id"], shop["trail"]["id"]}
    query = {"q": "footwear for mountain walks", "mode": "semantic"}
    semantic = client.get("/search", params=query)
    assert semantic.status_code == 200, semantic.text
    assert boots & set(_ids(semantic)[:5])
    keyword = client.get("/search", params={"q": "hiking boots", "mode": "keyword", "size": 50})
    assert boots <= set(_ids(keyword))
    assert keyword.json()["total"] >= 2
    hybrid = client.get("/search", params={"q": "waterproof hiking boots"})
    body = hybrid.json()
    assert body["mode"] == "hybrid" and body["modes_used"] == ["keyword", "semantic"]
    assert _ids(hybrid)[0] == shop["boot"]["id"]
    first = client.get("/search", params={"q": "coffee", "mode": "semantic", "size": 2})
    second = client.get("/search", params={"q": "coffee", "mode": "semantic", "size": 2, "page": 2})
    assert first.json()["has_more"] is True
    assert not set(_ids(first)) & set(_ids(second))


def test_a_catalog_change_shows_in_cached_search_results_on_the_next_request(
    client: httpx.Client, admin: TestUser
) -> None:
    """Search answers are cached by the catalog generation: repeated searches are served
    from the cache, and the request after a catalog write (here: a title change, then an
    unpublish) sees it, on every replica, in keyword (both routes) and hybrid results."""
    word = "zq" + secrets.token_hex(3).replace("0", "y")
    cat = _category(client, admin, "Search cache")
    item = _product(client, admin, f"Folding camp stool {word}", cat)
    searches = [
        ("/products/search", {"q": word}),
        ("/search", {"q": word, "mode": "keyword"}),
        ("/search", {"q": word}),  # hybrid
    ]
    for path, params in searches:
        for _ in range(REPLICA_READS):  # fill every replica's tier
            assert item["id"] in _ids(client.get(path, params=params))
    renamed = f"Folding camp chair {word}"
    resp = client.patch(
        f"/admin/products/{item['id']}", json={"title": renamed}, headers=admin.headers
    )
    assert resp.status_code == 200, resp.text
    for path, params in searches:
        for _ in range(REPLICA_READS):
            found = client.get(path, params=params).json()["items"]
            assert [i["title"] for i in found if i["id"] == item["id"]] == [renamed], path
    chair = client.get("/products/search", params={"q": f"chair {word}"}).json()
    assert chair["total"] == 1  # the new title's word matches at once
    assert client.post(f"/admin/products/{item['id']}/unpublish", headers=admin.headers).is_success
    for path, params in searches:
        for _ in range(REPLICA_READS):
            assert item["id"] not in _ids(client.get(path, params=params)), path


def test_bad_search_input_is_422(client: httpx.Client) -> None:
    _error(client.get("/search"), 422, "validation_error")
    _error(client.get("/search", params={"q": ""}), 422, "validation_error")
    _error(client.get("/search", params={"q": "   "}), 422, "validation_error")
    _error(client.get("/search", params={"q": "x", "mode": "vector"}), 422, "validation_error")
    _error(client.get("/search", params={"q": "x" * 201}), 422, "validation_error")
    _error(client.get("/search", params={"q": "x", "page": 999}), 422, "validation_error")


def test_recommendations_need_a_signed_in_user(client: httpx.Client) -> None:
    _error(client.get("/recommendations/me"), 401, "unauthorized")
    _error(client.post("/me/views", json={"product_id": 1}), 401, "unauthorized")


def test_a_new_user_gets_best_sellers(client: httpx.Client) -> None:
    user = new_user(client)
    resp = client.get("/recommendations/me", params={"k": 5}, headers=user.headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["strategy"] == "best_sellers" and 0 < len(body["items"]) <= 5
    sales = [item["sales_count"] for item in body["items"]]
    assert sales == sorted(sales, reverse=True)


def test_views_and_cart_steer_recommendations(
    client: httpx.Client, shop: dict[str, dict[str, int]]
) -> None:
    user = new_user(client)
    for key in ("boot", "trail"):
        resp = client.post("/me/views", json={"product_id": shop[key]["id"]}, headers=user.headers)
        assert resp.status_code == 204, resp.text
    picks = client.get("/recommendations/me", params={"k": 5}, headers=user.headers).json()
    assert picks["strategy"] == "personal"
    assert {shop["boot"]["id"], shop["trail"]["id"]} & {i["id"] for i in picks["items"]}
    cart = client.post(
        "/cart/items", json={"sku_id": shop["trail"]["sku_id"], "quantity": 1}, headers=user.headers
    )
    assert cart.status_code == 200, cart.text
    picks = client.get("/recommendations/me", params={"k": 10}, headers=user.headers).json()
    assert picks["strategy"] == "personal"
    assert shop["trail"]["id"] not in {i["id"] for i in picks["items"]}  # already in the cart


def test_a_signed_in_similar_request_counts_as_a_view(
    client: httpx.Client, shop: dict[str, dict[str, int]]
) -> None:
    user = new_user(client)
    assert _similar(client, shop["dripper"]["id"]).status_code == 200  # anonymous: no view
    resp = client.get(f"/products/{shop['dripper']['id']}/similar", headers=user.headers)
    assert resp.status_code == 200, resp.text
    picks = client.get("/recommendations/me", headers=user.headers).json()
    assert picks["strategy"] == "personal"
    assert shop["glass"]["id"] in {i["id"] for i in picks["items"]}


def test_metrics_and_readiness_cover_the_recommender(
    client: httpx.Client, shop: dict[str, dict[str, int]]
) -> None:
    _similar(client, shop["dripper"]["id"])
    text = client.get("/metrics").text
    assert 'raymall_recommender_seconds_count{op="similar"}' in text
    assert "raymall_recommender_index_size" in text
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["milvus"]["ok"] is True


def test_killing_the_recommender_then_it_serves_again(
    app: Any, client: httpx.Client, shop: dict[str, dict[str, int]]
) -> None:
    import ray

    before = _ids(_similar(client, shop["boot"]["id"], k=20))
    actor = ray.get_actor("recommender-0", namespace=app.settings.namespace)
    ray.kill(actor, no_restart=False)
    during = _similar(client, shop["boot"]["id"])
    assert during.status_code in (200, 503), during.text
    if during.status_code == 503:
        assert during.json()["error"]["code"] == "unavailable"
        assert int(during.headers["Retry-After"]) >= 1
    searched = client.get("/search", params={"q": "hiking boots"})  # keyword at worst
    assert searched.status_code == 200, searched.text
    assert shop["boot"]["id"] in _ids(searched)
    wait_for(lambda: _similar(client, shop["boot"]["id"], k=20).status_code == 200, 180, 0.5)
    after = _ids(_similar(client, shop["boot"]["id"], k=20))
    assert shop["trail"]["id"] in after and len(after) == len(before)
    wait_for(lambda: client.get("/readyz").status_code == 200, 120, 0.5)
