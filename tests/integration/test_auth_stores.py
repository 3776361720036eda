"""The auth area against real stores: the Redis limiter, refresh-token families and the
revocation index, addresses' default rule, and the demo accounts."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

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


def test_a_charge_made_before_the_work_admits_at_most_the_burst_and_refunds(
    redis_url: str,
) -> None:
    """Charging first is what makes a limit hold under concurrency: of 64 concurrent
    charges exactly the burst is admitted, and a refund gives one back at once."""

    async def scenario() -> None:
        r = await _client(redis_url)
        limiter = RateLimiter(r, prefix=f"t{secrets.token_hex(3)}")
        account, shared = Limit("acct", 5, 300), Limit("shared", 100, 300)
        checks = ((account, "a"), (shared, "s"))
        decisions = await asyncio.gather(*(limiter.check(*checks) for _ in range(64)))
        assert sum(d.allowed for d in decisions) == 5
        assert (await limiter.peek((shared, "s"))).remaining == 95  # refused: charged nothing
        await limiter.refund(*checks)
        assert (await limiter.peek((account, "a"))).remaining == 1
        assert (await limiter.peek((shared, "s"))).remaining == 96
        for _ in range(10):  # a refund never fills a bucket past its capacity
            await limiter.refund(*checks)
        assert (await limiter.peek((account, "a"))).remaining == 5
        assert await r.exists(limiter.key(account, "a")) == 0  # full again: no key left
        await r.aclose()

    _run(scenario())


def _guard_settings(**over: Any) -> Settings:
    base: dict[str, Any] = {
        "redis_url": "redis://unused",
        "login_max_failures_per_account": 2,
        "login_max_failures_per_account_total": 3,
        "login_max_failures_per_ip": 4,
        "login_failure_window_s": 60,
    }
    return Settings(**(base | over))


def test_guard_buckets_an_account_per_client_and_a_device_apart(redis_url: str) -> None:
    from raymall.auth.guard import AuthGuard, Client
    from raymall.errors import RateLimited

    async def scenario() -> None:
        r = await _client(redis_url)
        guard = AuthGuard(RateLimiter(r, prefix=f"t{secrets.token_hex(3)}"), _guard_settings())
        anyone, known = Client(), Client("10.0.0.1")
        for _ in range(2):
            await guard.admit("u:1", anyone)
        with pytest.raises(RateLimited) as refused:
            await guard.admit("u:1", anyone)  # the unknown client used up its 2
        assert refused.value.details["scope"] == "account" and refused.value.retry_after >= 1
        await guard.admit("u:1", known)  # another client: its own 2 ...
        with pytest.raises(RateLimited):  # ... but the account's total (3) is spent
            await guard.admit("u:1", Client("10.0.0.2"))
        owner = await guard.admit("u:1", Client(device="dev-1"))  # a device: only its own
        await guard.succeeded(owner)
        for _ in range(2):
            await guard.admit("u:1", Client(device="dev-2"))
        with pytest.raises(RateLimited):
            await guard.admit("u:1", Client(device="dev-2"))
        await guard.admit("u:1", Client(device="dev-1"))  # one device's lock is its own
        # the address is limited over every account
        for account in ("u:2", "u:3", "u:4"):
            await guard.admit(account, known)
        with pytest.raises(RateLimited) as refused:
            await guard.admit("u:5", known)
        assert refused.value.details["scope"] == "address"
        await r.aclose()

    _run(scenario())


def test_guard_success_clears_its_client_and_refunds_the_shared_buckets(redis_url: str) -> None:
    from raymall.auth.guard import AuthGuard, Client
    from raymall.errors import RateLimited

    async def scenario() -> None:
        r = await _client(redis_url)
        guard = AuthGuard(RateLimiter(r, prefix=f"t{secrets.token_hex(3)}"), _guard_settings())
        client = Client("10.0.0.7")
        await guard.admit("u:1", client)
        await guard.succeeded(await guard.admit("u:1", client))
        # own bucket cleared (2 again), total has 1 failure: 2 more from this client
        await guard.admit("u:1", client)
        await guard.admit("u:1", client)
        with pytest.raises(RateLimited):
            await guard.admit("u:1", client)
        await r.aclose()

    _run(scenario())


def test_password_changes_and_registrations_have_their_own_limits(redis_url: str) -> None:
    from raymall.auth.guard import AuthGuard, Client
    from raymall.errors import RateLimited

    async def scenario() -> None:
        r = await _client(redis_url)
        settings = _guard_settings(register_max_per_client=3, register_max_unknown_clients=4)
        guard = AuthGuard(RateLimiter(r, prefix=f"t{secrets.token_hex(3)}"), settings)
        for _ in range(2):
            await guard.admit_password_change(1)
        with pytest.raises(RateLimited):
            await guard.admit_password_change(1)
        await guard.admit("u:1", Client())  # sign-in is another bucket
        for _ in range(3):
            await guard.admit_registration("10.1.1.1")
        with pytest.raises(RateLimited) as refused:
            await guard.admit_registration("10.1.1.1")
        assert refused.value.details["scope"] == "address"
        await guard.admit_registration("10.1.1.2")
        for _ in range(4):
            await guard.admit_registration(None)
        with pytest.raises(RateLimited) as refused:
            await guard.admit_registration(None)
        assert refused.value.details["scope"] == "unknown_addresses"
        assert [await guard.unknown_name_hashed(Client("10.9.9.9")) for _ in range(21)] == [
            True
        ] * 20 + [False]
        await r.aclose()

    _run(scenario())


def test_an_ipv6_client_is_limited_by_its_64_not_per_address(redis_url: str) -> None:
    """A customer holds a whole IPv6 /64: a fresh address from it for every attempt must
    not be a fresh bucket (sign-ins, registrations, unknown names)."""
    from raymall.auth.guard import AuthGuard, Client
    from raymall.errors import RateLimited

    async def scenario() -> None:
        r = await _client(redis_url)
        settings = _guard_settings(register_max_per_client=3, login_max_unknown_names_per_client=2)
        guard = AuthGuard(RateLimiter(r, prefix=f"t{secrets.token_hex(3)}"), settings)
        home = [f"2001:db8:1:2:{secrets.token_hex(2)}:{i}::1" for i in range(8)]
        for address in home[:2]:
            await guard.admit("u:1", Client(address))
        with pytest.raises(RateLimited):  # this client's 2, whatever address it takes
            await guard.admit("u:1", Client(home[2]))
        await guard.admit("u:1", Client("2001:db8:1:3::1"))  # another /64: another client
        for address in home[:3]:
            await guard.admit_registration(address)
        with pytest.raises(RateLimited):
            await guard.admit_registration(home[3])
        await guard.admit_registration("2001:db8:1:3::1")
        assert [await guard.unknown_name_hashed(Client(a)) for a in home[4:7]] == [
            True,
            True,
            False,
        ]
        # an IPv4-mapped address is its IPv4 address, not one bucket for every such client
        for _ in range(3):
            await guard.admit_registration("::ffff:192.0.2.1")
        with pytest.raises(RateLimited):
            await guard.admit_registration("192.0.2.1")
        await guard.admit_registration("::ffff:192.0.2.2")
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


# ---- the service: limits charged before hashing, refresh retiring access tokens ------------
class _CountingHasher:
    """The configured hasher, counting verifications."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.verifies = inner, 0

    def hash(self, password: str) -> str:
        return str(self.inner.hash(password))

    def verify(self, password: str, hashed: str) -> bool:
        self.verifies += 1
        return bool(self.inner.verify(password, hashed))

    def needs_rehash(self, hashed: str) -> bool:
        return bool(self.inner.needs_rehash(hashed))


