"""Signed-in test users for end-to-end tests of any area.

from tests.auth_helpers import new_user, new_admin
alice = new_user(client)                 # registered and signed in
client.get("/me", headers=alice.headers)
admin = new_admin(app, client)           # created with raymall.bootstrap.create_admin
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class TestUser:
    __test__ = False  # not a test class

    user_id: int
    email: str
    username: str
    password: str
    access_token: str = ""
    refresh_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    def adopt(self, pair: dict[str, Any]) -> TestUser:
        self.access_token, self.refresh_token = pair["access_token"], pair["refresh_token"]
        return self


def fresh_password() -> str:
    return f"Pw-{secrets.token_hex(6)}-xY9!"


def login(client: httpx.Client, user: TestUser, headers: dict[str, str] | None = None) -> TestUser:
    """Sign ``user`` in by username (with extra request ``headers``, e.g. a guest cart
    token); the user now holds the new token pair."""
    body = {"username": user.username, "password": user.password}
    resp = client.post("/auth/login", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    return user.adopt(resp.json())


def new_user(client: httpx.Client, *, prefix: str = "u", sign_in: bool = True) -> TestUser:
    name = f"{prefix}{secrets.token_hex(5)}"
    password = fresh_password()
    body = {"email": f"{name}@example.com", "username": name, "password": password}
    resp = client.post("/auth/register", json=body)
    assert resp.status_code == 201, resp.text
    user = TestUser(resp.json()["id"], body["email"], name, password)
    return login(client, user) if sign_in else user


def new_admin(app: Any, client: httpx.Client) -> TestUser:
    from raymall.bootstrap import create_admin

    name = f"adm{secrets.token_hex(5)}"
    password = fresh_password()
    email = f"{name}@example.com"
    user_id = create_admin(app.settings, email=email, username=name, password=password)
    return login(client, TestUser(user_id, email, name, password))
