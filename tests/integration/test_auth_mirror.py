"""Token checks from the replicas' revocation mirrors (``raymall.auth.mirror``), two
``AuthService``s with their own feeds standing for two replicas: a change made on one
reaches the other through the index's channel; with Redis killed (a throw-away
redis-server) tokens are still verified, the session writes refuse cleanly, and after a
restart that lost every key the index is rebuilt from the database."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from raymall.auth.service import AuthService
from raymall.db import make_engine, session_factory
from raymall.errors import AccountBlocked, TokenRevoked, Unavailable
from raymall.feed import Feed
from raymall.settings import Settings
from tests.redis_process import RedisProcess

pytestmark = pytest.mark.integration
PASSWORD = "Right-pw-1234"


@pytest.fixture()
def sessions(mysql_url: str) -> Iterator[Any]:
    engine = make_engine(mysql_url, pool_size=4)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture()
def own_redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    yield server
    server.stop()


class Replica:
    """One replica's auth: its own Redis client, feed and mirror."""

    def __init__(self, sessions: Any, url: str) -> None:
        settings = Settings(redis_url=url, jwt_secret=SecretStr("k" * 40))
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=16, decode_responses=True, socket_connect_timeout=1
        )
        self.redis = aioredis.Redis.from_pool(pool)
        self.feed = Feed(url, name="test", reconnect_max_s=0.2)
        self.auth = AuthService(settings, sessions, self.redis, feed=self.feed)

    async def close(self) -> None:
        await self.feed.stop()
        await self.redis.aclose()
        self.auth.close()