async def _service(sessions, redis_url: str, **over: Any):  # type: ignore[no-untyped-def]
    from raymall.auth.service import AuthService

    settings = Settings(redis_url="redis://unused", jwt_secret=SecretStr("k" * 40), **over)
    service = AuthService(settings, sessions, await _client(redis_url))
    counter = _CountingHasher(service.hasher)
    service.hashes.hasher = counter  # type: ignore[assignment]
    return service, counter


def test_concurrent_wrong_passwords_are_verified_at_most_the_limit(sessions, redis_url) -> None:
    from raymall.errors import InvalidCredentials, RateLimited

    async def scenario() -> None:
        service, counter = await _service(sessions, redis_url)
        name, password = f"u{secrets.token_hex(5)}", "Right-pw-1234"
        await service.register(email=f"{name}@example.com", username=name, password=password)
        device = (
            await service.login(email=None, username=name, password=password, ip=None)
        ).device_token
        counter.verifies = 0

        async def guess() -> str:
            try:
                await service.login(email=None, username=name, password="Wrong-pw-1234", ip=None)
            except (InvalidCredentials, RateLimited) as exc:
                return exc.code
            return "signed_in"

        answers = await asyncio.gather(*(guess() for _ in range(32)))
        limit = service.settings.login_max_failures_per_account
        assert counter.verifies <= limit
        assert answers.count("invalid_credentials") == counter.verifies
        assert answers.count("rate_limited") == 32 - counter.verifies
        with pytest.raises(RateLimited):  # this client (address unknown) is locked out ...
            await service.login(email=None, username=name, password=password, ip=None)
        # ... but not the owner's device, which signed in before
        pair = await service.login(
            email=None, username=name, password=password, ip=None, device_token=device
        )
        assert pair.device_token and service.devices.verify(pair.device_token, 0) is None
        service.close()

    _run(scenario())


