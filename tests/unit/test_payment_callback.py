"""OrderService's payment callback over a real SQLite database: a refused callback is
answered 4xx and audited whatever its body (a body nested 15,000 deep included, signed or
not), and refusals of forged callbacks are rate-limited before they are audited, while a
callback with a good signature is never limited."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import text

from raymall.db import make_engine, session_factory
from raymall.errors import BadSignature, DomainError, NotFound, RateLimited, ValidationFailed
from raymall.orders.service import OrderService
from raymall.orders.signing import sign
from raymall.ratelimit import Decision, Limit
from raymall.settings import Settings

SECRET = "callback-test-secret-0123456789-abcdefgh"
NESTED = b"[" * 15_000


class Limiter:
    """Counts events per (limit, subject) with no refill: the n-th event past a limit's
    ``limit`` is refused, and nothing is charged unless every limit admits it."""

    def __init__(self) -> None:
        self.used: Counter[tuple[str, str]] = Counter()

    async def check(self, *checks: tuple[Limit, str], cost: int = 1) -> Decision:
        for limit, subject in checks:
            if self.used[(limit.name, subject)] + cost > limit.limit:
                return Decision(False, 30.0, 0, limit.name)
        for limit, subject in checks:
            self.used[(limit.name, subject)] += cost
        return Decision(True, 0, 1)


@pytest.fixture()
def service(sqlite_url: str) -> tuple[OrderService, Any]:
    settings = Settings(
        database_url=sqlite_url,
        redis_url="redis://unused",
        payment_secret=SECRET,
        payment_callback_refusals_per_ip_per_min=3,
        payment_callback_refusals_per_min=5,
    )
    engine = make_engine(sqlite_url)
    svc = OrderService(
        settings,
        session_factory(engine),
        None,  # type: ignore[arg-type]  # no shard is reached by a refused callback
        None,  # type: ignore[arg-type]
        None,
        engine,
    )
    svc.callbacks.limiter = Limiter()  # type: ignore[assignment]
    return svc, engine


def audits(engine: Any) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT reason FROM payment_audit ORDER BY id")))


def signed(body: bytes) -> tuple[str, str]:
    ts = str(int(time.time()))
    return ts, sign(SECRET, ts, body)


async def test_a_deeply_nested_callback_is_refused_and_audited(
    service: tuple[OrderService, Any],
) -> None:
    svc, engine = service
    with pytest.raises(BadSignature):  # unsigned
        await svc.callback(NESTED, None, None, "10.0.0.1")
    with pytest.raises(ValidationFailed):  # signed: the body itself is refused
        await svc.callback(NESTED, *signed(NESTED), "10.0.0.1")
    assert audits(engine) == ["missing_signature", "malformed"]


async def test_forged_callbacks_are_limited_before_audit_but_signed_ones_never(
    service: tuple[OrderService, Any],
) -> None:
    svc, engine = service
    statuses = []
    for _ in range(5):
        with pytest.raises(DomainError) as refused:
            await svc.callback(b"{}", "1", "00", "10.0.0.2")
        statuses.append(refused.value.status)
    assert statuses == [401, 401, 401, 429, 429]  # 3 per address
    with pytest.raises(BadSignature):  # another address still gets through
        await svc.callback(b"{}", "1", "00", "10.0.0.3")
    with pytest.raises(BadSignature):  # an unknown address counts toward the total only
        await svc.callback(b"{}", "1", "00", "unknown")
    with pytest.raises(RateLimited):  # 5 in all: the total is spent
        await svc.callback(b"{}", "1", "00", "10.0.0.4")
    assert len(audits(engine)) == 5
    body = b'{"payment_id":"pay_x","order_id":"1","amount_cents":1,"status":"succeeded"}'
    for _ in range(3):  # a good signature is never limited: refused on its merits, audited
        with pytest.raises(NotFound):
            await svc.callback(body, *signed(body), "10.0.0.2")
    assert audits(engine)[-3:] == ["not_found"] * 3


async def test_a_refused_callback_is_audited_when_the_limits_cannot_be_checked(
    service: tuple[OrderService, Any],
) -> None:
    svc, engine = service

    class Down:
        async def check(self, *_checks: Any, **_kw: Any) -> Decision:
            raise ConnectionError("redis down")

    svc.callbacks.limiter = Down()  # type: ignore[assignment]
    with pytest.raises(BadSignature):
        await svc.callback(b"{}", None, None, "10.0.0.9")
    assert audits(engine) == ["missing_signature"]
