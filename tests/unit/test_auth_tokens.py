"""Token rules, with no services: what is accepted, and every way a token is refused."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from raymall.auth.tokens import ACCESS_AUDIENCE, ISSUER, TokenCodec
from raymall.errors import BadSignature, InvalidToken, TokenExpired, Unauthorized

SECRET = "unit-test-secret-" + "x" * 40
TTL, LEEWAY = 900, 30


@pytest.fixture()
def codec() -> TokenCodec:
    return TokenCodec(SECRET, access_ttl_s=TTL, refresh_ttl_s=14 * 86400, leeway_s=LEEWAY)


def _payload(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _b64(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**over: object) -> dict:
    now = int(time.time())
    claims = {
        "sub": "42",
        "role": "user",
        "jti": "j1",
        "fid": "f1",
        "iat": now,
        "exp": now + TTL,
        "iss": ISSUER,
        "aud": ACCESS_AUDIENCE,
    }
    claims.update(over)
    return claims


def test_access_token_carries_the_required_claims(codec: TokenCodec) -> None:
    token, issued = codec.issue_access(42, "admin", "fam-1")
    payload = _payload(token)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert {"sub", "role", "jti", "iat", "exp", "iss", "aud", "fid"} <= set(payload)
    assert payload["sub"] == "42" and payload["role"] == "admin" and payload["fid"] == "fam-1"
    assert payload["exp"] - payload["iat"] == TTL
    claims = codec.verify_access(token)
    assert (claims.user_id, claims.role, claims.family_id) == (42, "admin", "fam-1")
    assert claims.jti == issued.jti


def test_each_access_token_has_a_fresh_jti(codec: TokenCodec) -> None:
    jtis = {codec.verify_access(codec.issue_access(1, "user", "f")[0]).jti for _ in range(50)}
    assert len(jtis) == 50


def test_expired_access_token_is_refused(codec: TokenCodec) -> None:
    token, _ = codec.issue_access(1, "user", "f", now=int(time.time()) - TTL - LEEWAY - 5)
    with pytest.raises(TokenExpired):
        codec.verify_access(token)


def test_clock_skew_within_the_leeway_is_tolerated(codec: TokenCodec) -> None:
    token, _ = codec.issue_access(1, "user", "f", now=int(time.time()) - TTL - LEEWAY + 10)
    assert codec.verify_access(token).user_id == 1


def test_token_from_the_future_beyond_the_leeway_is_refused(codec: TokenCodec) -> None:
    token, _ = codec.issue_access(1, "user", "f", now=int(time.time()) + LEEWAY + 60)
    with pytest.raises(Unauthorized):
        codec.verify_access(token)


def test_tampered_signature_is_refused(codec: TokenCodec) -> None:
    token, _ = codec.issue_access(1, "user", "f")
    head, body, sig = token.split(".")
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    with pytest.raises(BadSignature):
        codec.verify_access(f"{head}.{body}.{flipped}")


def test_tampered_payload_is_refused(codec: TokenCodec) -> None:
    token, _ = codec.issue_access(1, "user", "f")
    head, _, sig = token.split(".")
    forged = _b64({**_payload(token), "role": "admin"})
    with pytest.raises(BadSignature):
        codec.verify_access(f"{head}.{forged}.{sig}")


def test_alg_none_is_refused(codec: TokenCodec) -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(role='admin'))}."
    with pytest.raises(InvalidToken):
        codec.verify_access(unsigned)
    unsigned_upper = f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{_b64(_claims())}."
    with pytest.raises(InvalidToken):
        codec.verify_access(unsigned_upper)


def test_another_hmac_algorithm_is_refused_even_with_the_right_key(codec: TokenCodec) -> None:
    token = jwt.encode(_claims(), SECRET, algorithm="HS512")
    with pytest.raises(InvalidToken):
        codec.verify_access(token)


def test_asymmetric_algorithm_is_refused(codec: TokenCodec) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken):
        codec.verify_access(jwt.encode(_claims(), key, algorithm="RS256"))


def test_hs256_signed_with_a_public_key_is_refused(codec: TokenCodec) -> None:
    """The classic RS256/HS256 confusion: HMAC keyed with a public key the attacker has."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT"})
    body = _b64(_claims(role="admin"))
    import hashlib
    import hmac

    sig = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(BadSignature):
        codec.verify_access(forged)


