"""Reference data every installation needs: the roles and their RBAC permissions, and the
first admin account. Idempotent: safe to run on every ``migrate``."""

from __future__ import annotations

from sqlalchemy import select

from models import Permission, Role, User
from raymall.db import make_engine, session_factory, transaction
from raymall.ids import now_ms
from raymall.settings import Settings

USER_PERMISSIONS = {
    ("profile", "manage"),
    ("cart", "use"),
    ("orders", "create"),
    ("orders", "read_own"),
    ("flash_sale", "purchase"),
    ("coupons", "use"),
    ("recommendations", "read"),
    ("reviews", "write"),
}
ADMIN_PERMISSIONS = USER_PERMISSIONS | {
    ("catalog", "write"),
    ("catalog", "read_unpublished"),
    ("inventory", "read"),
    ("inventory", "adjust"),
    ("flash_sale", "manage"),
    ("promotions", "manage"),
    ("orders", "read_all"),
    ("orders", "ship"),
    ("orders", "refund"),
    ("shipping", "manage"),
    ("users", "read"),
    ("users", "block"),
    ("reviews", "moderate"),
    ("tracing", "manage"),
}
ROLES = {"user": USER_PERMISSIONS, "admin": ADMIN_PERMISSIONS}


def ensure_reference_data(settings: Settings) -> None:
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        with transaction(session_factory(engine)) as session:
            existing_roles = set(session.scalars(select(Role.name)))
            for role in ROLES:
                if role not in existing_roles:
                    session.add(Role(name=role, description=f"{role} role"))
            session.flush()
            have = {(p.role, p.resource, p.action) for p in session.scalars(select(Permission))}
            for role, grants in ROLES.items():
                for resource, action in sorted(grants):
                    if (role, resource, action) not in have:
                        session.add(Permission(role=role, resource=resource, action=action))
    finally:
        engine.dispose()


def create_admin(settings: Settings, *, email: str, username: str, password: str) -> int:
    """Create an admin, or promote and reset the password of an existing account (found by
    e-mail). A reset revokes the account's refresh-token families, so old sessions cannot
    be refreshed (their access tokens lapse within ``access_token_ttl_s``)."""
    from raymall.accounts import validate_password, validate_username
    from raymall.auth.families import revoke_user_families
    from raymall.errors import UsernameTaken

    email, username = email.strip().lower(), username.strip().lower()
    validate_username(username)
    validate_password(password, email=email, username=username)
    ensure_reference_data(settings)
    password_hash = settings.password_hasher_config().hash(password)
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        with transaction(session_factory(engine)) as session:
            user = session.scalar(select(User).where(User.email == email))
            now = now_ms()
            if user is None:
                if session.scalar(select(User.id).where(User.username == username)) is not None:
                    raise UsernameTaken(f"username {username!r} is taken by another account")
                user = User(
                    email=email,
                    username=username,
                    role="admin",
                    display_name=username,
                    phone="",
                    is_blocked=False,
                    password_hash=password_hash,
                    created_ms=now,
                    updated_ms=now,
                    password_changed_ms=now,
                )
                session.add(user)
            else:
                user.role = "admin"
                user.password_hash = password_hash
                user.password_changed_ms = now
                user.updated_ms = now
                revoke_user_families(session, int(user.id), "admin_reset", now_ms=now)
            session.flush()
            return int(user.id)
    finally:
        engine.dispose()
