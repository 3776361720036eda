"""Bad input gets 422 in the one error shape (never 500), and default deny holds for every
route of the app: anything not on the public allow list refuses anonymous calls."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from tests.auth_helpers import new_user

pytestmark = pytest.mark.e2e

GOOD_REGISTER = {"email": "x@example.com", "username": "someone", "password": "Aa-123456789"}
ADDRESS = {
    "recipient": "R",
    "phone": "+1 555 0100",
    "line1": "1 Main",
    "city": "Springfield",
    "postal_code": "12345",
    "country": "US",
}


def _is_422(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["code"] == "validation_error" and err["request_id"]
    return dict(err)


@pytest.mark.parametrize(
    "body",
    [
        {k: v for k, v in GOOD_REGISTER.items() if k != "password"},  # missing field
        {**GOOD_REGISTER, "email": "not-an-email"},  # bad email
        {**GOOD_REGISTER, "email": "a" * 250 + "@example.com"},  # over-long
        {**GOOD_REGISTER, "username": "u" * 33},  # over-long
        {**GOOD_REGISTER, "password": "P@ss-" + "w" * 200},  # over-long
        {**GOOD_REGISTER, "username": 12345},  # wrong type
        {**GOOD_REGISTER, "password": ["a", "list"]},  # wrong type
        {**GOOD_REGISTER, "role": "admin"},  # unknown field
        {**GOOD_REGISTER, "username": "bad name!"},  # bad characters
    ],
)
def test_bad_registration_is_422(client: httpx.Client, body: dict[str, Any]) -> None:
    _is_422(client.post("/auth/register", json=body))


@pytest.mark.parametrize(
    "body",
    [
        {"password": "x"},
        {"username": "someone"},
        {"username": "someone", "email": "x@example.com", "password": "x"},
        {"email": "nope", "password": "x"},
        {"username": "someone", "password": 123},
        {"username": "someone", "password": "x" * 129},
        [],
        "a string",
    ],
)
def test_bad_login_is_422(client: httpx.Client, body: Any) -> None:
    _is_422(client.post("/auth/login", json=body))


def test_malformed_json_is_422(client: httpx.Client) -> None:
    resp = client.post(
        "/auth/login", content=b'{"username": "x", ', headers={"content-type": "application/json"}
    )
    _is_422(resp)
    _is_422(client.post("/auth/refresh", json={"refresh_token": ""}))
    _is_422(client.post("/auth/refresh", json={"refresh_token": "x" * 5000}))


def test_bad_profile_and_address_input_is_422(client: httpx.Client) -> None:
    user = new_user(client)
    h = user.headers
    for body in (
        {"display_name": ""},
        {"display_name": "d" * 65},
        {"phone": 5551234},
        {"nickname": "x"},
    ):
        _is_422(client.patch("/me", json=body, headers=h))
    for bad in (
        {"country": "USA"},
        {"postal_code": "!" * 5},
        {"line1": "l" * 201},
        {"is_default": "true"},
        {"recipient": None},
        {"extra": 1},
    ):
        _is_422(client.post("/me/addresses", json={**ADDRESS, **bad}, headers=h))
    _is_422(client.post("/me/addresses", json={"recipient": "only"}, headers=h))
    for path in ("/me/addresses/abc", "/me/addresses/0", f"/me/addresses/{2**64}"):
        _is_422(client.get(path, headers=h))
    _is_422(
        client.post(
            "/me/password", json={"current_password": user.password}, headers=h
        )  # missing new_password
    )


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _walk(routes: list[Any], prefix: str = "") -> list[tuple[str, set[str]]]:
    """(path, methods) of every route, looking inside included routers (FastAPI >= 0.16x
    wraps each ``include_router`` in a node that holds the original router)."""
    found: list[tuple[str, set[str]]] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            sub_prefix = prefix + getattr(getattr(route, "include_context", None), "prefix", "")
            found += _walk(list(inner.routes), sub_prefix)
        elif isinstance(route, APIRoute | Route):
            found.append((prefix + route.path, set(route.methods or ())))
    return found


def test_every_non_public_route_refuses_anonymous_calls(app: Any, client: httpx.Client) -> None:
    from deployments import security
    from deployments.ingress import routed_app

    routes = _walk(list(routed_app().routes))
    assert ("/auth/login", {"POST"}) in routes
    checked = []
    for path, methods in routes:
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            if (method, path) in security.PUBLIC_ROUTES or ("*", path) in security.PUBLIC_ROUTES:
                continue
            resp = client.request(method, _fill(path), json={})
            assert resp.status_code == 401, f"{method} {path}: {resp.status_code} {resp.text}"
            assert resp.json()["error"]["code"] == "unauthorized"
            checked.append((method, path))
    assert ("GET", "/admin/users") in checked and (
        "DELETE",
        "/me/addresses/{address_id}",
    ) in checked
