"""Accounts and auth over HTTP against the running Serve app: sign-in, token rules,
refresh rotation and reuse detection, logout, password change, RBAC, blocking, brute-force
limits and addresses."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import httpx
import jwt
import pytest

from raymall.auth.tokens import TokenCodec
from tests.auth_helpers import TestUser, fresh_password, login, new_admin, new_user

pytestmark = pytest.mark.e2e


def _error(resp: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message", "request_id"} <= set(body["error"])
    if code is not None:
        assert body["error"]["code"] == code, body
    return dict(body["error"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _codec(app: Any) -> TokenCodec:
    s = app.settings
    return TokenCodec(
        s.secret("jwt_secret"),
        access_ttl_s=s.access_token_ttl_s,
        refresh_ttl_s=s.refresh_token_ttl_s,
        leeway_s=s.jwt_leeway_s,
    )


# ---- sign-in and token rules -----------------------------------------------------------
def test_login_returns_a_pair_whose_access_token_opens_me(client: httpx.Client) -> None:
    user = new_user(client, sign_in=False)
    resp = client.post("/auth/login", json={"email": user.email, "password": user.password})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == str(user.user_id) and claims["role"] == "user"
    assert {"jti", "iat", "exp", "fid"} <= set(claims)
    me = client.get("/me", headers=_bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["username"] == user.username
    assert "password_hash" not in me.json()


def test_wrong_password_is_refused(client: httpx.Client) -> None:
    user = new_user(client, sign_in=False)
    resp = client.post("/auth/login", json={"username": user.username, "password": "Wrong-pw-123"})
    _error(resp, 401, "invalid_credentials")
    ghost = client.post("/auth/login", json={"username": "nobody_here", "password": "Xx-1234567"})
    assert _error(ghost, 401, "invalid_credentials")["message"] == resp.json()["error"]["message"]


def test_expired_access_token_is_refused(app: Any, client: httpx.Client) -> None:
    user = new_user(client)
    fid = jwt.decode(user.access_token, options={"verify_signature": False})["fid"]
    stale_now = int(time.time()) - app.settings.access_token_ttl_s - app.settings.jwt_leeway_s - 5
    token, _ = _codec(app).issue_access(user.user_id, "user", fid, now=stale_now)
    _error(client.get("/me", headers=_bearer(token)), 401, "token_expired")


def test_tampered_signature_is_refused(client: httpx.Client) -> None:
    user = new_user(client)
    head, body, sig = user.access_token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["role"] = "admin"
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    _error(client.get("/me", headers=_bearer(f"{head}.{forged_body}.{sig}")), 401, "bad_signature")
    other_key = jwt.encode(payload, "not-the-server-secret-" + "z" * 32, algorithm="HS256")
    _error(client.get("/admin/users", headers=_bearer(other_key)), 401, "bad_signature")


def test_alg_none_and_algorithm_confusion_are_refused(client: httpx.Client) -> None:
    user = new_user(client)
    payload = jwt.decode(user.access_token, options={"verify_signature": False})
    payload["role"] = "admin"

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."
    _error(client.get("/admin/users", headers=_bearer(unsigned)), 401)
    hs512 = jwt.encode(payload, "k" * 64, algorithm="HS512")
    _error(client.get("/me", headers=_bearer(hs512)), 401, "invalid_token")


def test_missing_or_malformed_authorization_is_refused(client: httpx.Client) -> None:
    _error(client.get("/me"), 401, "unauthorized")
    _error(client.get("/me", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    _error(client.get("/me", headers=_bearer("not.a.jwt")), 401)


# ---- refresh, logout, password change --------------------------------------------------
def test_refresh_rotates_the_pair(client: httpx.Client) -> None:
    user = new_user(client)
    resp = client.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    assert resp.status_code == 200, resp.text
    pair = resp.json()
    assert pair["refresh_token"] != user.refresh_token
    assert pair["access_token"] != user.access_token
    assert client.get("/me", headers=_bearer(pair["access_token"])).status_code == 200
    again = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 200


def test_refresh_works_with_a_stale_authorization_header(client: httpx.Client) -> None:
    user = new_user(client)
    resp = client.post(
        "/auth/refresh",
        json={"refresh_token": user.refresh_token},
        headers=_bearer("expired.or.garbage"),
    )
    assert resp.status_code == 200, resp.text


def test_replayed_refresh_token_revokes_the_family(client: httpx.Client) -> None:
    user = new_user(client)
    other_session = login(client, TestUser(user.user_id, user.email, user.username, user.password))
    old_refresh, old_access = user.refresh_token, user.access_token
    rotated = client.post("/auth/refresh", json={"refresh_token": old_refresh}).json()
    replay = client.post("/auth/refresh", json={"refresh_token": old_refresh})
    _error(replay, 401, "token_revoked")
    # every token of the family is dead: the rotated pair and the earlier access token
    _error(client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]}), 401)
    _error(client.get("/me", headers=_bearer(rotated["access_token"])), 401, "token_revoked")
    _error(client.get("/me", headers=_bearer(old_access)), 401, "token_revoked")
    # another sign-in of the same user is a different family and keeps working
    assert client.get("/me", headers=other_session.headers).status_code == 200


def test_refresh_token_is_not_an_access_token(client: httpx.Client) -> None:
    user = new_user(client)
    _error(client.get("/me", headers=_bearer(user.refresh_token)), 401)
    _error(client.post("/auth/refresh", json={"refresh_token": user.access_token}), 401)


def test_logout_revokes_the_session(client: httpx.Client) -> None:
    user = new_user(client)
    assert client.post("/auth/logout", headers=user.headers).status_code == 204
    _error(client.get("/me", headers=user.headers), 401, "token_revoked")
    refresh = client.post("/auth/refresh", json={"refresh_token": user.refresh_token})
    _error(refresh, 401, "token_revoked")


def test_password_change_revokes_every_session(client: httpx.Client) -> None:
    user = new_user(client)
    second = login(client, TestUser(user.user_id, user.email, user.username, user.password))
    new_password = fresh_password()
    wrong = client.post(
        "/me/password",
        json={"current_password": "Not-the-pw-1", "new_password": new_password},
        headers=user.headers,
    )
    _error(wrong, 422, "validation_error")
    weak = client.post(
        "/me/password",
        json={"current_password": user.password, "new_password": "short"},
        headers=user.headers,
    )
    _error(weak, 422, "validation_error")
    resp = client.post(
        "/me/password",
        json={"current_password": user.password, "new_password": new_password},
        headers=user.headers,
    )
    assert resp.status_code == 200, resp.text
    for session in (user, second):
        _error(client.get("/me", headers=session.headers), 401, "token_revoked")
        _error(client.post("/auth/refresh", json={"refresh_token": session.refresh_token}), 401)
    assert client.get("/me", headers=_bearer(resp.json()["access_token"])).status_code == 200
    old = client.post("/auth/login", json={"username": user.username, "password": user.password})
    _error(old, 401, "invalid_credentials")
    fresh = client.post("/auth/login", json={"username": user.username, "password": new_password})
    assert fresh.status_code == 200


# ---- registration ---------------------------------------------------------------------
def test_duplicate_email_or_username_is_a_conflict(client: httpx.Client) -> None:
    user = new_user(client, sign_in=False)
    other = f"x{secrets.token_hex(4)}"
    same_email = {"email": user.email.upper(), "username": other, "password": fresh_password()}
    _error(client.post("/auth/register", json=same_email), 409, "email_taken")
    same_name = {
        "email": f"{other}@example.com",
        "username": user.username.upper(),
        "password": fresh_password(),
    }
    _error(client.post("/auth/register", json=same_name), 409, "username_taken")


def test_weak_password_is_refused_at_registration(client: httpx.Client) -> None:
    name = f"w{secrets.token_hex(4)}"
    body = {"email": f"{name}@example.com", "username": name, "password": "password"}
    err = _error(client.post("/auth/register", json=body), 422, "validation_error")
    assert err["details"]["field"] == "password"


# ---- RBAC, blocking ---------------------------------------------------------------------
def test_user_calling_an_admin_route_is_forbidden(client: httpx.Client) -> None:
    user = new_user(client)
    _error(client.get("/admin/users", headers=user.headers), 403, "forbidden")
    _error(client.post(f"/admin/users/{user.user_id}/block", headers=user.headers), 403)


def test_admin_lists_users_page_by_page(app: Any, client: httpx.Client) -> None:
    admin = new_admin(app, client)
    prefix = f"pg{secrets.token_hex(3)}"
    made = {new_user(client, prefix=prefix, sign_in=False).user_id for _ in range(3)}
    seen: set[int] = set()
    after = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, "q": prefix}
        if after is not None:
            params["after_id"] = after
        page = client.get("/admin/users", params=params, headers=admin.headers).json()
        seen |= {u["id"] for u in page["items"]}
        assert all("password_hash" not in u for u in page["items"])
        after = page["next_after_id"]
        if after is None:
            break
    assert seen == made
    bad = client.get("/admin/users", params={"limit": 1000}, headers=admin.headers)
    _error(bad, 422, "validation_error")


def test_blocked_user_is_locked_out_at_once(app: Any, client: httpx.Client) -> None:
    admin = new_admin(app, client)
    user = new_user(client)
    assert client.get("/me", headers=user.headers).status_code == 200
    resp = client.post(f"/admin/users/{user.user_id}/block", headers=admin.headers)
    assert resp.status_code == 200 and resp.json()["is_blocked"] is True
    _error(client.get("/me", headers=user.headers), 403, "account_blocked")
    _error(client.post("/auth/refresh", json={"refresh_token": user.refresh_token}), 403)
    creds = {"username": user.username, "password": user.password}
    _error(client.post("/auth/login", json=creds), 403, "account_blocked")
    blocked = client.get("/admin/users", params={"blocked": True}, headers=admin.headers)
    assert user.user_id in {u["id"] for u in blocked.json()["items"]}
    _error(client.post(f"/admin/users/{admin.user_id}/block", headers=admin.headers), 409)
    _error(client.post("/admin/users/999999999999/block", headers=admin.headers), 404)

    assert client.post(f"/admin/users/{user.user_id}/unblock", headers=admin.headers).is_success
    relogin = client.post("/auth/login", json=creds)
    assert relogin.status_code == 200
    assert client.get("/me", headers=_bearer(relogin.json()["access_token"])).status_code == 200
    _error(client.get("/me", headers=user.headers), 401, "token_revoked")  # old session stays dead


def test_a_legacy_bcrypt_hash_is_upgraded_at_sign_in(app: Any, client: httpx.Client) -> None:
    from sqlalchemy import select

    from models import User
    from raymall.db import make_engine, session_factory, transaction
    from raymall.passwords import PasswordHasher

    user = new_user(client, sign_in=False)
    engine = make_engine(app.settings.resolved_database_url, pool_size=1)
    sessions = session_factory(engine)

    def stored() -> str:
        with transaction(sessions) as s:
            return str(s.scalar(select(User.password_hash).where(User.id == user.user_id)))

    try:
        assert stored().startswith("$argon2id$")
        legacy = PasswordHasher(algorithm="bcrypt", bcrypt_rounds=4).hash(user.password)
        with transaction(sessions) as s:
            s.get(User, user.user_id).password_hash = legacy  # type: ignore[union-attr]
        creds = {"email": user.email, "password": user.password}
        _error(client.post("/auth/login", json={**creds, "password": "Wrong-pass-123"}), 401)
        assert stored() == legacy  # a failed sign-in changes nothing
        assert client.post("/auth/login", json=creds).status_code == 200
        upgraded = stored()
        assert upgraded.startswith("$argon2id$") and upgraded != legacy
        assert client.post("/auth/login", json=creds).status_code == 200
        assert stored() == upgraded  # already current: not rewritten
    finally:
        engine.dispose()


# ---- brute force ------------------------------------------------------------------------
def test_repeated_failed_logins_are_throttled_with_retry_after(
    app: Any, client: httpx.Client
) -> None:
    user = new_user(client, sign_in=False)
    bad = {"username": user.username, "password": "Wrong-pw-123"}
    for _ in range(app.settings.login_max_failures_per_account):
        _error(client.post("/auth/login", json=bad), 401, "invalid_credentials")
    throttled = client.post("/auth/login", json=bad)
    err = _error(throttled, 429, "rate_limited")
    assert int(throttled.headers["Retry-After"]) >= 1
    assert err["details"]["scope"] == "account"
    # the right password does not get through either while the account is throttled
    good = client.post("/auth/login", json={"email": user.email, "password": user.password})
    _error(good, 429, "rate_limited")
    # other accounts are unaffected
    assert new_user(client).access_token


# ---- profile and addresses ----------------------------------------------------------------
ADDRESS = {
    "recipient": "Ada Lovelace",
    "phone": "+44 20 7946 0000",
    "line1": "12 St James's Square",
    "city": "London",
    "postal_code": "SW1Y 4JH",
    "country": "GB",
}


def test_profile_can_be_read_and_patched(client: httpx.Client) -> None:
    user = new_user(client)
    resp = client.patch(
        "/me", json={"display_name": "Ada", "phone": "+44 1234 5678"}, headers=user.headers
    )
    assert resp.status_code == 200 and resp.json()["display_name"] == "Ada"
    assert client.get("/me", headers=user.headers).json()["phone"] == "+44 1234 5678"
    _error(client.patch("/me", json={"role": "admin"}, headers=user.headers), 422)
    _error(client.patch("/me", json={"phone": "call me maybe"}, headers=user.headers), 422)
    assert client.get("/me", headers=user.headers).json()["role"] == "user"


def test_addresses_keep_exactly_one_default(client: httpx.Client) -> None:
    user = new_user(client)
    h = user.headers
    first = client.post("/me/addresses", json=ADDRESS, headers=h).json()
    second = client.post("/me/addresses", json={**ADDRESS, "line1": "2 Road"}, headers=h).json()
    assert first["is_default"] and not second["is_default"]
    made = client.post("/me/addresses/{}/default".format(second["id"]), headers=h)
    assert made.status_code == 200 and made.json()["is_default"]
    items = client.get("/me/addresses", headers=h).json()["items"]
    assert [a["id"] for a in items if a["is_default"]] == [second["id"]]
    patched = client.patch(f"/me/addresses/{first['id']}", json={"city": "Bath"}, headers=h)
    assert patched.json()["city"] == "Bath"
    assert client.delete(f"/me/addresses/{second['id']}", headers=h).status_code == 204
    items = client.get("/me/addresses", headers=h).json()["items"]
    assert [(a["id"], a["is_default"]) for a in items] == [(first["id"], True)]


def test_user_cannot_reach_another_users_address(client: httpx.Client) -> None:
    alice, bob = new_user(client), new_user(client)
    address = client.post("/me/addresses", json=ADDRESS, headers=bob.headers).json()
    path = f"/me/addresses/{address['id']}"
    for resp in (
        client.get(path, headers=alice.headers),
        client.patch(path, json={"city": "Evil"}, headers=alice.headers),
        client.post(path + "/default", headers=alice.headers),
        client.delete(path, headers=alice.headers),
    ):
        err = _error(resp, 404, "not_found")
        assert "Lovelace" not in json.dumps(err)
    assert client.get(path, headers=bob.headers).json()["city"] == "London"
    assert client.get("/me/addresses", headers=alice.headers).json()["items"] == []
