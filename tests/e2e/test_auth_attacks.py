"""Attacks on sign-in over HTTP, as the security review ran them against the running app.

The session's server trusts one proxy hop (tests/conftest.py), so a request that carries
``X-Forwarded-For`` comes from that address, and one without it from a client whose address
is unknown (as behind Serve's HAProxy with no proxy in front). Password checks are counted
by the replicas' own metric, ``raymall_password_hashes_total{op="verify"}``.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest

from tests.auth_helpers import TestUser, fresh_password, login, new_user

pytestmark = pytest.mark.e2e

WRONG = "Wrong-pw-12345"


def _address() -> str:
    return f"198.51.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"


def _from(address: str | None) -> dict[str, str]:
    return {"X-Forwarded-For": address} if address else {}


def _concurrently(app: Any, calls: list[tuple[str, dict[str, Any], dict[str, str]]]) -> list[Any]:
    """POST every (path, body, headers) at once; the responses in order."""

    async def go() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(calls))
        async with httpx.AsyncClient(base_url=app.url, timeout=60, limits=limits) as c:
            return await asyncio.gather(*(c.post(p, json=b, headers=h) for p, b, h in calls))

    return asyncio.run(go())


def _verifications(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    prefix = 'raymall_password_hashes_total{op="verify"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def _burst(app: Any, user: TestUser, n: int, address: str | None = None) -> list[int]:
    body = {"username": user.username, "password": WRONG}
    answers = _concurrently(app, [("/auth/login", body, _from(address))] * n)
    return [r.status_code for r in answers]


def _sign_in(client: httpx.Client, user: TestUser, **extra: Any) -> httpx.Response:
    headers = _from(extra.pop("address", None))
    body = {"username": user.username, "password": user.password, **extra}
    return client.post("/auth/login", json=body, headers=headers)


# ---- finding 3: the limit holds under concurrency -------------------------------------
def test_32_concurrent_wrong_passwords_verify_at_most_the_limit(
    app: Any, client: httpx.Client
) -> None:
    user = new_user(client, sign_in=False)
    limit = app.settings.login_max_failures_per_account
    before = _verifications(client)
    statuses = _burst(app, user, 32)
    verified = _verifications(client) - before
    assert verified <= limit, f"{verified} passwords checked against a limit of {limit}"
    assert statuses.count(401) <= limit and statuses.count(401) + statuses.count(429) == 32


# ---- finding 4: a burst locks out its own client, not the owner ------------------------
def test_after_a_burst_from_one_address_the_owner_signs_in_from_another(
    app: Any, client: httpx.Client
) -> None:
    owner = new_user(client, sign_in=False)
    attacker, home = _address(), _address()
    statuses = _burst(app, owner, 32, attacker)
    assert 429 in statuses
    assert _sign_in(client, owner, address=attacker).status_code == 429  # that client: locked
    resp = _sign_in(client, owner, address=home)
    assert resp.status_code == 200, resp.text


def test_after_a_burst_from_unknown_addresses_the_owner_signs_in_from_a_known_device(
    app: Any, client: httpx.Client
) -> None:
    owner = new_user(client, sign_in=False)
    first = _sign_in(client, owner)
    assert first.status_code == 200, first.text
    device = first.json()["device_token"]
    assert 429 in _burst(app, owner, 32)
    locked = _sign_in(client, owner)  # from an unknown client: locked with the attacker ...
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
    resp = _sign_in(client, owner, device_token=device)  # ... but not from her device
    assert resp.status_code == 200, resp.text
    assert resp.json()["device_token"]
    # another account's device token is no way around the lock
    other = _sign_in(client, new_user(client, sign_in=False))
    stolen = _sign_in(client, owner, device_token=other.json()["device_token"])
    assert stolen.status_code == 429


def test_password_changes_have_their_own_bucket(app: Any, client: httpx.Client) -> None:
    user = new_user(client)
    assert 429 in _burst(app, user, 16)  # sign-in locked for unknown clients
    new_password = fresh_password()
    change = {"current_password": user.password, "new_password": new_password}
    resp = client.post("/me/password", json=change, headers=user.headers)
    assert resp.status_code == 200, resp.text
    user.password = new_password
    user.adopt(resp.json())
    wrong = {"current_password": WRONG, "new_password": fresh_password()}
    codes = [
        client.post("/me/password", json=wrong, headers=user.headers).status_code
        for _ in range(app.settings.login_max_failures_per_account + 1)
    ]
    assert codes[-1] == 429 and set(codes[:-1]) == {422}
    # wrong current passwords lock password changes only: sign-in from elsewhere works
    assert _sign_in(client, user, address=_address()).status_code == 200


# ---- finding 5: registrations are limited per client -------------------------------------
def test_200_rapid_registrations_from_one_client_are_limited(
    app: Any, client: httpx.Client
) -> None:
    address = _address()
    calls = []
    for _ in range(200):
        name = f"r{secrets.token_hex(6)}"
        body = {"email": f"{name}@example.com", "username": name, "password": fresh_password()}
        calls.append(("/auth/register", body, _from(address)))
    answers = [r for i in range(0, 200, 50) for r in _concurrently(app, calls[i : i + 50])]
    statuses = [r.status_code for r in answers]
    assert 429 in statuses, "no registration was limited"
    assert statuses.count(201) <= app.settings.register_max_per_client
    assert statuses.count(429) == 200 - statuses.count(201)
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    # another client still registers
    name = f"r{secrets.token_hex(6)}"
    other = {"email": f"{name}@example.com", "username": name, "password": fresh_password()}
    assert client.post("/auth/register", json=other, headers=_from(_address())).status_code == 201


# ---- finding 12: a refresh ends the access token it replaces -------------------------------
def test_refresh_ends_the_old_access_token_on_every_replica(client: httpx.Client) -> None:
    user = new_user(client)
    old = dict(user.headers)
    resp = client.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    assert resp.status_code == 200, resp.text
    user.adopt(resp.json())
    for _ in range(4):  # requests spread over the replicas
        stale = client.get("/me", headers=old)
        assert stale.status_code == 401 and stale.json()["error"]["code"] == "token_revoked"
        assert client.get("/me", headers=user.headers).status_code == 200
    # the same user's other session is untouched
    other = login(client, TestUser(user.user_id, user.email, user.username, user.password))
    assert client.get("/me", headers=other.headers).status_code == 200
