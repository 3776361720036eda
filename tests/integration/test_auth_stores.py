"""The auth area against real stores: the Redis limiter, refresh-token families and the
revocation index, addresses' default rule, and the demo accounts."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from raymall.auth import addresses, families
from raymall.auth.demo import seed_demo_accounts
from raymall.auth.revocations import RevocationIndex, Snapshot
from raymall.db import make_engine, session_factory, transaction
from raymall.errors import Conflict, NotFound
from raymall.ids import now_ms
from raymall.passwords import verify_password
from raymall.ratelimit import Limit, RateLimiter
from raymall.resp import RespClient
from raymall.settings import Settings


def _run(coro):  # one event loop per test keeps the async client simple
    return asyncio.run(coro)


async def _client(url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=32, decode_responses=True)
    return aioredis.Redis.from_pool(pool)


# ---- the limiter ---------------------------------------------------------------------
def test_limiter_admits_the_burst_then_refuses_with_retry_after(redis_url: str) -> None:
    async def scenario() -> None:
        r = await _client(redis_url)
        limiter = RateLimiter(r, prefix=f"t{secrets.token_hex(3)}")
        rule = Limit("burst", limit=3, period_s=30)
        results = [await limiter.check((rule, "alice")) for _ in range(4)]
        assert [d.allowed for d in results] == [True, True, True, False]
        assert results[0].remaining == 2 and results[2].remaining == 0
        assert 9 <= results[3].retry_after_s <= 10.1 and results[3].refused_by == "burst"
        assert (await limiter.check((rule, "bob"))).allowed  # keys are independent
        await limiter.reset((rule, "alice"))
        assert (await limiter.check((rule, "alice"))).allowed
        await r.aclose()

    _run(scenario())


def test_limiter_refills_at_the_configured_rate(redis_url: str) -> None:
    async def scenario() -> None:
        r = await _client(redis_url)
        limiter = RateLimiter(r, prefix=f"t{secrets.token_hex(3)}")
        rule = Limit("fast", limit=2, period_s=0.4)  # one token per 200 ms
        assert (await limiter.check((rule, "k"))).allowed
        assert (await limiter.check((rule, "k"))).allowed
        assert not (await limiter.check((rule, "k"))).allowed
        await asyncio.sleep(0.25)
        assert (await limiter.check((rule, "k"))).allowed
        await r.aclose()

    _run(scenario())


def test_limits_checked_together_are_all_or_nothing(redis_url: str) -> None:
    async def scenario() -> None:
        r = await _client(redis_url)
        limiter = RateLimiter(r, prefix=f"t{secrets.token_hex(3)}")
        per_user, per_ip = Limit("user", 5, 60), Limit("ip", 2, 60)
        assert (await limiter.check((per_user, "u1"), (per_ip, "1.2.3.4"))).allowed
        assert (await limiter.check((per_user, "u1"), (per_ip, "1.2.3.4"))).allowed
        refused = await limiter.check((per_user, "u1"), (per_ip, "1.2.3.4"))
        assert not refused.allowed and refused.refused_by == "ip"
        # the refused call charged nothing: u1 still has 3 of its 5
        assert (await limiter.peek((per_user, "u1"))).remaining == 3
        peeked = await limiter.peek((per_user, "u1"))
        assert peeked.allowed and peeked.remaining == 3  # peek charges nothing either
        await r.aclose()

    _run(scenario())


def test_limiter_is_atomic_under_concurrency(redis_url: str) -> None:
    async def scenario() -> None:
        r = await _client(redis_url)
        limiter = RateLimiter(r, prefix=f"t{secrets.token_hex(3)}")
        rule = Limit("hot", limit=50, period_s=3600)
        decisions = await asyncio.gather(*(limiter.check((rule, "e")) for _ in range(200)))
        assert sum(d.allowed for d in decisions) == 50
        await r.aclose()

    _run(scenario())


def test_login_guard_limits_accounts_and_known_ips(redis_url: str) -> None:
    from raymall.auth.guard import LoginGuard
    from raymall.errors import RateLimited

    async def scenario() -> None:
        r = await _client(redis_url)
        settings = Settings(
            redis_url="redis://unused",
            login_max_failures_per_account=2,
            login_max_failures_per_ip=3,
            login_failure_window_s=60,
        )
        guard = LoginGuard(RateLimiter(r, prefix=f"t{secrets.token_hex(3)}"), settings)
        for _ in range(2):
            await guard.before_attempt("u:1", "10.0.0.1")
            await guard.failed("u:1", "10.0.0.1")
        with pytest.raises(RateLimited) as refused:
            await guard.before_attempt("u:1", "10.0.0.2")
        assert refused.value.details["scope"] == "account" and refused.value.retry_after >= 1
        await guard.before_attempt("u:2", "10.0.0.1")  # IP has one failure left
        await guard.failed("u:2", "10.0.0.1")
        with pytest.raises(RateLimited) as refused:
            await guard.before_attempt("u:3", "10.0.0.1")
        assert refused.value.details["scope"] == "address"
        await guard.before_attempt("u:3", None)  # unknown address: only the account counts
        await guard.succeeded("u:1")
        await guard.before_attempt("u:1", "10.0.0.9")  # success cleared the account only
        with pytest.raises(RateLimited):
            await guard.before_attempt("u:1", "10.0.0.1")
        await r.aclose()

    _run(scenario())


# ---- families and the revocation index ---------------------------------------------
@pytest.fixture()
def sessions(mysql_url: str):
    engine = make_engine(mysql_url, pool_size=2)
    yield session_factory(engine)
    engine.dispose()


def _user(sessions, name: str | None = None) -> int:
    from raymall.auth.users import create_user

    name = name or f"u{secrets.token_hex(5)}"
    with transaction(sessions) as s:
        return int(
            create_user(
                s, email=f"{name}@example.com", username=name, password_hash="x", now_ms=now_ms()
            ).id
        )


def test_rotation_is_compare_and_set_and_reuse_revokes(sessions) -> None:
    uid = _user(sessions)
    with transaction(sessions) as s:
        fid, first = families.create_family(s, uid, ttl_s=600, now_ms=now_ms())
    with transaction(sessions) as s:
        outcome, second = families.rotate(s, fid, first, uid, ttl_s=600, now_ms=now_ms())
    assert outcome is families.Rotation.ROTATED and second and second != first
    with transaction(sessions) as s:  # the first token again: theft
        outcome, _ = families.rotate(s, fid, first, uid, ttl_s=600, now_ms=now_ms())
    assert outcome is families.Rotation.REUSED
    with transaction(sessions) as s:  # even the current token is dead now
        outcome, _ = families.rotate(s, fid, second, uid, ttl_s=600, now_ms=now_ms())
    assert outcome is families.Rotation.REVOKED
    with transaction(sessions) as s:
        assert fid in families.revoked_since(s, now_ms() - 60_000)
        outcome, _ = families.rotate(s, fid, second, uid + 1, ttl_s=600, now_ms=now_ms())
    assert outcome is families.Rotation.UNKNOWN


def test_revoking_a_user_revokes_every_live_family(sessions) -> None:
    uid = _user(sessions)
    with transaction(sessions) as s:
        fids = {families.create_family(s, uid, ttl_s=600, now_ms=now_ms())[0] for _ in range(3)}
    with transaction(sessions) as s:
        assert set(families.revoke_user_families(s, uid, "test", now_ms=now_ms())) == fids
    with transaction(sessions) as s:
        assert families.revoke_user_families(s, uid, "test", now_ms=now_ms()) == []


@pytest.mark.parametrize("reader", ["redis-py", "resp"])
def test_revocation_index_rebuilds_from_the_database_after_a_flush(
    redis_url: str, reader: str
) -> None:
    """The same answers whether the per-request read goes through redis-py or through
    the replicas' pipelined client (``hot_redis``)."""

    async def scenario() -> None:
        r = await _client(redis_url)
        hot = RespClient(redis_url) if reader == "resp" else None
        loads = []

        async def load(since_ms: int) -> Snapshot:
            loads.append(since_ms)
            return Snapshot(blocked_users=[77], revoked_families=["fam-dead"])

        index = RevocationIndex(r, family_flag_ttl_s=60, load=load, hot_redis=hot)
        await r.delete("auth:epoch")  # as after a Redis restart without persistence
        assert await index.status("fam-dead", 1) == "family_revoked"
        assert await index.status("fam-ok", 77) == "user_blocked"
        assert await index.status("fam-ok", 1) is None
        assert len(loads) == 1  # rebuilt once, then the epoch says the index is complete
        await index.families_revoked(["fam-new"])
        assert await index.status("fam-new", 1) == "family_revoked"
        assert 0 < await r.ttl("auth:fam:fam-new") <= 60
        await index.user_unblocked(77)
        assert await index.status("fam-ok", 77) is None
        await r.aclose()
        if hot is not None:
            await hot.aclose()

    _run(scenario())


