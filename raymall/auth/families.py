"""Refresh-token families in the database: the record of which refresh token is current.

A family is one sign-in. Each refresh rotates it: the presented token must be the
family's ``current_jti``, and a compare-and-set swaps in the next one, so of two requests
presenting the same token at most one rotates. Any other presentation of a token that was
once valid (an already-rotated one) is treated as theft and revokes the family.

These are plain functions over a SQLAlchemy session (run them in a thread); the Redis
side of revocation, which every request consults, is ``raymall.auth.revocations``.
"""

from __future__ import annotations

import enum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import RefreshFamily
from raymall.auth.tokens import new_id


class Rotation(enum.Enum):
    ROTATED = "rotated"
    REUSED = "reused"  # an old token of a live family: the family is now revoked
    REVOKED = "revoked"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


def create_family(session: Session, user_id: int, *, ttl_s: int, now_ms: int) -> tuple[str, str]:
    """Start a family; returns (family id, first refresh jti)."""
    family_id, jti = new_id(), new_id()
    session.add(
        RefreshFamily(
            id=family_id,
            user_id=user_id,
            current_jti=jti,
            generation=0,
            created_ms=now_ms,
            expires_ms=now_ms + ttl_s * 1000,
        )
    )
    session.flush()
    return family_id, jti


def rotate(
    session: Session, family_id: str, presented_jti: str, user_id: int, *, ttl_s: int, now_ms: int
) -> tuple[Rotation, str | None]:
    """Swap the family's current token for a new one, or say why not.

    A reuse revokes the family in the same transaction, so the caller must commit the
    session whatever the outcome."""
    next_jti = new_id()
    result = session.execute(
        update(RefreshFamily)
        .where(
            RefreshFamily.id == family_id,
            RefreshFamily.user_id == user_id,
            RefreshFamily.current_jti == presented_jti,
            RefreshFamily.revoked_ms.is_(None),
            RefreshFamily.expires_ms > now_ms,
        )
        .values(
            current_jti=next_jti,
            generation=RefreshFamily.generation + 1,
            expires_ms=now_ms + ttl_s * 1000,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return Rotation.ROTATED, next_jti
    family = session.get(RefreshFamily, family_id, populate_existing=True)
    if family is None or family.user_id != user_id:
        return Rotation.UNKNOWN, None
    if family.revoked_ms is not None:
        return Rotation.REVOKED, None
    if family.expires_ms <= now_ms:
        return Rotation.EXPIRED, None
    revoke_family(session, family_id, "reuse", now_ms=now_ms)
    return Rotation.REUSED, None


def revoke_family(session: Session, family_id: str, reason: str, *, now_ms: int) -> bool:
    """Revoke one family; True if it was live."""
    result = session.execute(
        update(RefreshFamily)
        .where(RefreshFamily.id == family_id, RefreshFamily.revoked_ms.is_(None))
        .values(revoked_ms=now_ms, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def revoke_user_families(session: Session, user_id: int, reason: str, *, now_ms: int) -> list[str]:
    """Revoke every live family of a user; returns their ids (for the Redis flags).

    The rows are locked (on MySQL) so the returned list is exactly what was revoked."""
    ids = list(
        session.scalars(
            select(RefreshFamily.id)
            .where(RefreshFamily.user_id == user_id, RefreshFamily.revoked_ms.is_(None))
            .with_for_update()
        )
    )
    if ids:
        session.execute(
            update(RefreshFamily)
            .where(RefreshFamily.id.in_(ids), RefreshFamily.revoked_ms.is_(None))
            .values(revoked_ms=now_ms, revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )
    return ids


def revoked_since(session: Session, since_ms: int) -> list[str]:
    """Families revoked at or after ``since_ms`` (their access tokens may still be live)."""
    return list(
        session.scalars(select(RefreshFamily.id).where(RefreshFamily.revoked_ms >= since_ms))
    )


def generation(session: Session, family_id: str) -> int:
    """The family's current generation (0 at sign-in, one more per rotation)."""
    return int(
        session.scalar(select(RefreshFamily.generation).where(RefreshFamily.id == family_id)) or 0
    )


def rotated_since(session: Session, since_ms: int, *, ttl_s: int, now_ms: int) -> dict[str, int]:
    """Live families last rotated at or after ``since_ms`` -> their generation (access
    tokens of their earlier generations may still be live). A rotation sets ``expires_ms``
    to its time plus ``ttl_s``, which dates it."""
    rows = session.execute(
        select(RefreshFamily.id, RefreshFamily.generation).where(
            RefreshFamily.generation > 0,
            RefreshFamily.revoked_ms.is_(None),
            RefreshFamily.expires_ms >= max(since_ms + ttl_s * 1000, now_ms),
        )
    )
    return {str(fid): int(gen) for fid, gen in rows}


def family_owner(session: Session, family_id: str) -> int | None:
    return session.scalar(select(RefreshFamily.user_id).where(RefreshFamily.id == family_id))
