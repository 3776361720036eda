"""Password hashing: Argon2id by default, bcrypt still verified (and upgraded on sign-in).

- **Argon2id** (RFC 9106) with OWASP's baseline parameters by default: 19 MiB of memory, 2
  passes, 1 lane. It is memory-hard, so a GPU or ASIC attacker pays far more per guess than
  for bcrypt, and on this kind of machine it costs ~20 ms of CPU per hash against ~60 ms
  for bcrypt at cost 10 and ~240 ms at cost 12: sign-in latency under concurrency is paid
  in CPU time, so this is both the safer and the cheaper choice.
- **bcrypt** stays available (``RAYMALL_PASSWORD_HASHER=bcrypt``). bcrypt reads at most 72
  bytes, so its input is pre-hashed with SHA-256 and base64-encoded: long passwords keep
  all their entropy and never hit the truncation.
- ``verify`` recognises both formats by their prefix; ``needs_rehash`` says when a stored
  hash was made with another algorithm or other parameters than the configured ones, so a
  successful sign-in can store a fresh hash (the only moment the plain password is known).
- Verification is constant-time in both libraries. Hashing takes tens of milliseconds by
  design: call it off the event loop.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Literal

import bcrypt
from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

DEFAULT_ROUNDS = 12
Algorithm = Literal["argon2id", "bcrypt"]


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def _bcrypt_cost(hashed: str) -> int | None:
    # $2b$12$<53 chars>
    parts = hashed.split("$")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return int(parts[2])


@dataclass(frozen=True)
class PasswordHasher:
    """One configured way of hashing; verifies every supported format."""

    algorithm: Algorithm = "argon2id"
    bcrypt_rounds: int = DEFAULT_ROUNDS
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    argon2_parallelism: int = 1

    @property
    def _argon2(self) -> _Argon2:
        return _Argon2(
            time_cost=self.argon2_time_cost,
            memory_cost=self.argon2_memory_kib,
            parallelism=self.argon2_parallelism,
            type=Type.ID,
        )

    def hash(self, password: str) -> str:
        if self.algorithm == "bcrypt":
            salt = bcrypt.gensalt(self.bcrypt_rounds)
            return bcrypt.hashpw(_prehash(password), salt).decode("ascii")
        return self._argon2.hash(password)

    def verify(self, password: str, hashed: str) -> bool:
        if hashed.startswith("$argon2"):
            try:
                return bool(self._argon2.verify(hashed, password))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        try:
            return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))
        except ValueError:  # malformed stored hash: never matches
            return False

    def needs_rehash(self, hashed: str) -> bool:
        if self.algorithm == "bcrypt":
            return not hashed.startswith("$2") or _bcrypt_cost(hashed) != self.bcrypt_rounds
        if not hashed.startswith("$argon2id$"):
            return True
        try:
            return bool(self._argon2.check_needs_rehash(hashed))
        except InvalidHashError:
            return True


DEFAULT_HASHER = PasswordHasher()


def hash_password(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    return hasher.hash(password)


def verify_password(password: str, hashed: str, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    return hasher.verify(password, hashed)