@pytest.fixture()
async def replicas(sessions: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    made: list[Replica] = []

    async def make(url: str, *, wait: bool = True) -> Replica:
        replica = Replica(sessions, url)
        made.append(replica)
        await replica.feed.start()
        if wait:
            assert await replica.feed.wait_connected(5)
        return replica

    yield make
    for replica in made:
        await replica.close()


async def eventually(check: Callable[[], Any], timeout_s: float = 3.0) -> float:
    """Seconds until ``check()`` is true."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, "condition not met in time"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def refused(auth: AuthService, token: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            asyncio.get_running_loop()  # status is synchronous; authenticate only verifies
            claims = auth.verified.verify(token)
            assert auth.mirror is not None
            return (
                auth.mirror.status(claims.family_id, claims.user_id, claims.generation) is not None
            )
        except Unavailable:
            return False

    return check


async def sign_up(auth: AuthService) -> tuple[int, Any]:
    name = f"u{secrets.token_hex(5)}"
    user = await auth.register(email=f"{name}@example.com", username=name, password=PASSWORD)
    pair = await auth.login(email=None, username=name, password=PASSWORD, ip=None)
    return int(user["id"]), pair


async def test_a_change_on_one_replica_reaches_the_other_through_the_feed(
    replicas: Any, redis_url: str
) -> None:
    """Each write returns only once the other replica has applied it: every check below
    runs right after the write, with no wait."""
    a, b = await replicas(redis_url), await replicas(redis_url)
    uid, first = await sign_up(a.auth)
    await b.auth.authenticate(first.access_token)
    # a refresh on one retires the older access token on the other
    second = await a.auth.refresh(first.refresh_token)
    for replica in (a, b):
        with pytest.raises(TokenRevoked):
            await replica.auth.authenticate(first.access_token)
    await b.auth.authenticate(second.access_token)
    # a logout on the other revokes the family on the first
    family = a.auth.codec.verify_access(second.access_token).family_id
    await b.auth.logout(family)
    with pytest.raises(TokenRevoked):
        await a.auth.authenticate(second.access_token)
    # block and unblock
    name_pair = await a.auth.login(
        email=None, username=(await _username(a, uid)), password=PASSWORD, ip=None
    )
    await a.auth.set_blocked(admin_id=uid + 10_000, user_id=uid, blocked=True)
    with pytest.raises(AccountBlocked):
        await b.auth.authenticate(name_pair.access_token)
    await a.auth.set_blocked(admin_id=uid + 10_000, user_id=uid, blocked=False)
    third = await a.auth.login(
        email=None, username=(await _username(a, uid)), password=PASSWORD, ip=None
    )
    await b.auth.authenticate(third.access_token)


async def test_a_logout_waits_for_a_slow_replica_and_bounds_its_wait_for_a_silent_one(
    replicas: Any, redis_url: str
) -> None:
    """The writer waits for every receiver's acknowledgement: a replica whose mirror
    applies the message 0.3 s late delays the logout until it has; a subscriber that never
    acknowledges (a replica that died after receiving) holds it for the bound only."""
    from raymall.metrics import REVOCATION_ACK_TIMEOUTS

    a, b = await replicas(redis_url), await replicas(redis_url)
    assert b.auth.mirror is not None
    slow = b.auth.mirror.apply
    channel = b.auth.revocations.channel
    loop = asyncio.get_running_loop()
    b.feed._channels[channel].handlers[0] = lambda data: loop.call_later(0.3, slow, data)
    _, pair = await sign_up(a.auth)
    family = a.auth.codec.verify_access(pair.access_token).family_id
    started = time.monotonic()
    await a.auth.logout(family)
    waited = time.monotonic() - started
    assert refused(b.auth, pair.access_token)()
    assert 0.3 <= waited < 1.0

    # a listener that never acknowledges: the next logout gives up after its bound
    silent = aioredis.Redis.from_url(redis_url)
    pubsub = silent.pubsub()
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=1)  # the subscription's confirmation
    try:
        a.auth.writes.ack_timeout_s = 0.4
        _, other = await sign_up(a.auth)
        before = REVOCATION_ACK_TIMEOUTS._value.get()
        started = time.monotonic()
        await a.auth.logout(a.auth.codec.verify_access(other.access_token).family_id)
        waited = time.monotonic() - started
        assert 0.4 <= waited < 0.9
        assert REVOCATION_ACK_TIMEOUTS._value.get() == before + 1
        assert refused(b.auth, other.access_token)()  # the others applied it all the same
        message = await pubsub.get_message(timeout=1)
        assert message is not None and message["data"].split()[1:] == [
            b"r",
            a.auth.codec.verify_access(other.access_token).family_id.encode(),
        ]
    finally:
        await pubsub.aclose()
        await silent.aclose()


async def _username(replica: Replica, uid: int) -> str:
    from raymall.auth import users
    from raymall.auth.txn import in_tx

    user = await in_tx(replica.auth.sessions, users.get_user, uid)
    return str(user.username)


async def test_through_a_redis_outage_tokens_verify_and_session_writes_refuse_cleanly(
    replicas: Any, own_redis: RedisProcess
) -> None:
    a, b = await replicas(own_redis.url), await replicas(own_redis.url)
    uid, first = await sign_up(a.auth)
    family = a.auth.codec.verify_access(first.access_token).family_id
    username = await _username(a, uid)
    own_redis.kill()
    await eventually(lambda: not a.feed.connected and not b.feed.connected)
    # verification goes on from the mirrors as of the disconnect
    for replica in (a, b):
        assert (await replica.auth.authenticate(first.access_token)).user_id == uid
    # sign-in, refresh and logout refuse at once, before writing anything
    started = time.monotonic()
    calls = [
        a.auth.login(email=None, username=username, password=PASSWORD, ip=None),
        a.auth.refresh(first.refresh_token),
        b.auth.logout(family),
    ]
    for call in calls:
        with pytest.raises(Unavailable) as caught:
            await call
        assert caught.value.retry_after == 2
    assert time.monotonic() - started < 0.5
    # the refresh token was not spent: it still works once Redis is back (empty: the
    # index is rebuilt from the database, so the mirrors fail closed, never open)
    own_redis.start()
    back = time.monotonic()
    await eventually(lambda: a.feed.connected and b.feed.connected, timeout_s=5)
    reconnect_s = time.monotonic() - back
    second = await a.auth.refresh(first.refresh_token)
    await eventually(refused(b.auth, first.access_token))
    await b.auth.authenticate(second.access_token)
    await a.auth.logout(family)
    await eventually(refused(b.auth, second.access_token))
    assert reconnect_s < 2.0


async def test_a_revocation_the_index_lost_is_restored_from_the_database(
    replicas: Any, own_redis: RedisProcess
) -> None:
    a = await replicas(own_redis.url)
    uid, first = await sign_up(a.auth)
    second = await a.auth.refresh(first.refresh_token)
    family = a.auth.codec.verify_access(second.access_token).family_id
    blocked_uid, blocked_pair = await sign_up(a.auth)
    blocked_family = a.auth.codec.verify_access(blocked_pair.access_token).family_id
    await a.auth.set_blocked(admin_id=uid, user_id=blocked_uid, blocked=True)
    resyncs = a.feed.resyncs
    own_redis.kill()  # every key is gone with it
    own_redis.start()
    await eventually(lambda: a.feed.connected and a.feed.resyncs > resyncs, timeout_s=5)
    b = await replicas(own_redis.url)  # a replica that never saw the changes
    mirror = b.auth.mirror
    assert mirror is not None
    assert mirror.status(family, uid, 0) == "superseded"
    assert mirror.status(family, uid, 1) is None
    assert mirror.status("any", blocked_uid) == "user_blocked"
    await a.auth.set_blocked(admin_id=uid, user_id=blocked_uid, blocked=False)
    await eventually(lambda: mirror.status("any", blocked_uid) is None)
    # blocking ended the sessions the user had: unblocking does not bring them back
    assert mirror.status(blocked_family, blocked_uid) == "family_revoked"


async def test_a_replica_whose_mirror_never_loaded_refuses_every_token(
    replicas: Any, own_redis: RedisProcess
) -> None:
    a = await replicas(own_redis.url)
    _, pair = await sign_up(a.auth)
    own_redis.kill()
    cold = await replicas(own_redis.url, wait=False)
    with pytest.raises(Unavailable):
        await cold.auth.authenticate(pair.access_token)
    own_redis.start()
    assert await cold.feed.wait_connected(5)
    await cold.auth.authenticate(pair.access_token)


async def test_a_logout_whose_index_write_fails_after_the_commit_still_reaches_every_replica(
    replicas: Any, own_redis: RedisProcess
) -> None:
    a, b = await replicas(own_redis.url), await replicas(own_redis.url)
    _, pair = await sign_up(a.auth)
    family = a.auth.codec.verify_access(pair.access_token).family_id
    own_redis.kill()
    # nothing has noticed yet: the logout commits, then its index write fails
    await a.auth.logout(family)
    assert a.auth.mirror is not None and len(a.auth.mirror.pending) == 1
    with pytest.raises(TokenRevoked):  # at once on the replica that made it
        await a.auth.authenticate(pair.access_token)
    await b.auth.authenticate(pair.access_token)  # the other learns it once Redis is back
    own_redis.start()
    await eventually(refused(b.auth, pair.access_token), timeout_s=5)
    await eventually(lambda: not a.auth.mirror.pending, timeout_s=5)  # type: ignore[union-attr]


async def test_the_index_catalogue_forgets_expired_families_as_it_is_written(
    redis_url: str,
) -> None:
    from raymall.auth.revocations import FAMILIES_KEY, RevocationIndex, Snapshot

    async def load(since_ms: int) -> Snapshot:
        return Snapshot([], [])

    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await r.delete(FAMILIES_KEY)
        index = RevocationIndex(r, family_flag_ttl_s=1, load=load)
        await index.families_revoked(["old"])
        await asyncio.sleep(1.1)
        await index.family_rotated("new", 2)
        assert await r.zrange(FAMILIES_KEY, 0, -1) == ["new"]
        view = await index.snapshot()
        assert view.families["new"][0] == "g2" and "old" not in view.families
    finally:
        await r.aclose()
