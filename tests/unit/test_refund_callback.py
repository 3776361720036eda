"""The provider's refund callback over a real SQLite database: a forged, stale or malformed
callback is refused and audited (reasons ``refund_*``) and reaches no shard; one naming an
unknown refund is 404 and audited; a good one is handed to the owning shard."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import text

from raymall.db import make_engine, session_factory
from raymall.errors import BadSignature, RefundNotFound, ValidationFailed
from raymall.orders.service import OrderService
from raymall.orders.signing import sign
from raymall.settings import Settings
from tests.unit.test_payment_callback import SECRET, Limiter


class Shards:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def owner(self, stored_shard: int, user_id: int) -> int:
        return stored_shard

    async def call(self, shard: int, method: str, *args: Any, **kw: Any) -> Any:
        self.calls.append((shard, method, args, kw))
        return {"refund_id": args[0], "refund": "succeeded", "duplicate": False}


@pytest.fixture()
def service(sqlite_url: str) -> tuple[OrderService, Any, Shards]:
    from raymall.launcher.migrate import upgrade

    upgrade(sqlite_url)
    settings = Settings(database_url=sqlite_url, redis_url="redis://unused", payment_secret=SECRET)
    engine = make_engine(sqlite_url)
    shards = Shards()
    svc = OrderService(
        settings, session_factory(engine), shards,  # type: ignore[arg-type]
        None, None, engine,  # type: ignore[arg-type]
    )  # fmt: skip
    svc.callbacks.limiter = Limiter()  # type: ignore[assignment]
    return svc, engine, shards


def audits(engine: Any) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT reason FROM payment_audit ORDER BY id")))


def body(**kw: Any) -> bytes:
    doc = {"refund_id": "rf_1", "payment_id": "pay_1", "order_id": "7", "amount_cents": 500}
    return json.dumps({**doc, "status": "succeeded", **kw}).encode()


async def test_forged_stale_and_malformed_refund_callbacks_are_refused_and_audited(
    service: tuple[OrderService, Any, Shards],
) -> None:
    svc, engine, shards = service
    raw = body()
    now = str(int(time.time()))
    with pytest.raises(BadSignature):
        await svc.callbacks.handle_refund(raw, now, "0" * 64, "10.0.0.1")
    old = str(int(time.time()) - 3600)
    with pytest.raises(BadSignature):
        await svc.callbacks.handle_refund(raw, old, sign(SECRET, old, raw), "10.0.0.1")
    bad = body(amount_cents="500")
    with pytest.raises(ValidationFailed):
        await svc.callbacks.handle_refund(bad, now, sign(SECRET, now, bad), "10.0.0.1")
    with pytest.raises(RefundNotFound):  # signed and well formed, but no such refund
        await svc.callbacks.handle_refund(raw, now, sign(SECRET, now, raw), "10.0.0.1")
    assert audits(engine) == [
        "refund_bad_signature",
        "refund_stale_timestamp",
        "refund_malformed",
        "refund_not_found",
    ]
    assert shards.calls == []


def test_refund_and_return_notifications_name_the_amount_going_back() -> None:
    from raymall.orders.consumers import render
    from raymall.orders.stream import Event

    def body(topic: str, **payload: Any) -> str:
        rendered = render(Event("1-0", "e1", topic, "9", {"user_id": 5, **payload}, 1))
        assert rendered is not None and rendered[0] == 5
        return rendered[3]

    assert "$9.67" in body("return.received", return_id="9", order_id="7", refund_cents=967)
    assert "$12.00" in body("refund.succeeded", order_id="7", amount_cents=1200)
    assert "7" in body("refund.failed", order_id="7", amount_cents=1)
