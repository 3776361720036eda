"""The review's bad-input findings against the running app (Serve's proxy in front): a
non-UTF-8 request id, a trailing slash with a forged Host, nested and forged payment
callbacks and a forged listing cursor are each a 4xx in the one error shape, never a 500,
and every answer carries the security headers."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx

from raymall.orders.signing import signed_headers
from tests.order_helpers import Shop
from tests.unit.test_payment_callback import NESTED


def error_of(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err: dict[str, Any] = resp.json()["error"]
    assert err["code"] == code and err["request_id"] == resp.headers["x-request-id"]
    return err


def test_a_request_id_that_is_not_utf8_is_replaced_not_a_500(client: httpx.Client) -> None:
    for path in ("/healthz", "/products", "/no/such/route"):
        for bad in (b"\xff\xfe", b"a b c", b"<x>" * 30):
            resp = client.get(path, headers={"X-Request-ID": bad})  # type: ignore[dict-item]
            assert resp.status_code in (200, 404), resp.text
            rid = resp.headers["x-request-id"]
            assert len(rid) >= 16 and rid.isascii() and " " not in rid and "<" not in rid
    kept = client.get("/no/such/route", headers={"X-Request-ID": "trace-1.2:3"})
    assert error_of(kept, 404, "not_found")["request_id"] == "trace-1.2:3"


def test_a_trailing_slash_is_404_and_never_redirects_to_the_host_header(
    client: httpx.Client,
) -> None:
    resp = client.get("/products/", headers={"Host": "evil.example"}, follow_redirects=False)
    error_of(resp, 404, "not_found")
    assert "location" not in resp.headers


def test_every_answer_carries_the_security_headers(client: httpx.Client) -> None:
    for resp in (client.get("/healthz"), client.get("/products"), client.get("/nope")):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in resp.headers["content-security-policy"]


def test_a_nested_callback_is_refused_and_audited_signed_or_not(
    app: Any, client: httpx.Client, shop: Shop
) -> None:
    audits = shop.scalar("SELECT COUNT(*) FROM payment_audit")
    unsigned = client.post("/payments/callback", content=NESTED)
    error_of(unsigned, 401, "bad_signature")
    headers = signed_headers(app.settings.secret("payment_secret"), int(time.time()), NESTED)
    signed = client.post("/payments/callback", content=NESTED, headers=headers)
    error_of(signed, 422, "validation_error")
    assert shop.scalar("SELECT COUNT(*) FROM payment_audit") == audits + 2
    reasons = shop.rows("SELECT reason FROM payment_audit ORDER BY id DESC LIMIT 2")
    assert [r[0] for r in reasons] == ["malformed", "missing_signature"]


def test_a_forged_listing_cursor_outside_64_bits_is_422(client: httpx.Client) -> None:
    raw = json.dumps({"s": "newest", "v": 2**63, "i": 1}).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    error_of(client.get("/products", params={"cursor": cursor}), 422, "validation_error")
    unsigned = base64.urlsafe_b64encode(b'{"t":"x","o":1000000000}').decode().rstrip("=")
    resp = client.get("/products/search", params={"q": "kettle", "cursor": unsigned})
    error_of(resp, 422, "validation_error")


def test_bytes_that_are_not_utf8_in_any_header_or_the_query_are_never_a_5xx(
    client: httpx.Client, shopper: Any
) -> None:
    bad = b"\xff\xfe\xc3"
    token = shopper.headers["Authorization"]
    probes: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/products", {"Authorization": b"Bearer " + bad}),
        ("GET", "/me", {"Authorization": b"Bearer " + bad}),
        ("GET", "/products", {"Origin": bad, "X-Forwarded-For": bad}),
        ("GET", "/products/search?q=kettle%FF%FE", {}),
        ("GET", "/products?cursor=%FF%FE", {}),
        ("GET", "/products/%FF", {}),
        ("POST", "/orders", {"Authorization": token, "Idempotency-Key": bad}),
        ("POST", "/flash-sales/1/purchase", {"Authorization": token, "Idempotency-Key": bad}),
        ("POST", "/payments/callback", {"X-Signature": bad, "X-Timestamp": bad}),
        ("GET", "/categories", {"Accept": bad, "Accept-Encoding": bad}),
    ]
    for method, path, headers in probes:
        resp = client.request(method, path, headers=headers)
        assert resp.status_code < 500, (method, path, resp.status_code, resp.text)
        assert resp.headers["content-type"].startswith("application/json"), (path, resp.text)
