"""User accounts in the database: plain functions over a session (run them in a thread).

E-mail addresses and usernames are stored lower-case, so uniqueness means the same thing
on SQLite (case-sensitive) and MySQL (case-insensitive collations).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models import User
from raymall.errors import EmailTaken, NotFound, UsernameTaken


def normalize_email(email: str) -> str:
    return email.strip().lower()


def normalize_username(username: str) -> str:
    return username.strip().lower()


def user_view(user: User, *, admin: bool = False) -> dict[str, Any]:
    """The public shape of an account (never the password hash)."""
    view: dict[str, Any] = {
        "id": int(user.id),
        "email": user.email,
        "username": user.username,
        "role": user.role,
        "display_name": user.display_name or "",
        "phone": user.phone or "",
        "created_ms": int(user.created_ms),
    }
    if admin:
        view["is_blocked"] = bool(user.is_blocked)
        view["updated_ms"] = int(user.updated_ms)
    return view


def check_available(session: Session, email: str, username: str) -> None:
    """Raise EmailTaken / UsernameTaken if either is in use."""
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken("an account with this e-mail already exists", details={"field": "email"})
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UsernameTaken("this username is taken", details={"field": "username"})


def create_user(
    session: Session,
    *,
    email: str,
    username: str,
    password_hash: str,
    now_ms: int,
    role: str = "user",
    display_name: str = "",
) -> User:
    email, username = normalize_email(email), normalize_username(username)
    check_available(session, email, username)
    user = User(
        email=email,
        username=username,
        password_hash=password_hash,
        role=role,
        display_name=display_name or username,
        phone="",
        is_blocked=False,
        password_changed_ms=now_ms,
        created_ms=now_ms,
        updated_ms=now_ms,
    )
    session.add(user)
    session.flush()  # a concurrent registration surfaces here as IntegrityError
    return user


def find_for_login(session: Session, *, email: str | None, username: str | None) -> User | None:
    if email is not None:
        return session.scalar(select(User).where(User.email == normalize_email(email)))
    if username is not None:
        return session.scalar(select(User).where(User.username == normalize_username(username)))
    return None


def get_user(session: Session, user_id: int, *, for_update: bool = False) -> User:
    stmt = select(User).where(User.id == user_id)
    if for_update:
        stmt = stmt.with_for_update()
    user = session.scalar(stmt)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def update_profile(session: Session, user_id: int, changes: dict[str, Any], now_ms: int) -> User:
    user = get_user(session, user_id, for_update=True)
    for name in ("display_name", "phone"):
        if name in changes and changes[name] is not None:
            setattr(user, name, changes[name])
    user.updated_ms = now_ms
    session.flush()
    return user


def set_password_hash(session: Session, user: User, password_hash: str, now_ms: int) -> None:
    user.password_hash = password_hash
    user.password_changed_ms = now_ms
    user.updated_ms = now_ms
    session.flush()


def set_blocked(session: Session, user_id: int, blocked: bool, now_ms: int) -> User:
    user = get_user(session, user_id, for_update=True)
    user.is_blocked = blocked
    user.updated_ms = now_ms
    session.flush()
    return user


def blocked_user_ids(session: Session) -> list[int]:
    return [int(i) for i in session.scalars(select(User.id).where(User.is_blocked.is_(True)))]


def list_users(
    session: Session,
    *,
    limit: int,
    after_id: int | None = None,
    query: str | None = None,
    blocked: bool | None = None,
) -> list[User]:
    """Keyset pagination by id: stable under concurrent sign-ups."""
    stmt = select(User).order_by(User.id).limit(limit)
    if after_id is not None:
        stmt = stmt.where(User.id > after_id)
    if query:
        pattern = _escape_like(query.strip().lower()) + "%"
        stmt = stmt.where(
            or_(User.email.like(pattern, escape="\\"), User.username.like(pattern, escape="\\"))
        )
    if blocked is not None:
        stmt = stmt.where(User.is_blocked.is_(blocked))
    return list(session.scalars(stmt))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
