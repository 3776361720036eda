"""Password hashing with bcrypt (cost 12 by default). bcrypt reads at most 72 bytes, so the
password is pre-hashed with SHA-256 and base64-encoded: long passwords keep all their
entropy and never hit bcrypt's truncation. Verification is constant-time (bcrypt.checkpw).
Hashing takes tens of milliseconds by design: call it off the event loop."""

from __future__ import annotations

import base64
import hashlib

import bcrypt

DEFAULT_ROUNDS = 12


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def hash_password(password: str, rounds: int = DEFAULT_ROUNDS) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))
    except ValueError:  # malformed stored hash: never matches
        return False


# A valid hash to verify against when the account does not exist, so that timing does not
# reveal which e-mails are registered.
DUMMY_HASH = hash_password("not-a-real-password", rounds=DEFAULT_ROUNDS)
