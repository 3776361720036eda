"""Accounts and sessions: register, sign in, refresh, sign out, change password, block.

One ``AuthService`` per Serve replica. It guarantees:
- passwords are hashed (Argon2id by default, see ``raymall.passwords``) on a small
  dedicated thread pool, never on the event
  loop, and never by more than ``MAX_PENDING_HASHES`` queued requests per replica (more
  get a retriable 503 instead of an ever-growing queue);
- a refresh token works once: rotation is a compare-and-set in the database, and a
  replayed token revokes its whole family;
- every revocation (logout, replay, password change, block) is written to the database
  first and then to the Redis revocation index, which every authenticated request checks;
- a sign-in for an unknown account costs the same hashing work as for a known one;
- a successful sign-in whose stored hash was made with another algorithm or other
  parameters than the configured ones stores a fresh hash (the upgrade path).
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import Permission, User
from raymall.accounts import validate_password
from raymall.auth import families, users
from raymall.auth.guard import LoginGuard
from raymall.auth.permissions import Grant, PermissionCache
from raymall.auth.revocations import RevocationIndex, Snapshot
from raymall.auth.tokens import AccessClaims, IssuedPair, TokenCodec, VerifiedAccessCache
from raymall.auth.txn import in_tx
from raymall.errors import (
    AccountBlocked,
    Conflict,
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    Unavailable,
    ValidationFailed,
)
from raymall.ids import now_ms
from raymall.ratelimit import RateLimiter
from raymall.settings import Settings

MAX_PENDING_HASHES = 256


@dataclass(frozen=True)
class _Rotated:
    outcome: families.Rotation
    jti: str | None
    role: str
    blocked: bool


class AuthService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis: Any,
        hot_redis: Any = None,
    ) -> None:
        """``hot_redis`` (optional, a ``raymall.resp.RespClient``) serves the revocation
        check every authenticated request makes; everything else uses ``redis``."""
        self.settings = settings
        self.sessions = sessions
        self.codec = TokenCodec(
            settings.secret("jwt_secret"),
            access_ttl_s=settings.access_token_ttl_s,
            refresh_ttl_s=settings.refresh_token_ttl_s,
            leeway_s=settings.jwt_leeway_s,
        )
        self.verified = VerifiedAccessCache(self.codec)
        self.limiter = RateLimiter(redis)
        self.guard = LoginGuard(self.limiter, settings)
        self.revocations = RevocationIndex(
            redis,
            family_flag_ttl_s=settings.access_token_ttl_s + settings.jwt_leeway_s + 5,
            load=self._revocation_snapshot,
            hot_redis=hot_redis,
        )
        self.permissions = PermissionCache(self._grants, ttl_s=settings.permission_cache_ttl_s)
        self._hash_pool = ThreadPoolExecutor(
            settings.password_hash_threads, thread_name_prefix="pwhash"
        )
        self._pending_hashes = 0
        self.hasher = settings.password_hasher_config()
        # verified against when the account does not exist, so timing does not reveal
        # which accounts are registered
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    def close(self) -> None:
        self._hash_pool.shutdown(wait=False, cancel_futures=True)

    # ---- the per-request check ------------------------------------------------------
    async def authenticate(self, token: str) -> AccessClaims:
        """Verify an access token and its standing (one Redis round trip)."""
        claims = self.verified.verify(token)
        status = await self.revocations.status(claims.family_id, claims.user_id)
        if status == "user_blocked":
            raise AccountBlocked("this account is blocked")
        if status == "family_revoked":
            raise TokenRevoked("this session has been revoked; sign in again")
        return claims

    async def allowed(self, role: str, resource: str, action: str) -> bool:
        return await self.permissions.allowed(role, resource, action)

    # ---- accounts and sessions ------------------------------------------------------
    async def register(
        self, *, email: str, username: str, password: str, display_name: str = ""
    ) -> dict[str, Any]:
        email, username = users.normalize_email(email), users.normalize_username(username)
        validate_password(password, email=email, username=username)
        await in_tx(self.sessions, users.check_available, email, username)  # before hashing
        password_hash = await self._hash(password)
        try:
            user = await in_tx(
                self.sessions,
                lambda s: users.create_user(
                    s,
                    email=email,
                    username=username,
                    password_hash=password_hash,
                    now_ms=now_ms(),
                    display_name=display_name,
                ),
            )
        except IntegrityError as exc:  # lost a race with a concurrent registration
            await in_tx(self.sessions, users.check_available, email, username)
            raise EmailTaken("an account with this e-mail already exists") from exc
        return users.user_view(user)

    async def login(
        self, *, email: str | None, username: str | None, password: str, ip: str | None
    ) -> IssuedPair:
        user: User | None = await in_tx(
            self.sessions, lambda s: users.find_for_login(s, email=email, username=username)
        )
        name = users.normalize_email(email) if email else users.normalize_username(username or "")
        account = f"u:{user.id}" if user is not None else f"n:{name}"
        await self.guard.before_attempt(account, ip)
        ok = await self._verify(password, user.password_hash if user else self._dummy_hash)
        if user is None or not ok:
            await self.guard.failed(account, ip)
            raise InvalidCredentials("wrong e-mail, username or password")
        if user.is_blocked:
            raise AccountBlocked("this account is blocked; contact support")
        await self.guard.succeeded(account)
        if self.hasher.needs_rehash(user.password_hash):
            await self._upgrade_hash(int(user.id), user.password_hash, password)
        return await self._start_session(int(user.id), user.role)

    async def refresh(self, refresh_token: str) -> IssuedPair:
        claims = self.codec.verify_refresh(refresh_token)

        def rotate(session: Session) -> _Rotated:
            user = session.get(User, claims.user_id)
            if user is None:
                return _Rotated(families.Rotation.UNKNOWN, None, "", False)
            if user.is_blocked:
                families.revoke_family(session, claims.family_id, "blocked", now_ms=now_ms())
                return _Rotated(families.Rotation.REVOKED, None, user.role, True)
            outcome, jti = families.rotate(
                session,
                claims.family_id,
                claims.jti,
                claims.user_id,
                ttl_s=self.settings.refresh_token_ttl_s,
                now_ms=now_ms(),
            )
            return _Rotated(outcome, jti, user.role, False)

        result = await in_tx(self.sessions, rotate)
        if result.blocked:
            raise AccountBlocked("this account is blocked")
        if result.outcome is families.Rotation.REUSED:
            await self.revocations.families_revoked([claims.family_id])
            raise TokenRevoked("refresh token reuse detected: the session has been revoked")
        if result.outcome is families.Rotation.REVOKED:
            raise TokenRevoked("this session has been revoked; sign in again")
        if result.outcome is families.Rotation.EXPIRED:
            raise TokenExpired("this session has expired; sign in again")
        if result.outcome is not families.Rotation.ROTATED or result.jti is None:
            raise InvalidToken("unknown refresh token")
        return self.codec.issue_pair(claims.user_id, result.role, claims.family_id, result.jti)

    async def logout(self, family_id: str) -> None:
        await in_tx(
            self.sessions,
            lambda s: families.revoke_family(s, family_id, "logout", now_ms=now_ms()),
        )
        await self.revocations.families_revoked([family_id])

    async def change_password(
        self, user_id: int, *, current: str, new: str, ip: str | None
    ) -> IssuedPair:
        """Change the password, revoke every session of the user, start a new one."""
        user = await in_tx(self.sessions, users.get_user, user_id)
        account = f"u:{user_id}"
        await self.guard.before_attempt(account, ip)
        if not await self._verify(current, user.password_hash):
            await self.guard.failed(account, ip)
            raise ValidationFailed(
                "the current password is wrong", details={"field": "current_password"}
            )
        if new == current:
            raise ValidationFailed(
                "the new password must differ from the current one",
                details={"field": "new_password"},
            )
        validate_password(new, email=user.email, username=user.username)
        new_hash = await self._hash(new)

        def apply(session: Session) -> tuple[list[str], str, str, str]:
            now = now_ms()
            fresh = users.get_user(session, user_id, for_update=True)
            users.set_password_hash(session, fresh, new_hash, now)
            revoked = families.revoke_user_families(session, user_id, "password", now_ms=now)
            ttl = self.settings.refresh_token_ttl_s
            fid, jti = families.create_family(session, user_id, ttl_s=ttl, now_ms=now)
            return revoked, fid, jti, fresh.role

        revoked, fid, jti, role = await in_tx(self.sessions, apply)
        await self.revocations.families_revoked(revoked)
        await self.guard.succeeded(account)
        return self.codec.issue_pair(user_id, role, fid, jti)

    # ---- administration -------------------------------------------------------------
    async def set_blocked(self, admin_id: int, user_id: int, blocked: bool) -> dict[str, Any]:
        if blocked and admin_id == user_id:
            raise Conflict("you cannot block your own account")

        def apply(session: Session) -> tuple[User, list[str]]:
            now = now_ms()
            user = users.set_blocked(session, user_id, blocked, now)
            revoked = (
                families.revoke_user_families(session, user_id, "blocked", now_ms=now)
                if blocked
                else []
            )
            return user, revoked

        user, revoked = await in_tx(self.sessions, apply)
        if blocked:
            await self.revocations.user_blocked(user_id)
            await self.revocations.families_revoked(revoked)
        else:
            await self.revocations.user_unblocked(user_id)
        return users.user_view(user, admin=True)

    async def list_users(
        self, *, limit: int, after_id: int | None, query: str | None, blocked: bool | None
    ) -> dict[str, Any]:
        rows = await in_tx(
            self.sessions,
            lambda s: users.list_users(
                s, limit=limit + 1, after_id=after_id, query=query, blocked=blocked
            ),
        )
        page = rows[:limit]
        return {
            "items": [users.user_view(u, admin=True) for u in page],
            "next_after_id": int(page[-1].id) if len(rows) > limit else None,
        }

    # ---- internals ------------------------------------------------------------------
    async def _start_session(self, user_id: int, role: str) -> IssuedPair:
        ttl = self.settings.refresh_token_ttl_s
        fid, jti = await in_tx(
            self.sessions, lambda s: families.create_family(s, user_id, ttl_s=ttl, now_ms=now_ms())
        )
        return self.codec.issue_pair(user_id, role, fid, jti)

    async def _hash(self, password: str) -> str:
        return str(await self._on_hash_pool(self.hasher.hash, password))

    async def _verify(self, password: str, hashed: str) -> bool:
        return bool(await self._on_hash_pool(self.hasher.verify, password, hashed))

    async def _upgrade_hash(self, user_id: int, old_hash: str, password: str) -> None:
        """Store a hash with the configured parameters, unless the password changed
        meanwhile (compare-and-set on the old hash). Not a session change: nothing is
        revoked."""
        new_hash = await self._hash(password)

        def store(session: Session) -> None:
            session.execute(
                update(User)
                .where(User.id == user_id, User.password_hash == old_hash)
                .values(password_hash=new_hash)
            )

        await in_tx(self.sessions, store)

    async def _on_hash_pool(self, fn: Any, *args: Any) -> Any:
        if self._pending_hashes >= MAX_PENDING_HASHES:
            raise Unavailable("too many sign-ins in progress; retry shortly")
        self._pending_hashes += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._hash_pool, fn, *args)
        finally:
            self._pending_hashes -= 1

    async def _grants(self) -> set[Grant]:
        rows = await in_tx(
            self.sessions,
            lambda s: list(
                s.execute(select(Permission.role, Permission.resource, Permission.action))
            ),
        )
        return {(str(r), str(res), str(a)) for r, res, a in rows}

    async def _revocation_snapshot(self, since_ms: int) -> Snapshot:
        def load(session: Session) -> Snapshot:
            return Snapshot(
                users.blocked_user_ids(session), families.revoked_since(session, since_ms)
            )

        return await in_tx(self.sessions, load)