def test_token_signed_with_another_secret_is_refused(codec: TokenCodec) -> None:
    with pytest.raises(BadSignature):
        codec.verify_access(jwt.encode(_claims(), "another-secret-" + "y" * 40, algorithm="HS256"))


@pytest.mark.parametrize("missing", ["sub", "role", "jti", "iat", "exp", "iss", "aud", "fid"])
def test_a_missing_claim_is_refused(codec: TokenCodec, missing: str) -> None:
    claims = _claims()
    del claims[missing]
    with pytest.raises(Unauthorized):
        codec.verify_access(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    "override", [{"iss": "someone-else"}, {"aud": "another-app"}, {"sub": "not-a-number"}]
)
def test_wrong_issuer_audience_or_subject_is_refused(codec: TokenCodec, override: dict) -> None:
    with pytest.raises(InvalidToken):
        codec.verify_access(jwt.encode(_claims(**override), SECRET, algorithm="HS256"))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c", "x" * 5000, "é.é.é"])
def test_garbage_is_refused_as_invalid(codec: TokenCodec, garbage: str) -> None:
    with pytest.raises(Unauthorized):
        codec.verify_access(garbage)


def test_refresh_and_access_tokens_are_not_interchangeable(codec: TokenCodec) -> None:
    pair = codec.issue_pair(7, "user", "fam", "rjti")
    assert codec.verify_refresh(pair.refresh_token).jti == "rjti"
    with pytest.raises(Unauthorized):
        codec.verify_access(pair.refresh_token)
    with pytest.raises(Unauthorized):
        codec.verify_refresh(pair.access_token)


def test_refresh_token_is_bound_to_its_family_and_user(codec: TokenCodec) -> None:
    token, _ = codec.issue_refresh(9, "fam-9", "jti-9")
    claims = codec.verify_refresh(token)
    assert (claims.user_id, claims.family_id, claims.jti) == (9, "fam-9", "jti-9")
    assert claims.expires_at - claims.issued_at == 14 * 86400


def test_expired_refresh_token_is_refused(codec: TokenCodec) -> None:
    token, _ = codec.issue_refresh(9, "fam", "j", now=int(time.time()) - 15 * 86400)
    with pytest.raises(TokenExpired):
        codec.verify_refresh(token)


def test_pair_body_has_the_documented_fields(codec: TokenCodec) -> None:
    body = codec.issue_pair(1, "user", "f", "r").body()
    assert body["token_type"] == "bearer" and body["expires_in"] == TTL
    assert set(body) >= {"access_token", "refresh_token", "token_type", "expires_in"}


def test_leeway_over_sixty_seconds_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenCodec(SECRET, access_ttl_s=900, refresh_ttl_s=1000, leeway_s=61)


def test_settings_refuse_a_leeway_over_sixty_seconds() -> None:
    from raymall.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match="JWT_LEEWAY_S"):
        load_settings(jwt_leeway_s=61)


def test_verified_cache_rechecks_expiry_and_never_caches_bad_tokens(
    codec: TokenCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raymall.auth import tokens as tokens_mod
    from raymall.auth.tokens import VerifiedAccessCache

    cache = VerifiedAccessCache(codec, max_entries=10)
    token, _ = codec.issue_access(5, "user", "f")
    assert cache.verify(token) is cache.verify(token)  # the second call is a hit
    head, body, sig = token.split(".")
    with pytest.raises(BadSignature):
        cache.verify(f"{head}.{body}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}")
    assert len(cache._entries) == 1
    later = time.time() + TTL + LEEWAY + 1
    monkeypatch.setattr(tokens_mod.time, "time", lambda: later)
    with pytest.raises(TokenExpired):
        cache.verify(token)
    assert token not in cache._entries


def test_verified_cache_is_bounded(codec: TokenCodec) -> None:
    from raymall.auth.tokens import VerifiedAccessCache

    cache = VerifiedAccessCache(codec, max_entries=10)
    tokens = [codec.issue_access(i, "user", "f")[0] for i in range(25)]
    for t in tokens:
        cache.verify(t)
    assert len(cache._entries) <= 10 and tokens[-1] in cache._entries
