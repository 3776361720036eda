"""The storefront and admin pages: served from raymall/web/ with a policy that lets them
load nothing from anywhere but the app."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from deployments import web_routes
from deployments.headers import API_CSP, WEB_CSP, HttpPolicy
from deployments.ingress import routed_app


def csp(path: str) -> bytes:
    headers = dict(HttpPolicy().response_headers({"path": path, "headers": []}))
    return headers[b"content-security-policy"]


def test_pages_get_their_own_policy_and_the_api_keeps_its_own() -> None:
    assert csp("/") == csp("/admin") == csp("/web/shop.js") == WEB_CSP
    assert csp("/products") == csp("/webhooks") == API_CSP
    assert b"'unsafe-inline'" not in WEB_CSP and b"http" not in WEB_CSP


def test_pages_and_assets_are_served_and_nothing_else() -> None:
    client = TestClient(routed_app())
    home = client.get("/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert client.get("/admin").text.count("/web/admin.js") == 1
    assert client.get("/web/api.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/web/nothing.js").status_code == 404
    assert client.get("/web/..%2Fsettings.py").status_code in (404, 422)


def test_pages_reference_only_the_apps_own_assets() -> None:
    for name, (body, _) in web_routes.assets().items():
        text = body.decode()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name
        assert "style=" not in text, name  # inline styles are refused by the policy
        assert "<script>" not in text, name  # and so are inline scripts
