"""FlashService's purchase batches, with a stand-in for the shards and the rate limiter:
one rate-limit call decides a whole batch and one call per shard carries its purchases;
each request gets its own answer (an order, a refusal of its own, or its shard's fault),
and a shard's refusal becomes the error the result-code table names."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from raymall.domain.sale import Sale
from raymall.domain.shard_ops import BuyResult, FlashBuy, Op, Result
from raymall.errors import LimitExceeded, RateLimited, SaleEnded, Unavailable
from raymall.flash.service import FlashService
from raymall.ratelimit import Decision
from raymall.settings import Settings

NOW_PLUS = 10**14  # far in the future (ms)


class Shards:
    """Two shards: a SKU's shard is its parity. Answers each FlashBuy with ``answer``."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[Op]]] = []
        self.failing: set[int] = set()
        self.code = "ok"

    def shard_of(self, sku_id: int) -> int:
        return sku_id % 2

    async def send_batch(self, shard: int, ops: list[Op]) -> Sequence[Result]:
        self.calls.append((shard, list(ops)))
        await asyncio.sleep(0)
        if shard in self.failing:
            raise RuntimeError("shard down")
        out: list[Result] = []
        for op in ops:
            assert type(op) is FlashBuy
            order = 1000 + op.user_id if self.code == "ok" else None
            out.append(BuyResult(self.code, order, 77, False, 5, 0, 0))
        return out

    async def submit(self, shard: int, op: Op) -> Result:
        return (await self.send_batch(shard, [op]))[0]

    async def release(self, key: str, sku_ids: Iterable[int]) -> None:
        raise AssertionError("not used here")


class Limiter:
    """Refuses the users in ``refused``; records each call."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.refused: set[str] = set()

    async def check(self, requests: Sequence[Any]) -> list[Decision]:
        self.calls.append(len(requests))
        out = []
        for checks in requests:
            subjects = {subject for _, subject in checks}
            bad = any(s.split(":")[-1] in self.refused for s in subjects)
            out.append(Decision(False, 2.5, 0, "flash_user") if bad else Decision(True, 0, 1))
        return out


@pytest.fixture()
def flash() -> FlashService:
    settings = Settings(
        database_url="sqlite://",
        redis_url="redis://unused",
        flash_batch_window_ms=5,
        flash_rate_user_per_s=5,
        flash_rate_ip_per_s=0,
        flash_rate_event_per_s=0,
        flash_sale_cache_ttl_s=3600,
    )
    redis: Any = type("Redis", (), {"register_script": lambda self, source: None})()
    service = FlashService(settings, None, redis, Shards())  # type: ignore[arg-type]
    service.limiter = Limiter()  # type: ignore[assignment]
    for sale_id, sku in ((1, 10), (2, 11)):  # one sale per shard
        service.remember(Sale(sale_id, sku, 250, 100, 1, 0, NOW_PLUS, False, 0))
    return service


async def outcome(flash: FlashService, user: int, sale: int, keyed: bool = True) -> Any:
    key = f"key-{user}" if keyed else None
    try:
        return (await flash.purchase(user, sale, key, None))["order_id"]
    except Exception as exc:
        return exc


async def test_one_rate_limit_call_and_one_call_per_shard_decide_a_batch(
    flash: FlashService,
) -> None:
    flash.limiter.refused = {"3"}  # type: ignore[attr-defined]
    jobs = [(user, 1 + user % 2) for user in range(1, 9)]
    answers = await asyncio.gather(*(outcome(flash, u, s) for u, s in jobs))
    assert flash.limiter.calls == [8]  # type: ignore[attr-defined]
    shards: Any = flash.inventory
    assert sorted(shard for shard, _ in shards.calls) == [0, 1]
    for (user, _), answer in zip(jobs, answers, strict=True):
        if user == 3:
            assert isinstance(answer, RateLimited) and answer.details == {"retry_after": 3}
        else:
            assert answer == str(1000 + user)
    sent = {op.user_id: (shard, op) for shard, ops in shards.calls for op in ops}
    assert 3 not in sent and len(sent) == 7
    shard, op = sent[2]
    assert (shard, op.hold_key, op.sale_id, op.key, op.qty) == (0, "flash:1@0", 1, "k:key-2", 1)


async def test_a_failing_shard_fails_only_its_own_purchases(flash: FlashService) -> None:
    shards: Any = flash.inventory
    shards.failing = {0}  # sale 2's SKU (11) is on shard 1, sale 1's (10) on shard 0
    answers = await asyncio.gather(*(outcome(flash, u, 1 + u % 2) for u in range(1, 5)))
    for user, answer in zip(range(1, 5), answers, strict=True):
        if 1 + user % 2 == 1:
            assert isinstance(answer, Unavailable)
        else:
            assert answer == str(1000 + user)


async def test_a_shard_refusal_is_the_error_its_code_names(flash: FlashService) -> None:
    shards: Any = flash.inventory
    shards.code = "limit_reached"
    refused = await outcome(flash, 1, 1)
    assert isinstance(refused, LimitExceeded)
    assert refused.message == "at most 1 per customer"
    assert refused.details == {"per_user_limit": 1}
    shards.code = "ended"
    assert isinstance(await outcome(flash, 2, 1), SaleEnded)
    calls = len(shards.calls)
    again = await outcome(flash, 3, 1, keyed=False)  # known to have ended: no shard call
    assert isinstance(again, SaleEnded) and again.details == {"ends_at_ms": NOW_PLUS}
    assert len(shards.calls) == calls