def test_checks_the_hash_pool_refuses_are_not_charged(sessions, redis_url) -> None:
    """A full hash pool answers 503 without checking the password: that is no guess, so
    retrying through an overload (which anyone can cause) must never end in a lockout of
    the sign-in, the registration or the password change."""
    from raymall.errors import Unavailable

    async def scenario() -> None:
        service, counter = await _service(sessions, redis_url)
        name, password = f"u{secrets.token_hex(5)}", "Right-pw-1234"
        user = await service.register(email=f"{name}@example.com", username=name, password=password)
        ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.7"
        queue = service.hashes.max_pending
        service.hashes.max_pending = 0  # every check refused, as under someone's flood
        tries = service.settings.register_max_per_client + 2
        assert tries > service.settings.login_max_failures_per_account
        for _ in range(tries):
            with pytest.raises(Unavailable):
                await service.login(email=None, username=name, password=password, ip=ip)
            with pytest.raises(Unavailable):
                await service.login(email=None, username=f"x{name}", password=password, ip=ip)
            with pytest.raises(Unavailable):
                other = f"r{secrets.token_hex(5)}"
                await service.register(
                    email=f"{other}@example.com", username=other, password=password, ip=ip
                )
            with pytest.raises(Unavailable):
                await service.change_password(
                    user["id"], current=password, new="Other-pw-98765", ip=ip
                )
        assert counter.verifies == 0
        service.hashes.max_pending = queue
        pair = await service.login(email=None, username=name, password=password, ip=ip)
        other = f"r{secrets.token_hex(5)}"
        await service.register(
            email=f"{other}@example.com", username=other, password=password, ip=ip
        )
        await service.change_password(user["id"], current=password, new="Other-pw-98765", ip=ip)
        assert pair.access_token
        service.close()

    _run(scenario())


def test_unknown_names_past_their_budget_cost_no_hash(sessions, redis_url) -> None:
    from raymall.errors import InvalidCredentials

    async def scenario() -> None:
        service, counter = await _service(sessions, redis_url, login_max_unknown_names_per_client=3)
        ip = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.9"
        for _ in range(6):
            name = f"nobody{secrets.token_hex(5)}"
            with pytest.raises(InvalidCredentials):
                await service.login(email=None, username=name, password="Pw-123456789", ip=ip)
        assert counter.verifies == 3
        service.close()

    _run(scenario())


def test_refresh_retires_the_access_tokens_issued_before_it(sessions, redis_url) -> None:
    from raymall.errors import TokenRevoked

    async def scenario() -> None:
        service, _ = await _service(sessions, redis_url)
        name, password = f"u{secrets.token_hex(5)}", "Right-pw-1234"
        await service.register(email=f"{name}@example.com", username=name, password=password)
        first = await service.login(email=None, username=name, password=password, ip=None)
        assert (await service.authenticate(first.access_token)).generation == 0
        second = await service.refresh(first.refresh_token)
        with pytest.raises(TokenRevoked):
            await service.authenticate(first.access_token)
        assert (await service.authenticate(second.access_token)).generation == 1
        third = await service.refresh(second.refresh_token)
        with pytest.raises(TokenRevoked):
            await service.authenticate(second.access_token)
        await service.authenticate(third.access_token)
        # the flag never goes back to an older generation
        await service.revocations.family_rotated(first.family_id, 1)
        with pytest.raises(TokenRevoked):
            await service.authenticate(second.access_token)
        # lost Redis data: the rebuild restores the retirement from the database
        await service.revocations.redis.delete("auth:epoch", "auth:fam:" + first.family_id)
        with pytest.raises(TokenRevoked):
            await service.authenticate(second.access_token)
        await service.authenticate(third.access_token)
        # a logout still revokes the whole family, and a rotation cannot undo it
        await service.logout(first.family_id)
        await service.revocations.family_rotated(first.family_id, 9)
        with pytest.raises(TokenRevoked):
            await service.authenticate(third.access_token)
        service.close()

    _run(scenario())
