"""Flash purchase tokens over HTTP: a sale created with ``require_token`` sells only to a
purchase carrying a valid ``X-Flash-Token`` of the buyer's, minted after the start, once.
Every refusal is checked in both forms of the purchase: the plain one that the replica's
edge answers below FastAPI (``PurchaseShortcut``) and one with a body, which the app
answers; both must say the same. The database is checked after (``check_sale``)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from raymall.flash.tokens import FlashTokens
from raymall.ids import now_ms
from tests.auth_helpers import TestUser
from tests.flash_helpers import bulk_users, check_sale, create_sale
from tests.order_helpers import Shop, restock

pytestmark = pytest.mark.e2e


def stocked(shop: Shop, client: httpx.Client, admin: TestUser, units: int) -> int:
    sku = shop.sku(price_cents=5000)
    restock(client, admin.headers, sku, units)
    return sku


def headers(bearer: str, flash_token: str | None = None, key: str | None = None) -> dict[str, str]:
    out = {"Authorization": f"Bearer {bearer}"}
    if flash_token is not None:
        out["X-Flash-Token"] = flash_token
    if key is not None:
        out["Idempotency-Key"] = key
    return out


def mint(client: httpx.Client, sale_id: int, bearer: str) -> httpx.Response:
    return client.get(f"/flash-sales/{sale_id}/token", headers=headers(bearer))


def token_of(client: httpx.Client, sale_id: int, bearer: str) -> str:
    resp = mint(client, sale_id, bearer)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    return str(resp.json()["token"])


def buy(client: httpx.Client, sale_id: int, bearer: str, *, body: bool = False, **kw: Any) -> Any:
    """POST the purchase: plain (below FastAPI) or with a body (through the app)."""
    path = f"/flash-sales/{sale_id}/purchase"
    extra: dict[str, Any] = {"json": {"quantity": 1}} if body else {}
    return client.post(path, headers=headers(bearer, **kw), **extra)


def refused(client: httpx.Client, sale_id: int, bearer: str, **kw: Any) -> tuple[int, str, Any]:
    """The refusal of a purchase, the same in both forms: (status, code, details)."""
    answers = []
    for body in (False, True):
        resp = buy(client, sale_id, bearer, body=body, **kw)
        err = resp.json()["error"]
        assert err["request_id"] == resp.headers["x-request-id"]
        answers.append((resp.status_code, err["code"], err.get("details")))
    assert answers[0] == answers[1], answers
    return answers[0]


def test_a_token_sale_refuses_missing_foreign_and_reused_tokens_and_a_valid_one_buys(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, 10)
    sale = create_sale(client, admin.headers, sku, quantity=5, per_user_limit=3, require_token=True)
    sid = sale["id"]
    assert sale["require_token"] is True
    assert client.get(f"/flash-sales/{sid}").json()["require_token"] is True
    (_, alice), (_, bob) = bulk_users(shop, 2)

    assert refused(client, sid, alice)[:2] == (403, "flash_token_required")
    bobs = token_of(client, sid, bob)
    status, code, details = refused(client, sid, alice, flash_token=bobs)
    assert (status, code, details["reason"]) == (403, "flash_token_invalid", "other_user")
    other_sale = create_sale(client, admin.headers, sku, quantity=1, require_token=True)
    elsewhere = token_of(client, other_sale["id"], alice)
    status, code, details = refused(client, sid, alice, flash_token=elsewhere)
    assert (status, code, details["reason"]) == (403, "flash_token_invalid", "other_sale")
    status, code, details = refused(client, sid, alice, flash_token=bobs[:-2] + "AA")
    assert (status, code) == (403, "flash_token_invalid")

    mine = token_of(client, sid, alice)
    first = buy(client, sid, alice, flash_token=mine)
    assert first.status_code == 201, first.text
    order_id = first.json()["order_id"]
    # the same token again, in either form, with or without an Idempotency-Key: refused,
    # naming the order it bought (the per-user limit of 3 is not what stops it)
    assert refused(client, sid, alice, flash_token=mine) == (
        409,
        "flash_token_used",
        {"order_id": order_id},
    )
    assert refused(client, sid, alice, flash_token=mine, key="fresh")[1] == "flash_token_used"
    second = buy(client, sid, alice, body=True, flash_token=token_of(client, sid, alice))
    assert second.status_code == 201, second.text
    assert second.json()["order_id"] != order_id
    bought = buy(client, sid, bob, flash_token=bobs)  # bob's own token still buys
    assert bought.status_code == 201, bought.text

    mine_now = client.get(f"/flash-sales/{sid}/purchases/me", headers=headers(alice)).json()
    assert len(mine_now["items"]) == 2
    assert check_sale(shop, sid, sku)["orders"] == 3
    assert client.get(f"/flash-sales/{sid}").json()["sold"] == 3


def test_tokens_are_not_minted_before_the_start_and_earlier_ones_are_refused(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, 10)
    later = create_sale(
        client, admin.headers, sku, quantity=2, starts_in_ms=3_600_000, require_token=True
    )
    ((_, buyer),) = bulk_users(shop, 1)
    early = mint(client, later["id"], buyer)
    assert early.status_code == 409 and early.json()["error"]["code"] == "sale_not_started"
    assert mint(client, later["id"], "not-a-token").status_code == 401
    assert refused(client, later["id"], buyer)[:2] == (409, "sale_not_started")

    # a token signed with the server's own key but issued before the start (a forged mint,
    # or a replica's clock ahead) is refused once the sale runs; one under another key too
    soon = create_sale(
        client, admin.headers, sku, quantity=2, starts_in_ms=1_500, require_token=True
    )
    user_id, bearer = bulk_users(shop, 1)[0]
    server = FlashTokens.from_settings(app.settings)
    before, _ = server.mint(soon["id"], user_id, now_ms())
    foreign, _ = FlashTokens("x" * 48, 60_000).mint(soon["id"], user_id, now_ms() + 2_000)
    time.sleep(max(0.0, (soon["starts_at_ms"] - now_ms()) / 1000) + 0.1)
    status, code, details = refused(client, soon["id"], bearer, flash_token=before)
    assert (status, code, details["reason"]) == (403, "flash_token_invalid", "minted_before_start")
    status, code, details = refused(client, soon["id"], bearer, flash_token=foreign)
    assert (status, code, details["reason"]) == (403, "flash_token_invalid", "bad_signature")
    bought = buy(client, soon["id"], bearer, flash_token=token_of(client, soon["id"], bearer))
    assert bought.status_code == 201, bought.text
    assert check_sale(shop, soon["id"], sku)["orders"] == 1


def test_a_sale_without_require_token_is_unchanged(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, 10)
    sale = create_sale(client, admin.headers, sku, quantity=3, per_user_limit=2)
    assert sale["require_token"] is False
    (_, alice), (_, bob) = bulk_users(shop, 2)
    assert buy(client, sale["id"], alice).status_code == 201
    replay = buy(client, sale["id"], bob, key="k1")
    again = buy(client, sale["id"], bob, key="k1")
    assert (replay.status_code, again.status_code) == (201, 201)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["order_id"] == replay.json()["order_id"]
    ignored = buy(client, sale["id"], alice, body=True, flash_token="whatever")
    assert ignored.status_code == 201, ignored.text
    assert check_sale(shop, sale["id"], sku)["orders"] == 3
