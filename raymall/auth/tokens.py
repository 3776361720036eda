"""Access and refresh tokens: issue and verify, with no I/O.

Access tokens are JWTs signed with HS256 and the configured secret. Verification is pinned
to HS256: ``alg: none``, another HMAC size, an asymmetric algorithm (the RS256/HS256
confusion), a token signed with another key, a wrong issuer or audience, a missing claim
and an expired token are all refused with an ``Unauthorized`` subclass. Clock skew of at
most ``leeway_s`` (<= 60 s) is tolerated.

Refresh tokens are JWTs too, but signed with a key derived from the secret for that
purpose alone and carrying their own audience and ``typ``, so neither kind of token can be
used as the other. A refresh token names its family (``fid``) and its own ``jti``; whether
it is still the family's current token is decided by ``raymall.auth.families``.

An access token also names the family's generation it was issued at (``gen``: 0 at sign-in,
one more at each refresh), so a refresh can retire the access tokens issued before it with
one flag per family (``raymall.auth.revocations``), read by the check every request makes
anyway. A token without ``gen`` is of generation 0.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from raymall.errors import BadSignature, InvalidToken, TokenExpired

ALGORITHM = "HS256"
ISSUER = "raymall"
ACCESS_AUDIENCE = "raymall"
REFRESH_AUDIENCE = "raymall:refresh"
MAX_TOKEN_CHARS = 4096
MAX_LEEWAY_S = 60
_ACCESS_CLAIMS = ["sub", "role", "jti", "iat", "exp", "iss", "aud", "fid"]
_REFRESH_CLAIMS = ["sub", "jti", "iat", "exp", "iss", "aud", "fid"]


def new_id(nbytes: int = 16) -> str:
    """A random URL-safe identifier (jti, family id)."""
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    role: str
    jti: str
    family_id: str
    issued_at: int
    expires_at: int
    generation: int = 0


@dataclass(frozen=True)
class RefreshClaims:
    user_id: int
    jti: str
    family_id: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class IssuedPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    access_jti: str
    refresh_jti: str
    family_id: str
    device_token: str | None = None  # a sign-in's (raymall.auth.devices)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "refresh_expires_in": self.refresh_expires_in,
        }
        if self.device_token is not None:
            body["device_token"] = self.device_token
        return body


class TokenCodec:
    """Signs and verifies raymall's tokens with one secret."""

    def __init__(
        self, secret: str, *, access_ttl_s: int, refresh_ttl_s: int, leeway_s: int = 30
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the JWT secret is too short")
        if not 0 <= leeway_s <= MAX_LEEWAY_S:
            raise ValueError(f"leeway must be 0-{MAX_LEEWAY_S} s")
        self._access_key = secret
        self._refresh_key = hmac.new(
            secret.encode("utf-8"), b"raymall refresh-token key v1", hashlib.sha256
        ).hexdigest()
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.leeway_s = leeway_s

    # ---- issue ------------------------------------------------------------------------
    def issue_access(
        self,
        user_id: int,
        role: str,
        family_id: str,
        *,
        now: int | None = None,
        generation: int = 0,
    ) -> tuple[str, AccessClaims]:
        iat = int(time.time()) if now is None else now
        claims = AccessClaims(
            user_id, role, new_id(), family_id, iat, iat + self.access_ttl_s, generation
        )
        payload: dict[str, Any] = {
            "sub": str(user_id),
            "role": role,
            "jti": claims.jti,
            "fid": family_id,
            "iat": iat,
            "exp": claims.expires_at,
            "iss": ISSUER,
            "aud": ACCESS_AUDIENCE,
        }
        if generation:
            payload["gen"] = generation
        return jwt.encode(payload, self._access_key, algorithm=ALGORITHM), claims

    def issue_refresh(
        self, user_id: int, family_id: str, jti: str, *, now: int | None = None
    ) -> tuple[str, RefreshClaims]:
        iat = int(time.time()) if now is None else now
        claims = RefreshClaims(user_id, jti, family_id, iat, iat + self.refresh_ttl_s)
        payload = {
            "sub": str(user_id),
            "jti": jti,
            "fid": family_id,
            "typ": "refresh",
            "iat": iat,
            "exp": claims.expires_at,
            "iss": ISSUER,
            "aud": REFRESH_AUDIENCE,
        }
        return jwt.encode(payload, self._refresh_key, algorithm=ALGORITHM), claims

    def issue_pair(
        self,
        user_id: int,
        role: str,
        family_id: str,
        refresh_jti: str,
        *,
        now: int | None = None,
        generation: int = 0,
    ) -> IssuedPair:
        access, a = self.issue_access(user_id, role, family_id, now=now, generation=generation)
        refresh, _ = self.issue_refresh(user_id, family_id, refresh_jti, now=now)
        return IssuedPair(
            access, refresh, self.access_ttl_s, self.refresh_ttl_s, a.jti, refresh_jti, family_id
        )

    # ---- verify -----------------------------------------------------------------------
    def verify_access(self, token: str) -> AccessClaims:
        payload = self._decode(token, self._access_key, ACCESS_AUDIENCE, _ACCESS_CLAIMS)
        if "typ" in payload:
            raise InvalidToken("not an access token")
        role = payload["role"]
        generation = payload.get("gen", 0)
        if (
            not isinstance(role, str)
            or not isinstance(payload["fid"], str)
            or type(generation) is not int
            or not 0 <= generation < 2**62
        ):
            raise InvalidToken("malformed access token claims")
        return AccessClaims(
            user_id=_user_id(payload["sub"]),
            role=role,
            jti=str(payload["jti"]),
            family_id=payload["fid"],
            issued_at=int(payload["iat"]),
            expires_at=int(payload["exp"]),
            generation=generation,
        )

    def verify_refresh(self, token: str) -> RefreshClaims:
        payload = self._decode(token, self._refresh_key, REFRESH_AUDIENCE, _REFRESH_CLAIMS)
        if payload.get("typ") != "refresh" or not isinstance(payload["fid"], str):
            raise InvalidToken("not a refresh token")
        return RefreshClaims(
            user_id=_user_id(payload["sub"]),
            jti=str(payload["jti"]),
            family_id=payload["fid"],
            issued_at=int(payload["iat"]),
            expires_at=int(payload["exp"]),
        )

    def _decode(self, token: str, key: str, audience: str, required: list[str]) -> dict[str, Any]:
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"token algorithm must be {ALGORITHM}")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=ISSUER,
                leeway=self.leeway_s,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("the token has expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise BadSignature("the token signature is invalid") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc


def _user_id(sub: Any) -> int:
    if not isinstance(sub, str) or not sub.isdigit() or len(sub) > 19:
        raise InvalidToken("malformed subject claim")
    return int(sub)


class VerifiedAccessCache:
    """Remembers access tokens whose signature and claims already checked out, so a client
    sending many requests with one token pays for HMAC and JSON once (a hit costs a dict
    lookup instead of ~100 µs). Safe because a token string's claims cannot change; expiry
    is re-checked on every hit, and revocation is not cached at all (the caller checks it
    on every request). Bounded: the oldest entries are dropped first."""

    def __init__(self, codec: TokenCodec, max_entries: int = 20_000) -> None:
        self.codec = codec
        self.max_entries = max_entries
        self._entries: dict[str, AccessClaims] = {}

    def verify(self, token: str) -> AccessClaims:
        claims = self._entries.get(token)
        if claims is not None:
            if time.time() <= claims.expires_at + self.codec.leeway_s:
                return claims
            del self._entries[token]
            raise TokenExpired("the token has expired")
        claims = self.codec.verify_access(token)
        if len(self._entries) >= self.max_entries:
            for stale in list(self._entries)[: max(1, self.max_entries // 10)]:
                del self._entries[stale]  # dicts keep insertion order: oldest first
        self._entries[token] = claims
        return claims