def test_exactly_one_default_address_and_owner_only_access(sessions) -> None:
    alice, bob = _user(sessions), _user(sessions)
    fields = {
        "recipient": "A",
        "phone": "+1 555 0100",
        "line1": "1 Main",
        "city": "X",
        "postal_code": "1",
        "country": "US",
    }

    def defaults(uid: int) -> list[int]:
        with transaction(sessions) as s:
            return [int(a.id) for a in addresses.list_addresses(s, uid) if a.is_default]

    with transaction(sessions) as s:
        first = int(addresses.create_address(s, alice, fields, make_default=False, now_ms=1).id)
        second = int(addresses.create_address(s, alice, fields, make_default=False, now_ms=2).id)
    assert defaults(alice) == [first]
    with transaction(sessions) as s:
        third = int(addresses.create_address(s, alice, fields, make_default=True, now_ms=3).id)
    assert defaults(alice) == [third]
    with transaction(sessions) as s:
        addresses.set_default(s, alice, second, now_ms=4)
    assert defaults(alice) == [second]
    with pytest.raises(Conflict), transaction(sessions) as s:
        addresses.update_address(s, alice, second, {"is_default": False}, now_ms=5)
    with transaction(sessions) as s:
        addresses.delete_address(s, alice, second, now_ms=6)
    assert defaults(alice) == [third]  # the newest remaining one was promoted
    with pytest.raises(NotFound), transaction(sessions) as s:
        addresses.get_address(s, bob, third)
    with pytest.raises(NotFound), transaction(sessions) as s:
        addresses.delete_address(s, bob, third, now_ms=7)
    assert sorted(defaults(alice)) == [third]


# ---- demo accounts -------------------------------------------------------------------
def test_demo_accounts_are_idempotent_and_their_passwords_kept_private(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=sqlite_url, redis_url="redis://unused", var_dir=tmp_path)
    settings = settings.model_copy(update={"bcrypt_rounds": 4})
    first = seed_demo_accounts(settings)
    second = seed_demo_accounts(settings)
    for kind in ("admin", "user"):
        assert first[kind]["password"] == second[kind]["password"]
        assert first[kind]["id"] == second[kind]["id"]
        assert second[kind]["action"] == "unchanged"
    assert first["admin"]["role"] == "admin" and first["user"]["role"] == "user"
    creds = Path(first["credentials_file"])
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    assert json.loads(creds.read_text())["user"] == first["user"]["password"]

    configured = settings.model_copy(update={"demo_user_password": SecretStr("Configured-Pw-42")})
    third = seed_demo_accounts(configured)
    assert third["user"]["password"] == "Configured-Pw-42" and third["user"]["action"] == "repaired"
    engine = make_engine(sqlite_url)
    with transaction(session_factory(engine)) as s:
        from models import User

        user = s.get(User, third["user"]["id"])
        assert verify_password("Configured-Pw-42", user.password_hash)
    engine.dispose()
