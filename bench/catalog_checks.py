"""The catalog bench's sanity checks: raymall and the plain-shop peer must give the same
answers, and the answers the database holds, before either is timed.

Each check takes the two servers' responses for one request and raises ``CheckFailed``
naming the first difference. What the peer answers is the contract: every field of it
must be in raymall's answer with the same value. Fields only raymall has are returned
(as paths such as ``skus[].updated``) so the report can name them; they fail nothing.
"""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Connection

SKUS_SQL = (
    "SELECT s.id, s.price_cents, COALESCE(i.available, 0) FROM skus s"
    " LEFT JOIN inventory i ON i.sku_id = s.id WHERE s.product_id = %s"
    " ORDER BY s.price_cents, s.id"
)
PAGE_SQL = (
    "SELECT id FROM products WHERE status = 'published'"
    " ORDER BY created_ms DESC, id DESC LIMIT %s OFFSET %s"
)
COUNT_SQL = "SELECT COUNT(*) FROM products WHERE status = 'published'"


class CheckFailed(RuntimeError):
    pass


def compare(want: Any, got: Any, path: str = "", extra: set[str] | None = None) -> set[str]:
    """Raise on the first value of ``want`` that ``got`` lacks or holds differently;
    answer the paths of the fields only ``got`` has."""
    extra = set() if extra is None else extra
    if isinstance(want, dict):
        if not isinstance(got, dict):
            raise CheckFailed(f"{path or 'body'}: {got!r} is not an object")
        for key, value in want.items():
            if key not in got:
                raise CheckFailed(f"{path}.{key} is missing")
            compare(value, got[key], f"{path}.{key}", extra)
        extra |= {f"{_generic(path)}.{k}".lstrip(".") for k in got.keys() - want.keys()}
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            raise CheckFailed(f"{path}: {got!r} differs from {want!r}")
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            compare(w, g, f"{path}[{i}]", extra)
    elif type(want) is not type(got) or want != got:
        raise CheckFailed(f"{path}: raymall {got!r}, peer {want!r}")
    return extra


def _generic(path: str) -> str:
    """``skus[3].specs`` -> ``skus[].specs``: one note per field, not per item."""
    out, skipping = [], False
    for ch in path:
        if ch == "[":
            out.append("[]")
            skipping = True
        elif ch == "]":
            skipping = False
        elif not skipping:
            out.append(ch)
    return "".join(out)


def _json(what: str, responses: dict[str, httpx.Response], status: int) -> dict[str, Any]:
    bodies = {}
    for server, resp in responses.items():
        if resp.status_code != status:
            raise CheckFailed(f"{what}: {server} answered {resp.status_code}: {resp.text[:300]}")
        if not resp.headers.get("content-type", "").startswith("application/json"):
            raise CheckFailed(f"{what}: {server} answered {resp.headers.get('content-type')}")
        bodies[server] = resp.json()
    return bodies


def check_detail(
    conn: Connection, product_id: int, responses: dict[str, httpx.Response]
) -> set[str]:
    """Same document on both; SKUs, prices and availability as the database holds them."""
    what = f"GET /products/{product_id}"
    bodies = _json(what, responses, 200)
    try:
        extra = compare(bodies["peer"], bodies["raymall"])
    except CheckFailed as exc:
        raise CheckFailed(f"{what}: {exc}") from None
    rows = conn.exec_driver_sql(SKUS_SQL, (product_id,)).all()
    want = [(int(r[0]), int(r[1]), int(r[2]), int(r[2]) > 0) for r in rows]
    for server, doc in bodies.items():
        got = [(s["id"], s["price_cents"], s["available"], s["in_stock"]) for s in doc["skus"]]
        if got != want:
            raise CheckFailed(f"{what}: {server} SKUs {got}, the database {want}")
        if doc["id"] != product_id or doc["status"] != "published":
            raise CheckFailed(f"{what}: {server} answered product {doc['id']} ({doc['status']})")
        if doc["in_stock"] != any(w[3] for w in want):
            raise CheckFailed(f"{what}: {server} says in_stock {doc['in_stock']}")
    return extra


def check_listing(
    conn: Connection, page: int, size: int, responses: dict[str, httpx.Response]
) -> set[str]:
    """Same page on both; the products and total the database holds, newest first."""
    what = f"GET /products?page={page}&size={size}"
    bodies = _json(what, responses, 200)
    try:
        extra = compare(bodies["peer"], bodies["raymall"])
    except CheckFailed as exc:
        raise CheckFailed(f"{what}: {exc}") from None
    ids = [int(r[0]) for r in conn.exec_driver_sql(PAGE_SQL, (size, (page - 1) * size))]
    total = int(conn.exec_driver_sql(COUNT_SQL).scalar() or 0)
    for server, body in bodies.items():
        got = [item["id"] for item in body["items"]]
        if got != ids or body["total"] != total:
            raise CheckFailed(f"{what}: {server} {got} of {body['total']}, the database {ids}")
    return extra


def check_not_found(product_id: int, responses: dict[str, httpx.Response]) -> None:
    for server, resp in responses.items():
        if resp.status_code != 404:
            raise CheckFailed(f"GET /products/{product_id}: {server} answered {resp.status_code}")
