"""Password hashing: Argon2id by default, bcrypt verified, rehash decisions."""

from __future__ import annotations

import pytest

from raymall.passwords import PasswordHasher
from raymall.settings import Settings

FAST_ARGON = PasswordHasher(argon2_time_cost=1, argon2_memory_kib=8_192)
FAST_BCRYPT = PasswordHasher(algorithm="bcrypt", bcrypt_rounds=4)


def test_argon2id_hash_verifies_only_the_right_password() -> None:
    hashed = FAST_ARGON.hash("Correct-horse-9")
    assert hashed.startswith("$argon2id$")
    assert FAST_ARGON.verify("Correct-horse-9", hashed)
    assert not FAST_ARGON.verify("correct-horse-9", hashed)
    assert FAST_ARGON.hash("Correct-horse-9") != hashed  # salted


def test_bcrypt_keeps_entropy_past_72_bytes() -> None:
    long_a, long_b = "x" * 80 + "A1!", "x" * 80 + "B1!"
    hashed = FAST_BCRYPT.hash(long_a)
    assert hashed.startswith("$2b$04$")
    assert FAST_BCRYPT.verify(long_a, hashed) and not FAST_BCRYPT.verify(long_b, hashed)


def test_either_hasher_verifies_both_formats() -> None:
    from_bcrypt, from_argon = FAST_BCRYPT.hash("Pw-one-111"), FAST_ARGON.hash("Pw-two-222")
    for hasher in (FAST_ARGON, FAST_BCRYPT):
        assert hasher.verify("Pw-one-111", from_bcrypt)
        assert hasher.verify("Pw-two-222", from_argon)
        assert not hasher.verify("Pw-two-222", from_bcrypt)


@pytest.mark.parametrize("garbage", ["", "plain", "$2b$xx$abc", "$argon2id$v=19$broken"])
def test_malformed_hashes_never_match(garbage: str) -> None:
    assert not FAST_ARGON.verify("anything", garbage)
    assert not FAST_BCRYPT.verify("anything", garbage)
    assert FAST_ARGON.needs_rehash(garbage) and FAST_BCRYPT.needs_rehash(garbage)


def test_needs_rehash_when_algorithm_or_parameters_differ() -> None:
    argon = FAST_ARGON.hash("Pw-three-333")
    assert not FAST_ARGON.needs_rehash(argon)
    assert PasswordHasher(argon2_time_cost=2, argon2_memory_kib=8_192).needs_rehash(argon)
    assert FAST_ARGON.needs_rehash(FAST_BCRYPT.hash("Pw-three-333"))
    bc = FAST_BCRYPT.hash("Pw-three-333")
    assert not FAST_BCRYPT.needs_rehash(bc)
    assert PasswordHasher(algorithm="bcrypt", bcrypt_rounds=5).needs_rehash(bc)
    assert FAST_BCRYPT.needs_rehash(argon)


def test_settings_build_the_configured_hasher() -> None:
    s = Settings(password_hasher="bcrypt", bcrypt_rounds=5)
    hasher = s.password_hasher_config()
    assert hasher.algorithm == "bcrypt" and hasher.bcrypt_rounds == 5
    default = Settings().password_hasher_config()
    assert default.algorithm == "argon2id" and default.argon2_memory_kib == 19_456
    with pytest.raises(ValueError, match="PASSWORD_HASHER|password_hasher"):
        Settings(password_hasher="md5")
