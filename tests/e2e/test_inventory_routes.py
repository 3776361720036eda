"""Admin stock routes over HTTP against the running Serve app: RBAC, the memory + database
view, audited restocks that replay by Idempotency-Key, and refusals in the one error shape."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest

from tests.auth_helpers import TestUser
from tests.e2e.test_flash_sale import metric

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sku_id(client: httpx.Client, admin: TestUser) -> int:
    """A SKU created through the catalog (its inventory row starts at zero)."""
    word = secrets.token_hex(4)
    cat = client.post("/admin/categories", json={"name": f"Inv {word}"}, headers=admin.headers)
    assert cat.status_code == 201, cat.text
    body = {
        "title": f"Inventory {word} Kettle",
        "description": "Boils water.",
        "category_id": cat.json()["id"],
        "skus": [{"code": f"INV-{word}", "specs": {"size": "1 L"}, "price_cents": 1999}],
    }
    resp = client.post("/admin/products", json=body, headers=admin.headers)
    assert resp.status_code == 201, resp.text
    return int(resp.json()["skus"][0]["id"])


def _error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["code"] == code and err["request_id"], err
    return err  # type: ignore[no-any-return]


def test_a_new_sku_shows_zero_stock_in_memory_and_in_the_database(
    client: httpx.Client, admin: TestUser, sku_id: int
) -> None:
    resp = client.get(f"/admin/inventory/{sku_id}", headers=admin.headers)
    assert resp.status_code == 200, resp.text
    view = resp.json()
    assert view["memory"]["available"] == 0 and view["database"]["available"] == 0
    assert view["in_sync"] is True


def test_a_restock_replayed_with_its_idempotency_key_counts_once(
    client: httpx.Client, admin: TestUser, sku_id: int
) -> None:
    key = {"Idempotency-Key": f"restock-{secrets.token_hex(4)}", **admin.headers}
    body = {"delta": 20, "reason": "delivery 42"}
    first = client.post(f"/admin/inventory/{sku_id}/adjust", json=body, headers=key)
    assert first.status_code == 200, first.text
    again = client.post(f"/admin/inventory/{sku_id}/adjust", json=body, headers=key)
    assert again.status_code == 200, again.text
    view = client.get(f"/admin/inventory/{sku_id}", headers=admin.headers).json()
    assert view["memory"]["total"] == view["database"]["total"] == 20
    assert view["memory"]["available"] == 20 and view["in_sync"] is True
    assert [a["delta"] for a in view["database"]["recent_adjustments"]] == [20]
    assert view["database"]["recent_adjustments"][0]["actor_id"] == admin.user_id
    reused = client.post(
        f"/admin/inventory/{sku_id}/adjust", json={"delta": 5, "reason": "x"}, headers=key
    )
    _error(reused, 409, "idempotency_key_reused")


def test_a_write_off_never_takes_available_below_zero(
    client: httpx.Client, admin: TestUser, sku_id: int
) -> None:
    before = client.get(f"/admin/inventory/{sku_id}", headers=admin.headers).json()["memory"]
    too_much = {"delta": -(before["available"] + 1), "reason": "broken"}
    resp = client.post(f"/admin/inventory/{sku_id}/adjust", json=too_much, headers=admin.headers)
    _error(resp, 409, "out_of_stock")
    after = client.get(f"/admin/inventory/{sku_id}", headers=admin.headers).json()["memory"]
    assert after == before


@pytest.mark.parametrize(
    "body",
    [{"delta": 0, "reason": "r"}, {"delta": 1}, {"delta": 1, "reason": "  "}, {"delta": "x"}],
)
def test_bad_adjustments_are_422(
    client: httpx.Client, admin: TestUser, sku_id: int, body: dict[str, Any]
) -> None:
    resp = client.post(f"/admin/inventory/{sku_id}/adjust", json=body, headers=admin.headers)
    _error(resp, 422, "validation_error")


def test_unknown_skus_are_404(client: httpx.Client, admin: TestUser) -> None:
    _error(client.get("/admin/inventory/999999999", headers=admin.headers), 404, "not_found")
    resp = client.post(
        "/admin/inventory/999999999/adjust",
        json={"delta": 3, "reason": "r"},
        headers=admin.headers,
    )
    _error(resp, 404, "not_found")


def test_stock_routes_need_an_admin(client: httpx.Client, shopper: TestUser, sku_id: int) -> None:
    _error(client.get(f"/admin/inventory/{sku_id}"), 401, "unauthorized")
    _error(client.get(f"/admin/inventory/{sku_id}", headers=shopper.headers), 403, "forbidden")
    resp = client.post(
        f"/admin/inventory/{sku_id}/adjust",
        json={"delta": 3, "reason": "r"},
        headers=shopper.headers,
    )
    _error(resp, 403, "forbidden")


def detail_stock(client: httpx.Client, product_id: int, sku_id: int) -> tuple[int, bool]:
    body = client.get(f"/products/{product_id}").json()
    (sku,) = [s for s in body["skus"] if s["id"] == sku_id]
    return sku["available"], body["in_stock"]


def until(client: httpx.Client, product_id: int, sku_id: int, want: tuple[int, bool]) -> float:
    """Seconds until the public detail shows ``want`` (fails after the trust window)."""
    started = time.perf_counter()
    while (seen := detail_stock(client, product_id, sku_id)) != want:
        assert time.perf_counter() - started < 1.0, f"detail shows {seen}, expected {want}"
        time.sleep(0.005)
    return time.perf_counter() - started


def test_detail_reads_availability_from_the_read_model_within_its_bound(
    client: httpx.Client, admin: TestUser
) -> None:
    word = secrets.token_hex(4)
    cat = client.post("/admin/categories", json={"name": f"RM {word}"}, headers=admin.headers)
    body = {
        "title": f"Read model {word} Teapot",
        "description": "Steeps tea.",
        "category_id": cat.json()["id"],
        "skus": [{"code": f"RM-{word}", "specs": {}, "price_cents": 999}],
    }
    product = client.post("/admin/products", json=body, headers=admin.headers).json()
    pid, sku = int(product["id"]), int(product["skus"][0]["id"])
    assert client.post(f"/admin/products/{pid}/publish", headers=admin.headers).status_code == 200
    assert detail_stock(client, pid, sku) == (0, False)
    mirror_reads = metric(client, "raymall_availability_reads_total", source="mirror")
    lags = []
    for delta, want in [(3, (3, True)), (-3, (0, False)), (1, (1, True))]:
        resp = client.post(
            f"/admin/inventory/{sku}/adjust",
            json={"delta": delta, "reason": "count"},
            headers=admin.headers,
        )
        assert resp.status_code == 200, resp.text
        lags.append(until(client, pid, sku, want))
    print(f"detail showed each adjustment within {max(lags) * 1000:.1f} ms of its answer")
    # the reads were answered by the replicas' mirrors, not by the shard
    assert metric(client, "raymall_availability_reads_total", source="mirror") > mirror_reads
