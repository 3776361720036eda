"""Account rules with no services: password and username policy, request schemas, the
permission cache, the edge's authentication rules and client-IP resolution."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from deployments import security
from deployments.auth_schemas import AddressIn, LoginIn, ProfilePatch, RegisterIn
from raymall.accounts import validate_password, validate_username
from raymall.auth.permissions import PermissionCache
from raymall.errors import InvalidToken, Unauthorized, ValidationFailed
from raymall.ratelimit import Limit


@pytest.mark.parametrize(
    "password",
    ["short1A!", "alllowercaseletters", "ALLUPPER12345", "x" * 129, "abcdefghij12"],
)
def test_weak_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValidationFailed):
        validate_password(password)


def test_password_containing_the_username_or_email_is_refused() -> None:
    validate_password("Correct-Horse-9")
    with pytest.raises(ValidationFailed, match="username"):
        validate_password("Alice-Secret-9", username="alice")
    with pytest.raises(ValidationFailed):
        validate_password("xBobby.Jones#1", email="bobby.jones@example.com")


@pytest.mark.parametrize("name", ["ab", "a" * 33, "with space", "semi;colon", "ünï"])
def test_bad_usernames_are_refused(name: str) -> None:
    with pytest.raises(ValidationFailed):
        validate_username(name)


def test_login_needs_exactly_one_of_email_or_username() -> None:
    assert LoginIn(username="alice", password="x").username == "alice"
    assert LoginIn(email="a@example.com", password="x").email == "a@example.com"
    with pytest.raises(ValidationError):
        LoginIn(password="x")
    with pytest.raises(ValidationError):
        LoginIn(email="a@example.com", username="alice", password="x")


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.com", "username": "alice"},  # missing password
        {"email": "not-an-email", "username": "alice", "password": "x"},
        {"email": "a@example.com", "username": "alice", "password": 1234567890},
        {"email": "a@example.com", "username": "a" * 40, "password": "x"},
        {"email": "a@example.com", "username": "alice", "password": "x", "role": "admin"},
    ],
)
def test_register_schema_refuses_bad_input(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RegisterIn(**body)


def test_address_schema_is_strict() -> None:
    good = {
        "recipient": "Ada",
        "phone": "+44 20 7946 0000",
        "line1": "1 Main St",
        "city": "London",
        "postal_code": "SW1A 1AA",
        "country": "GB",
    }
    assert AddressIn(**good).is_default is False
    for bad in ({"country": "gb"}, {"is_default": "yes"}, {"phone": "call me"}, {"zip": "1"}):
        with pytest.raises(ValidationError):
            AddressIn(**{**good, **bad})
    with pytest.raises(ValidationError):
        ProfilePatch(display_name="bad\x00name")


def test_permission_cache_loads_once_then_refreshes_in_the_background() -> None:
    async def scenario() -> None:
        tables = [{("user", "cart", "use")}, {("user", "cart", "use"), ("user", "x", "y")}]
        calls = 0

        async def load() -> set[tuple[str, str, str]]:
            nonlocal calls
            calls += 1
            return tables[min(calls - 1, 1)]

        cache = PermissionCache(load, ttl_s=3600)
        assert await cache.allowed("user", "cart", "use")
        assert not await cache.allowed("user", "x", "y")
        assert calls == 1
        cache._loaded_at -= 7200  # stale: the next check answers from the old table
        assert not await cache.allowed("user", "x", "y")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert calls == 2 and await cache.allowed("user", "x", "y")

    asyncio.run(scenario())


def test_permission_cache_keeps_the_last_table_when_a_reload_fails() -> None:
    async def scenario() -> None:
        state = {"fail": False}

        async def load() -> set[tuple[str, str, str]]:
            if state["fail"]:
                raise ConnectionError("database down")
            return {("admin", "users", "block")}

        cache = PermissionCache(load, ttl_s=1)
        assert await cache.allowed("admin", "users", "block")
        state["fail"] = True
        cache._loaded_at -= 10
        assert await cache.allowed("admin", "users", "block")
        await asyncio.sleep(0.01)
        assert await cache.allowed("admin", "users", "block")

    asyncio.run(scenario())


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        Limit("x", 0, 1)
    with pytest.raises(ValueError):
        Limit("x", 1, 0)
    assert Limit("x", 10, 5).interval_ms == 500 and Limit("x", 10, 5, burst=3).capacity == 3


# ---- the edge ---------------------------------------------------------------------------
class _Route:
    def __init__(self, path: str) -> None:
        self.path = path


def _request(
    path: str,
    headers: dict[str, str] | None = None,
    hops: int = 0,
    verify: Any = None,
    ha_proxy: bool = False,
) -> Request:
    settings = SimpleNamespace(trusted_proxy_hops=hops, ha_proxy=ha_proxy)
    app = SimpleNamespace(
        state=SimpleNamespace(
            ctx=SimpleNamespace(settings=settings),
            verify_token=verify,
        )
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("10.0.0.9", 5555),
        "route": _Route(path),
        "app": app,
    }
    return Request(scope)


def test_client_ip_is_the_peer_unless_proxies_are_trusted() -> None:
    xff = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"}
    assert security.client_ip(_request("/x", xff, hops=0)) == "10.0.0.9"
    assert security.client_ip(_request("/x", xff, hops=1)) == "203.0.113.7"
    assert security.client_ip(_request("/x", xff, hops=2)) == "6.6.6.6"
    assert security.client_ip(_request("/x", xff, hops=3)) == "10.0.0.9"
    assert security.client_ip(_request("/x", {"X-Forwarded-For": "junk"}, hops=1)) is None


def test_client_ip_is_unknown_behind_haproxy_without_trusted_hops() -> None:
    """HAProxy passes a client's own X-Forwarded-For through: never believe it by default."""
    spoofed = {"X-Forwarded-For": "1.2.3.4"}
    assert security.client_ip(_request("/x", spoofed, ha_proxy=True)) is None
    assert security.client_ip(_request("/x", spoofed, hops=1, ha_proxy=True)) == "1.2.3.4"
    assert security.client_ip(_request("/x", None, hops=1, ha_proxy=True)) is None


def test_a_stale_token_on_a_public_route_is_ignored_but_refused_elsewhere() -> None:
    async def bad_verify(request: Request, token: str) -> security.Principal:
        raise InvalidToken("expired")

    headers = {"Authorization": "Bearer stale"}
    public_request = _request("/auth/refresh", headers, verify=bad_verify)
    security.public("POST", "/auth/refresh")
    asyncio.run(security.authenticate(public_request))
    assert public_request.state.principal is None

    private_request = _request("/me/password", headers, verify=bad_verify)
    with pytest.raises(Unauthorized):
        asyncio.run(security.authenticate(private_request))
    with pytest.raises(Unauthorized):
        asyncio.run(security.authenticate(_request("/me/password")))


def test_a_token_that_cannot_be_checked_now_is_anonymous_on_a_public_route_only() -> None:
    from raymall.errors import Unavailable

    async def not_loaded(request: Request, token: str) -> security.Principal:
        raise Unavailable("token revocation state is not loaded yet; retry")

    headers = {"Authorization": "Bearer fine"}
    security.public("POST", "/auth/refresh")
    public_request = _request("/auth/refresh", headers, verify=not_loaded)
    asyncio.run(security.authenticate(public_request))
    assert public_request.state.principal is None
    with pytest.raises(Unavailable):  # a route that needs the caller: 503, not anonymous
        asyncio.run(security.authenticate(_request("/me/password", headers, verify=not_loaded)))
