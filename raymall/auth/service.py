"""Accounts and sessions: register, sign in, refresh, sign out, change password, block.

One ``AuthService`` per Serve replica. It guarantees:
- passwords are hashed (Argon2id by default, see ``raymall.passwords``) on the replica's
  bounded hash pool (``raymall.auth.hashing``), never on the event loop;
- every password check is charged to its limits before it runs (``raymall.auth.guard``):
  concurrent guesses get no more checks than the limit, a known device keeps its own
  bucket, registrations and unknown names are limited per client;
- a refresh token works once: rotation is a compare-and-set in the database, and a
  replayed token revokes its whole family; a refresh retires the access tokens the family
  was issued before it, on every replica;
- every revocation (logout, replay, password change, block) is written to the database
  first and then to the Redis revocation index, which publishes it to every replica's
  mirror (``raymall.auth.mirror``); with a feed, an authenticated request reads only the
  mirror, so verifying a token needs no Redis;
- while Redis is unusable (``raymall.feed.RedisHealth``), the calls that write sessions
  or need the shared sign-in limits (register, sign-in, refresh, logout, password change,
  block) refuse at once with ``Unavailable`` (503, ``Retry-After``), before any database
  write; one that loses Redis after its database commit keeps the index write for the
  mirror's next resync and answers as usual;
- a sign-in for an unknown account costs the same hashing work as for a known one;
- a successful sign-in whose stored hash was made with another algorithm or other
  parameters than the configured ones stores a fresh hash (the upgrade path).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import Permission, User
from raymall import metrics
from raymall.accounts import validate_password
from raymall.auth import families, users
from raymall.auth.devices import DeviceTokens
from raymall.auth.guard import Attempt, AuthGuard, Client
from raymall.auth.hashing import HashPool
from raymall.auth.mirror import RevocationMirror, RevocationWriter
from raymall.auth.permissions import Grant, PermissionCache
from raymall.auth.revocations import RevocationIndex, Snapshot
from raymall.auth.tokens import AccessClaims, IssuedPair, TokenCodec, VerifiedAccessCache
from raymall.auth.txn import in_tx
from raymall.errors import (
    AccountBlocked,
    Conflict,
    DomainError,
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    TokenExpired,
    TokenRevoked,
    Unavailable,
    ValidationFailed,
)
from raymall.feed import REDIS_FAULTS, Feed, RedisHealth, scoped_channel
from raymall.ids import now_ms
from raymall.ratelimit import RateLimiter
from raymall.settings import Settings

REVOCATIONS_CHANNEL = "auth:revocations"


@dataclass(frozen=True)
class _Rotated:
    outcome: families.Rotation
    jti: str | None
    role: str
    blocked: bool
    generation: int = 0


class AuthService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis: Any,
        hot_redis: Any = None,
        feed: Feed | None = None,
        health: RedisHealth | None = None,
    ) -> None:
        """``feed``: the replica's (``raymall.feed``); with it, tokens are checked against
        the replica's revocation mirror, which the feed keeps current (start the feed
        after this). Without it (tools, tests), each check reads the index, through
        ``hot_redis`` if given (a ``raymall.resp.RespClient``). ``health``: when Redis is
        usable (default: from the feed)."""
        self.settings = settings
        self.sessions = sessions
        self.codec = TokenCodec(
            settings.secret("jwt_secret"),
            access_ttl_s=settings.access_token_ttl_s,
            refresh_ttl_s=settings.refresh_token_ttl_s,
            leeway_s=settings.jwt_leeway_s,
        )
        self.verified = VerifiedAccessCache(self.codec)
        self.devices = DeviceTokens(
            settings.secret("jwt_secret"), ttl_s=settings.login_device_ttl_s
        )
        self.limiter = RateLimiter(redis)
        self.guard = AuthGuard(self.limiter, settings)
        channel = scoped_channel(settings.redis_url or "", REVOCATIONS_CHANNEL)
        self.revocations = RevocationIndex(
            redis,
            family_flag_ttl_s=settings.access_token_ttl_s + settings.jwt_leeway_s + 5,
            load=self._revocation_snapshot,
            hot_redis=hot_redis,
            channel=channel if feed is not None else "",
        )
        self.health = health if health is not None else RedisHealth(feed)
        self.mirror: RevocationMirror | None = None
        if feed is not None:
            self.mirror = RevocationMirror(
                self.revocations,
                max_stale_s=settings.revocation_max_stale_s,
                connected=lambda: feed.connected,
                down_since_ms=feed.down_since_ms,
            )
            feed.subscribe(channel, self.mirror.apply, self.mirror.resync)
        self.writes = RevocationWriter(
            self.revocations,
            self.mirror,
            self.health,
            ack_timeout_s=settings.revocation_ack_timeout_s,
        )
        self.permissions = PermissionCache(self._grants, ttl_s=settings.permission_cache_ttl_s)
        self.hasher = settings.password_hasher_config()
        self.hashes = HashPool(
            self.hasher,
            threads=settings.password_hash_threads,
            max_pending=settings.password_hash_queue,
        )
        # verified against when the account does not exist, so timing does not reveal
        # which accounts are registered
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))

    def close(self) -> None:
        self.hashes.close()

    # ---- the per-request check ------------------------------------------------------
    async def authenticate(self, token: str) -> AccessClaims:
        """Verify an access token and its standing: from the replica's mirror (no I/O), or
        with one Redis round trip when there is no feed."""
        claims = self.verified.verify(token)
        if self.mirror is not None:
            status = self.mirror.status(claims.family_id, claims.user_id, claims.generation)
        else:
            status = await self.revocations.status(
                claims.family_id, claims.user_id, claims.generation
            )
        if status is None:
            return claims
        if status == "user_blocked":
            raise AccountBlocked("this account is blocked")
        if status == "superseded":
            raise TokenRevoked("this access token was replaced by a refresh; use the new one")
        raise TokenRevoked("this session has been revoked; sign in again")

    async def allowed(self, role: str, resource: str, action: str) -> bool:
        return await self.permissions.allowed(role, resource, action)

    # ---- accounts and sessions ------------------------------------------------------
    async def register(
        self,
        *,
        email: str,
        username: str,
        password: str,
        display_name: str = "",
        ip: str | None = None,
    ) -> dict[str, Any]:
        email, username = users.normalize_email(email), users.normalize_username(username)
        validate_password(password, email=email, username=username)
        self.health.require("registration")
        await in_tx(self.sessions, users.check_available, email, username)  # before hashing
        with self.health.faults("registration"):
            charged = await self.guard.admit_registration(ip)
        try:
            password_hash = await self.hashes.hash(password, bulk=True)
        except Unavailable:  # the hash pool is full: this registration cost nothing
            await self.guard.not_checked(charged)
            raise
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
        self,
        *,
        email: str | None,
        username: str | None,
        password: str,
        ip: str | None,
        device_token: str | None = None,
    ) -> IssuedPair:
        """Sign in; the pair carries a device token for the next sign-in from this client."""
        self.health.require("sign-in")
        with self.health.faults("sign-in"):
            try:
                return await self._login(email, username, password, ip, device_token)
            except DomainError as exc:  # refused: wrong password, blocked, rate limited
                if exc.status < 500:
                    metrics.LOGIN_FAILURES.labels(exc.code).inc()
                raise

    async def _login(
        self,
        email: str | None,
        username: str | None,
        password: str,
        ip: str | None,
        device_token: str | None,
    ) -> IssuedPair:
        user: User | None = await in_tx(
            self.sessions, lambda s: users.find_for_login(s, email=email, username=username)
        )
        name = users.normalize_email(email) if email else users.normalize_username(username or "")
        if user is None:
            client = Client(ip)
            attempt = await self.guard.admit(f"n:{name}", client)
            if await self.guard.unknown_name_hashed(client):
                await self._verify(attempt, password, self._dummy_hash, dummy=True)
            else:  # as long as a verify, without one
                await asyncio.sleep(self.hashes.typical_verify_s)
            raise InvalidCredentials("wrong e-mail, username or password")
        user_id = int(user.id)
        device = self.devices.verify(device_token, user_id)
        attempt = await self.guard.admit(f"u:{user_id}", Client(ip, device))
        if not await self._verify(attempt, password, user.password_hash):
            raise InvalidCredentials("wrong e-mail, username or password")
        await self.guard.succeeded(attempt)
        if user.is_blocked:
            raise AccountBlocked("this account is blocked; contact support")
        if self.hasher.needs_rehash(user.password_hash):
            await self._upgrade_hash(user_id, user.password_hash, password)
        pair = await self._start_session(user_id, user.role)
        return replace(pair, device_token=self.devices.issue(user_id, device))

    async def refresh(self, refresh_token: str) -> IssuedPair:
        claims = self.codec.verify_refresh(refresh_token)
        self.health.require("refresh")

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
            gen = families.generation(session, claims.family_id) if jti is not None else 0
            return _Rotated(outcome, jti, user.role, False, gen)

        result = await in_tx(self.sessions, rotate)
        if result.blocked:
            raise AccountBlocked("this account is blocked")
        if result.outcome is families.Rotation.REUSED:
            await self.writes.families_revoked([claims.family_id])
            raise TokenRevoked("refresh token reuse detected: the session has been revoked")
        if result.outcome is families.Rotation.REVOKED:
            raise TokenRevoked("this session has been revoked; sign in again")
        if result.outcome is families.Rotation.EXPIRED:
            raise TokenExpired("this session has expired; sign in again")
        if result.outcome is not families.Rotation.ROTATED or result.jti is None:
            raise InvalidToken("unknown refresh token")
        # the access tokens issued before this refresh stop working, as at logout
        await self.writes.family_rotated(claims.family_id, result.generation)
        return self.codec.issue_pair(
            claims.user_id, result.role, claims.family_id, result.jti, generation=result.generation
        )

    async def logout(self, family_id: str) -> None:
        self.health.require("sign-out")
        await in_tx(
            self.sessions,
            lambda s: families.revoke_family(s, family_id, "logout", now_ms=now_ms()),
        )
        await self.writes.families_revoked([family_id])

    async def change_password(
        self, user_id: int, *, current: str, new: str, ip: str | None
    ) -> IssuedPair:
        """Change the password, revoke every session of the user, start a new one."""
        self.health.require("password change")
        user = await in_tx(self.sessions, users.get_user, user_id)
        with self.health.faults("password change"):
            charged = await self.guard.admit_password_change(user_id)  # its own bucket
        try:
            right = await self.hashes.verify(current, user.password_hash)
        except Unavailable:  # not checked: not a wrong guess
            await self.guard.not_checked(charged)
            raise
        if not right:
            raise ValidationFailed(
                "the current password is wrong", details={"field": "current_password"}
            )
        if new == current:
            raise ValidationFailed(
                "the new password must differ from the current one",
                details={"field": "new_password"},
            )
        validate_password(new, email=user.email, username=user.username)
        new_hash = await self.hashes.hash(new)

        def apply(session: Session) -> tuple[list[str], str, str, str]:
            now = now_ms()
            fresh = users.get_user(session, user_id, for_update=True)
            users.set_password_hash(session, fresh, new_hash, now)
            revoked = families.revoke_user_families(session, user_id, "password", now_ms=now)
            ttl = self.settings.refresh_token_ttl_s
            fid, jti = families.create_family(session, user_id, ttl_s=ttl, now_ms=now)
            return revoked, fid, jti, fresh.role

        revoked, fid, jti, role = await in_tx(self.sessions, apply)
        await self.writes.families_revoked(revoked)
        with contextlib.suppress(*REDIS_FAULTS):
            await self.guard.password_changed(charged)  # a refund only: the change is made
        return self.codec.issue_pair(user_id, role, fid, jti)

    # ---- administration -------------------------------------------------------------
    async def set_blocked(self, admin_id: int, user_id: int, blocked: bool) -> dict[str, Any]:
        if blocked and admin_id == user_id:
            raise Conflict("you cannot block your own account")
        self.health.require("blocking")

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
        await self.writes.user_blocked(user_id, blocked)
        await self.writes.families_revoked(revoked)
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

    async def _verify(
        self, attempt: Attempt, password: str, hashed: str, *, dummy: bool = False
    ) -> bool:
        """Check a sign-in's password on the hash pool; an attempt the pool refuses (503)
        gets its charges back, so retrying through an overload never locks a client out."""
        try:
            return await self.hashes.verify(password, hashed, dummy=dummy)
        except Unavailable:
            await self.guard.not_checked(attempt.own, *attempt.shared)
            raise

    async def _upgrade_hash(self, user_id: int, old_hash: str, password: str) -> None:
        """Store a hash with the configured parameters, unless the password changed
        meanwhile (compare-and-set on the old hash). Not a session change: nothing is
        revoked."""
        new_hash = await self.hashes.hash(password)

        def store(session: Session) -> None:
            session.execute(
                update(User)
                .where(User.id == user_id, User.password_hash == old_hash)
                .values(password_hash=new_hash)
            )

        await in_tx(self.sessions, store)

    async def _grants(self) -> set[Grant]:
        rows = await in_tx(
            self.sessions,
            lambda s: list(
                s.execute(select(Permission.role, Permission.resource, Permission.action))
            ),
        )
        return {(str(r), str(res), str(a)) for r, res, a in rows}

    async def _revocation_snapshot(self, since_ms: int) -> Snapshot:
        ttl_s = self.settings.refresh_token_ttl_s

        def load(session: Session) -> Snapshot:
            return Snapshot(
                users.blocked_user_ids(session),
                families.revoked_since(session, since_ms),
                families.rotated_since(session, since_ms, ttl_s=ttl_s, now_ms=now_ms()),
            )

        return await in_tx(self.sessions, load)
