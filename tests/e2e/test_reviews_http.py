"""Reviews over HTTP against the running app: only the buyer of a received line reviews it,
once; the product's rating shows at once in its detail, its listing card and
``sort=rating``; an admin hides and shows a review and the rating follows; the buyer is
thanked in the inbox. Each step is checked in the database too."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.auth_helpers import TestUser
from tests.e2e.test_orders_flow import buyer, product, status
from tests.order_helpers import Shop, wait_for

pytestmark = pytest.mark.e2e


def error(resp: httpx.Response, status_code: int, code: str) -> None:
    assert resp.status_code == status_code, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert {"code", "message", "request_id"} <= set(body["error"])


def paid_order(client: httpx.Client, user: TestUser, sku_id: int) -> dict[str, Any]:
    placed = client.post(
        "/orders", json={"items": [{"sku_id": sku_id, "quantity": 1}]}, headers=user.headers
    )
    assert placed.status_code == 201, placed.text
    oid = placed.json()["id"]
    assert client.post(f"/orders/{oid}/pay", json={}, headers=user.headers).status_code == 202
    wait_for(lambda: status(client, user, oid) == "paid")
    return dict(client.get(f"/orders/{oid}", headers=user.headers).json())


def receive(client: httpx.Client, admin: TestUser, user: TestUser, oid: str) -> None:
    """The order reaches the customer (shipped, then receipt confirmed: completed)."""
    assert client.post(f"/admin/orders/{oid}/ship", headers=admin.headers).status_code == 200
    done = client.post(f"/orders/{oid}/confirm-receipt", headers=user.headers)
    assert done.status_code == 200 and done.json()["status"] == "completed", done.text


def card(client: httpx.Client, product_id: int, **params: Any) -> dict[str, Any] | None:
    page = client.get("/products", params={"size": 100, **params})
    assert page.status_code == 200, page.text
    return next((c for c in page.json()["items"] if c["id"] == product_id), None)


def test_a_verified_buyer_reviews_once_and_the_rating_shows_everywhere(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    item = product(client, admin, price_cents=3200, stock=3)
    pid = item["product_id"]
    alice, mallory = buyer(client), buyer(client)
    # read first, so the detail and the listing are cached before the review
    assert client.get(f"/products/{pid}").json()["rating_count"] == 0
    assert card(client, pid) is not None
    order = paid_order(client, alice, item["sku_id"])
    oid, line = order["id"], order["items"][0]["id"]
    url = f"/orders/{oid}/items/{line}/review"
    body = {"rating": 4, "text": "Boils a litre in two minutes."}
    error(client.post(url, json=body, headers=alice.headers), 409, "order_not_received")
    receive(client, admin, alice, oid)
    error(client.post(url, json=body, headers=mallory.headers), 403, "not_verified_buyer")
    error(
        client.post(f"/orders/{oid}/items/{line + 10**6}/review", json=body, headers=alice.headers),
        403,
        "not_verified_buyer",
    )
    error(client.post(url, json={"rating": 6}, headers=alice.headers), 422, "validation_error")
    error(
        client.post(url, json={"rating": 5, "text": "x" * 2001}, headers=alice.headers),
        422,
        "validation_error",
    )
    error(
        client.post(
            url,
            json={"rating": 5, "images": ["/media/images/" + "0" * 64 + ".png"]},
            headers=alice.headers,
        ),
        422,
        "validation_error",
    )
    made = client.post(url, json=body, headers=alice.headers)
    assert made.status_code == 201, made.text
    review = made.json()
    assert review["rating"] == 4 and review["product_id"] == pid
    again = client.post(
        "/reviews",
        json={"order_id": oid, "order_item_id": line, "rating": 1},
        headers=alice.headers,
    )
    error(again, 409, "already_reviewed")
    assert shop.scalar("SELECT COUNT(*) FROM reviews WHERE order_item_id = :l", l=line) == 1
    assert shop.rows(
        "SELECT rating_count, rating_sum, rating_x100 FROM products WHERE id = :p", p=pid
    ) == [(1, 4, 400)]
    # the rating shows on the next read: detail, card, sort=rating, the reviews page
    detail = client.get(f"/products/{pid}").json()
    assert (detail["rating_count"], detail["rating_average"]) == (1, 4.0)
    found = card(client, pid)
    assert found is not None and (found["rating_count"], found["rating_average"]) == (1, 4.0)
    top = client.get("/products", params={"sort": "rating", "size": 100}).json()["items"]
    ratings = [c["rating_average"] or 0 for c in top]
    assert ratings == sorted(ratings, reverse=True) and pid in [c["id"] for c in top]
    page = client.get(f"/products/{pid}/reviews").json()
    assert [r["id"] for r in page["items"]] == [review["id"]]
    assert page["items"][0]["text"] == body["text"] and page["items"][0]["author"]
    assert (page["rating_count"], page["rating_average"], page["next_cursor"]) == (1, 4.0, None)
    # moderation: only admins; the rating follows a hidden review out and back in
    error(
        client.post(f"/admin/reviews/{review['id']}/hide", headers=alice.headers), 403, "forbidden"
    )
    hidden = client.post(f"/admin/reviews/{review['id']}/hide", headers=admin.headers)
    assert hidden.status_code == 200 and hidden.json()["hidden"] is True
    assert client.post(f"/admin/reviews/{review['id']}/hide", headers=admin.headers).is_success
    assert client.get(f"/products/{pid}/reviews").json()["items"] == []
    assert client.get(f"/products/{pid}").json()["rating_count"] == 0
    assert card(client, pid)["rating_average"] is None  # type: ignore[index]
    shown = client.post(f"/admin/reviews/{review['id']}/show", headers=admin.headers)
    assert shown.status_code == 200 and shown.json()["hidden"] is False
    assert client.get(f"/products/{pid}").json()["rating_average"] == 4.0
    error(
        client.post("/admin/reviews/999999999/hide", headers=admin.headers), 404, "review_not_found"
    )
    # the outbox announced the review, and the buyer is thanked in the inbox
    topics = shop.rows(
        "SELECT topic FROM outbox WHERE aggregate_id = :a AND topic LIKE 'review.%' ORDER BY id",
        a=str(review["id"]),
    )
    assert [t[0] for t in topics] == ["review.created", "review.hidden", "review.shown"]
    wait_for(
        lambda: (
            "review_created"
            in {
                n["kind"]
                for n in client.get("/me/notifications", headers=alice.headers).json()["items"]
            }
        )
    )
