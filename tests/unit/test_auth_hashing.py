"""The replica's hash pool, device tokens and the access token's generation: no services."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from raymall.auth.devices import DeviceTokens
from raymall.auth.hashing import HashPool
from raymall.auth.tokens import TokenCodec
from raymall.errors import InvalidToken, Unavailable

SECRET = "s" * 40


class _GatedHasher:
    """Hashes block until the gate opens, so a test can fill the queue."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0

    def hash(self, password: str) -> str:
        self.calls += 1
        self.gate.wait(5)
        return "h:" + password

    def verify(self, password: str, hashed: str) -> bool:
        self.calls += 1
        self.gate.wait(5)
        return hashed == "h:" + password


def test_a_full_hash_queue_refuses_the_newcomer_with_retry_after() -> None:
    async def scenario() -> None:
        hasher = _GatedHasher()
        pool = HashPool(hasher, threads=2, max_pending=4)  # type: ignore[arg-type]
        waiting = [asyncio.create_task(pool.verify("pw", "h:pw")) for _ in range(4)]
        await asyncio.sleep(0.05)
        with pytest.raises(Unavailable) as refused:
            await pool.verify("pw", "h:pw")
        assert refused.value.status == 503 and refused.value.retry_after is not None
        assert refused.value.retry_after >= 1
        hasher.gate.set()
        assert await asyncio.gather(*waiting) == [True] * 4  # the queue itself is served
        assert hasher.calls == 4 and pool.pending == 0
        assert await pool.verify("pw", "h:pw")  # and room is made again
        pool.close()

    asyncio.run(scenario())


def test_bulk_work_fills_at_most_half_the_queue() -> None:
    async def scenario() -> None:
        hasher = _GatedHasher()
        pool = HashPool(hasher, threads=1, max_pending=4)  # type: ignore[arg-type]
        bulk = [asyncio.create_task(pool.hash("pw", bulk=True)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Unavailable):
            await pool.verify("x", "h:pw", dummy=True)  # an unknown name's dummy is bulk
        signing_in = asyncio.create_task(pool.verify("pw", "h:pw"))  # a real sign-in fits
        await asyncio.sleep(0.05)
        hasher.gate.set()
        assert await signing_in and await asyncio.gather(*bulk) == ["h:pw", "h:pw"]
        pool.close()

    asyncio.run(scenario())


def test_a_device_token_names_its_device_for_its_user_only() -> None:
    devices = DeviceTokens(SECRET, ttl_s=3600)
    token = devices.issue(7)
    device = devices.verify(token, 7)
    assert device is not None
    assert devices.verify(devices.issue(7, device), 7) == device  # a device keeps its id
    assert devices.verify(token, 8) is None  # another user's
    body, _, sig = token.rpartition(".")
    assert devices.verify(body.replace(".7.", ".8.") + "." + sig, 8) is None  # forged
    assert devices.verify(DeviceTokens("o" * 40, ttl_s=3600).issue(7), 7) is None
    expired = devices.issue(7, now=int(time.time()) - 7200)
    assert devices.verify(expired, 7) is None
    for junk in (None, "", "d1.7", "x" * 500, "d1.7.a.b.c"):
        assert devices.verify(junk, 7) is None


def test_a_device_token_that_is_not_ascii_is_no_device_not_an_error() -> None:
    """A sign-in's ``device_token`` is any JSON string: a non-ASCII one is simply not a
    device (comparing a non-ASCII str in constant time raises TypeError: a 500)."""
    devices = DeviceTokens(SECRET, ttl_s=3600)
    body, _, sig = devices.issue(7).rpartition(".")
    prefix, _, expiry = body.rpartition(".")
    for junk in (
        f"{body}.\u00e9{sig[1:]}",  # the signature
        "d1.7.a.1.\u00e9",
        f"{prefix}.\u0661\u0662.{sig}",  # digits, but not ASCII ones
        "d1.7.a.1.\ud800",  # not even UTF-8
    ):
        assert devices.verify(junk, 7) is None
    assert devices.verify(f"{prefix}.{expiry}.{sig}", 7) is not None


def test_access_tokens_carry_their_family_generation() -> None:
    codec = TokenCodec(SECRET, access_ttl_s=900, refresh_ttl_s=3600)
    assert codec.verify_access(codec.issue_access(1, "user", "f")[0]).generation == 0
    pair = codec.issue_pair(1, "user", "f", "r", generation=3)
    assert codec.verify_access(pair.access_token).generation == 3
    import jwt

    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    for bad in ("3", -1, 1.5, True):
        forged = jwt.encode(claims | {"gen": bad}, SECRET, algorithm="HS256")
        with pytest.raises(InvalidToken):
            codec.verify_access(forged)


def test_a_503_that_names_its_retry_sends_retry_after() -> None:
    from deployments.errors import domain_headers

    assert domain_headers(Unavailable("busy", details={"retry_after": 3})) == {"Retry-After": "3"}
    assert domain_headers(Unavailable("down")) is None
