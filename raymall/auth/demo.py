"""Demo accounts for ``raymall seed --demo``: one admin and one user.

Idempotent: running it again leaves one admin and one user whose passwords are the ones it
returns. Passwords come from ``RAYMALL_DEMO_ADMIN_PASSWORD`` / ``RAYMALL_DEMO_USER_PASSWORD``
when set; otherwise they are generated once and kept in ``var/demo_credentials.json``
(mode 0600), so every later run prints the same ones. An account whose password was
changed since is reset to the returned password. A blocked demo account stays blocked (an
admin unblocks it through the API, which also clears the block in Redis).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import select

from models import User
from raymall.accounts import validate_password
from raymall.bootstrap import ensure_reference_data
from raymall.db import make_engine, session_factory, transaction
from raymall.errors import ValidationFailed
from raymall.ids import now_ms
from raymall.passwords import PasswordHasher
from raymall.settings import Settings

DEMO_ACCOUNTS = {
    "admin": {"email": "demo-admin@example.com", "username": "demo_admin", "role": "admin"},
    "user": {"email": "demo-user@example.com", "username": "demo_user", "role": "user"},
}
CREDENTIALS_FILE = "demo_credentials.json"


def seed_demo_accounts(settings: Settings) -> dict[str, Any]:
    """Create or repair the demo admin and user; return their credentials."""
    passwords = _passwords(settings)
    ensure_reference_data(settings)
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    out: dict[str, Any] = {}
    try:
        for kind, spec in DEMO_ACCOUNTS.items():
            password = passwords[kind]
            with transaction(session_factory(engine)) as session:
                user_id, action = _ensure(
                    session, spec, password, settings.password_hasher_config()
                )
            out[kind] = {
                "id": user_id,
                "email": spec["email"],
                "username": spec["username"],
                "password": password,
                "role": spec["role"],
                "action": action,
            }
    finally:
        engine.dispose()
    out["credentials_file"] = str(_credentials_path(settings))
    return out


def _ensure(
    session: Any, spec: dict[str, str], password: str, hasher: PasswordHasher
) -> tuple[int, str]:
    now = now_ms()
    user = session.scalar(select(User).where(User.email == spec["email"])) or session.scalar(
        select(User).where(User.username == spec["username"])
    )
    if user is None:
        user = User(
            email=spec["email"],
            username=spec["username"],
            role=spec["role"],
            display_name=spec["username"].replace("_", " ").title(),
            phone="",
            is_blocked=False,
            password_hash=hasher.hash(password),
            password_changed_ms=now,
            created_ms=now,
            updated_ms=now,
        )
        session.add(user)
        session.flush()
        return int(user.id), "created"
    action = "unchanged"
    if not hasher.verify(password, user.password_hash):
        user.password_hash = hasher.hash(password)
        user.password_changed_ms = now
        action = "repaired"
    if user.role != spec["role"]:
        user.role = spec["role"]
        action = "repaired"
    if user.is_blocked:
        action = "blocked"
    user.updated_ms = now
    return int(user.id), action


def _credentials_path(settings: Settings) -> Path:
    return Path(settings.var_dir) / CREDENTIALS_FILE


def _passwords(settings: Settings) -> dict[str, str]:
    path = _credentials_path(settings)
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    result: dict[str, str] = {}
    for kind in DEMO_ACCOUNTS:
        configured = getattr(settings, f"demo_{kind}_password")
        if configured is not None:
            result[kind] = configured.get_secret_value()
        else:
            result[kind] = stored.get(kind) or _generate(DEMO_ACCOUNTS[kind])
        try:
            validate_password(result[kind], **_names(DEMO_ACCOUNTS[kind]))
        except ValidationFailed as exc:
            raise ValidationFailed(
                f"RAYMALL_DEMO_{kind.upper()}_PASSWORD: {exc.message}", details=exc.details
            ) from exc
    generated = {k: v for k, v in result.items() if getattr(settings, f"demo_{k}_password") is None}
    if generated and generated != {k: stored.get(k) for k in generated}:
        _write_private(path, {**stored, **generated})
    return result


def _names(spec: dict[str, str]) -> dict[str, str]:
    return {"email": spec["email"], "username": spec["username"]}


def _generate(spec: dict[str, str]) -> str:
    while True:
        candidate = "Rm-" + secrets.token_urlsafe(15) + "7a"
        try:
            validate_password(candidate, **_names(spec))
            return candidate
        except ValidationFailed:
            continue


def _write_private(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
