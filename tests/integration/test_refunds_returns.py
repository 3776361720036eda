"""Refunds, cancels after payment and returns on MariaDB, through the order workflow and
its shard-side operations (``MoneyBack``, ``ReturnDesk``) with an in-memory stock ledger:
money reserved by guarded updates, callbacks settled once, the units restocked by key."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, text

from models import CouponCampaign, UserCoupon
from raymall.errors import (
    AmountMismatch,
    IdempotencyMismatch,
    InvalidTransition,
    OrderNotReturnable,
    RefundExceedsRemaining,
    ReturnQuantityExceeded,
    ReturnWindowClosed,
)
from raymall.ids import now_ms
from raymall.orders.workflow import OrderWorkflow
from raymall.refunds.money import MoneyBack
from raymall.returns.desk import ReturnDesk
from raymall.settings import Settings
from tests.conftest import needs_servers
from tests.integration.test_orders_workflow import LedgerStock, command, make, pending_payment
from tests.order_helpers import Shop

pytestmark = [pytest.mark.integration, needs_servers]
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def shop(mysql_url: str) -> Iterator[Shop]:
    settings = Settings(database_url=mysql_url, redis_url="redis://unused", env="test")
    s = Shop(settings, create_engine(mysql_url, isolation_level="READ COMMITTED"))
    yield s
    s.dispose()


class Desk:
    def __init__(self, shop: Shop, stock: LedgerStock) -> None:
        self.wf: OrderWorkflow = make(shop, stock)
        self.money = MoneyBack(self.wf)
        self.returns = ReturnDesk(self.wf, window_days=14)


async def paid_order(
    shop: Shop, lines: dict[int, int], stock: LedgerStock, desk: Desk, uid: int
) -> int:
    """An order of ``lines`` with 100 cents of discount on its first line, paid."""
    oid = int((await desk.wf.place(command(shop, uid, lines))).order["id"])
    first = min(lines)
    with shop.engine.begin() as conn:
        conn.execute(
            text("UPDATE order_items SET discount_cents = 100 WHERE order_id = :o AND sku_id = :s"),
            {"o": oid, "s": first},
        )
        conn.execute(
            text(
                "UPDATE orders SET total_cents = total_cents - 100, discount_cents = 100 "
                "WHERE id = :o"
            ),
            {"o": oid},
        )
    total = shop.scalar("SELECT total_cents FROM orders WHERE id = :o", o=oid)
    await desk.wf.settle(await pending_payment(shop, oid), succeeded=True, amount_cents=total)
    assert shop.scalar("SELECT status FROM orders WHERE id = :o", o=oid) == "paid"
    return oid


def setup2(shop: Shop) -> tuple[int, int, int, LedgerStock, Desk]:
    """A customer and two SKUs (1000 and 500 cents) with 10 units each."""
    uid = shop.user()
    shop.address(uid)
    a, b = shop.sku(price_cents=1000), shop.sku(price_cents=500)
    stock = LedgerStock()
    stock.add(a, 10)
    stock.add(b, 10)
    return uid, a, b, stock, Desk(shop, stock)


def item_id(shop: Shop, oid: int, sku: int) -> int:
    return int(
        shop.scalar("SELECT id FROM order_items WHERE order_id = :o AND sku_id = :s", o=oid, s=sku)
    )


def money(shop: Shop, oid: int) -> dict[str, Any]:
    return {
        "paid": shop.scalar("SELECT amount_cents FROM payments WHERE order_id = :o", o=oid),
        "reserved": shop.scalar("SELECT refunded_cents FROM payments WHERE order_id = :o", o=oid),
        "refunded": shop.scalar("SELECT refunded_cents FROM orders WHERE id = :o", o=oid),
        "lines": shop.rows(
            "SELECT sku_id, line_total_cents - discount_cents, refunded_cents "
            "FROM order_items WHERE order_id = :o ORDER BY id",
            o=oid,
        ),
        "succeeded": shop.scalar(
            "SELECT COALESCE(SUM(amount_cents), 0) FROM refunds "
            "WHERE order_id = :o AND status = 'succeeded'",
            o=oid,
        ),
    }


def check_bounds(shop: Shop, oid: int) -> dict[str, Any]:
    m = money(shop, oid)
    assert m["reserved"] <= m["paid"] and m["succeeded"] == m["refunded"] <= m["reserved"]
    assert all(refunded <= paid for _, paid, refunded in m["lines"])
    pending = shop.scalar(
        "SELECT COALESCE(SUM(amount_cents), 0) FROM refunds "
        "WHERE order_id = :o AND status = 'pending'",
        o=oid,
    )
    assert m["reserved"] == m["refunded"] + pending  # reserved = succeeded + in flight
    return m


async def test_a_partial_refund_reserves_its_money_and_settles_once(shop: Shop) -> None:
    uid, a, b, stock, desk = setup2(shop)
    oid = await paid_order(shop, {a: 3, b: 1}, stock, desk, uid)  # pays 3000 - 100 + 500
    r = await desk.money.refund(oid, key="k1", amount_cents=1200, lines=None, reason="goodwill")
    assert r["created"] and r["status"] == "pending" and sum(r["lines"].values()) == 1200
    again = await desk.money.refund(oid, key="k1", amount_cents=1200, lines=None, reason="x")
    assert again["id"] == r["id"] and not again["created"]
    with pytest.raises(IdempotencyMismatch):
        await desk.money.refund(oid, key="k1", amount_cents=1300, lines=None, reason="x")
    assert check_bounds(shop, oid)["reserved"] == 1200
    with pytest.raises(AmountMismatch):
        await desk.money.settle(r["id"], succeeded=True, amount_cents=1)
    done = await desk.money.settle(r["id"], succeeded=True, amount_cents=1200)
    assert done == {
        "refund_id": r["id"],
        "refund": "succeeded",
        "order_id": str(oid),
        "duplicate": False,
    }
    dup = await desk.money.settle(r["id"], succeeded=False, amount_cents=1200)
    assert dup["duplicate"] and dup["refund"] == "succeeded"
    assert check_bounds(shop, oid)["refunded"] == 1200
    # 3400 paid, 1200 back: 2200 left; one cent more is refused with its own code
    with pytest.raises(RefundExceedsRemaining) as err:
        await desk.money.refund(oid, key="k2", amount_cents=2201, lines=None, reason="x")
    assert err.value.details["left_cents"] == 2200
    # a line gives back at most what it paid (b: 500)
    with pytest.raises(RefundExceedsRemaining):
        await desk.money.refund(
            oid, key="k3", amount_cents=600, lines={item_id(shop, oid, b): 600}, reason="x"
        )
    # a failed refund releases its reservation and frees its key for a retry
    f = await desk.money.refund(oid, key="k4", amount_cents=300, lines=None, reason="x")
    assert check_bounds(shop, oid)["reserved"] == 1500
    failed = await desk.money.settle(f["id"], succeeded=False, amount_cents=300)
    assert failed["refund"] == "failed"
    assert check_bounds(shop, oid)["reserved"] == 1200
    retried = await desk.money.retry(f["id"])
    assert retried["created"] and retried["id"] != f["id"] and retried["amount_cents"] == 300
    assert retried["lines"] == f["lines"]
    twice = await desk.money.retry(f["id"])
    assert twice["id"] == retried["id"] and not twice["created"]
    await desk.money.settle(retried["id"], succeeded=True, amount_cents=300)
    assert check_bounds(shop, oid)["refunded"] == 1500
    assert (
        shop.scalar(
            "SELECT COUNT(*) FROM outbox WHERE topic = 'refund.succeeded' AND payload LIKE :p",
            p=f'%"order_id":"{oid}"%',
        )
        == 2
    )


async def test_refunds_in_flight_together_never_exceed_what_was_paid(shop: Shop) -> None:
    uid, a, b, stock, desk = setup2(shop)
    oid = await paid_order(shop, {a: 3, b: 1}, stock, desk, uid)  # 3400
    asks = [
        desk.money.refund(oid, key=f"race-{i}", amount_cents=1000, lines=None, reason="x")
        for i in range(8)
    ]
    results = await asyncio.gather(*asks, return_exceptions=True)
    won = [r for r in results if isinstance(r, dict)]
    assert len(won) == 3, results
    assert all(isinstance(r, RefundExceedsRemaining) for r in results if not isinstance(r, dict))
    assert check_bounds(shop, oid)["reserved"] == 3000


async def test_cancelling_a_paid_order_refunds_it_all_and_returns_stock_and_coupon(
    shop: Shop,
) -> None:
    uid, a, b, stock, desk = setup2(shop)
    oid = await paid_order(shop, {a: 2, b: 1}, stock, desk, uid)  # 2400
    now = now_ms()
    with shop.engine.begin() as conn:
        camp = conn.execute(
            insert(CouponCampaign).values(
                title="t", rule={}, scope={}, total=1, per_user_limit=1,
                claim_starts_ms=now, claim_ends_ms=now + DAY_MS, created_ms=now, updated_ms=now,
            )
        ).inserted_primary_key[0]  # fmt: skip
        coupon = secrets.randbelow(2**50) + 1
        conn.execute(
            insert(UserCoupon).values(
                id=coupon, campaign_id=camp, user_id=uid, claim_key="c", state="used",
                order_id=oid, valid_from_ms=now - 1, valid_until_ms=now + DAY_MS,
                created_ms=now, updated_ms=now,
            )
        )  # fmt: skip
    assert stock.of(a) == {"available": 8, "reserved": 0, "sold": 2}
    view = await desk.wf.cancel(oid, reason="user", actor=f"user:{uid}", role="user", user_id=uid)
    assert view["status"] == "cancelled"
    assert shop.rows(
        "SELECT `key`, amount_cents, status FROM refunds WHERE order_id = :o", o=oid
    ) == [(f"cancel:{oid}", 2400, "pending")]
    m = check_bounds(shop, oid)
    assert m["reserved"] == 2400 and all(paid == refunded for _, paid, refunded in m["lines"])
    assert stock.of(a)["available"] == 10 and stock.of(b)["available"] == 10
    assert shop.rows("SELECT state, order_id FROM user_coupons WHERE id = :c", c=coupon) == [
        ("available", None)
    ]
    with pytest.raises(InvalidTransition):
        await desk.wf.cancel(oid, reason="user", actor=f"user:{uid}", role="user", user_id=uid)
    assert stock.of(a)["available"] == 10  # restocked once


async def test_a_cancel_racing_a_shipment_has_exactly_one_winner(shop: Shop) -> None:
    for _ in range(3):
        uid, a, b, stock, desk = setup2(shop)
        oid = await paid_order(shop, {a: 1}, stock, desk, uid)
        cancel = desk.wf.cancel(oid, reason="user", actor=f"user:{uid}", role="user", user_id=uid)
        ship = desk.wf.move(oid, "shipped", reason="shipped", actor="admin:1", role="admin")
        results = await asyncio.gather(cancel, ship, return_exceptions=True)
        winners = [r for r in results if isinstance(r, dict)]
        assert len(winners) == 1, results
        status = shop.scalar("SELECT status FROM orders WHERE id = :o", o=oid)
        refunds = shop.scalar("SELECT COUNT(*) FROM refunds WHERE order_id = :o", o=oid)
        if status == "cancelled":
            assert refunds == 1 and stock.of(a)["available"] == 10
        else:
            assert status == "shipped" and refunds == 0 and stock.of(a)["sold"] == 1


def deliver(shop: Shop, oid: int, ago_ms: int = 0) -> None:
    with shop.engine.begin() as conn:
        conn.execute(
            text("UPDATE orders SET status = 'delivered', delivered_ms = :d WHERE id = :o"),
            {"o": oid, "d": now_ms() - ago_ms},
        )


async def test_a_return_restocks_by_key_and_refunds_exactly_the_units_paid(shop: Shop) -> None:
    uid, a, b, stock, desk = setup2(shop)
    oid = await paid_order(shop, {a: 3, b: 1}, stock, desk, uid)  # line a pays 2900
    line_a = item_id(shop, oid, a)
    with pytest.raises(OrderNotReturnable):
        await desk.returns.request(oid, user_id=uid, lines=[(line_a, 1)], reason="damaged")
    deliver(shop, oid)
    with pytest.raises(ReturnQuantityExceeded) as err:
        await desk.returns.request(oid, user_id=uid, lines=[(line_a, 4)], reason="damaged")
    assert err.value.details["returnable"] == 3
    first = await desk.returns.request(
        oid, user_id=uid, lines=[(line_a, 1)], reason="damaged", idempotency_key="r1"
    )
    replay = await desk.returns.request(
        oid, user_id=uid, lines=[(line_a, 1)], reason="damaged", idempotency_key="r1"
    )
    assert first["created"] and not replay["created"] and replay["id"] == first["id"]
    second = await desk.returns.request(oid, user_id=uid, lines=[(line_a, 2)], reason="other")
    with pytest.raises(ReturnQuantityExceeded):  # 1 + 2 claimed of 3
        await desk.returns.request(oid, user_id=uid, lines=[(line_a, 1)], reason="other")
    r1, r2 = int(first["id"]), int(second["id"])
    with pytest.raises(InvalidTransition):  # not approved yet
        await desk.returns.move(r1, "received", role="admin", actor="admin:1")
    for rid in (r1, r2):
        await desk.returns.move(rid, "approved", role="admin", actor="admin:1")
    tracked = await desk.returns.move(
        r1, "shipped_back", role="user", actor=f"user:{uid}", user_id=uid, tracking="RB1"
    )
    assert tracked["return_tracking"] == "RB1"
    got = await desk.returns.move(r1, "received", role="admin", actor="admin:1")
    assert got["status"] == "received" and got["refund_cents"] == 967  # 967 + 967 + 966
    assert stock.of(a) == {"available": 8, "reserved": 0, "sold": 3}
    got2 = await desk.returns.move(r2, "received", role="admin", actor="admin:1")
    assert got2["refund_cents"] == 1933
    assert stock.of(a)["available"] == 10
    with pytest.raises(InvalidTransition):  # a second receipt: no second restock
        await desk.returns.move(r2, "received", role="admin", actor="admin:1")
    assert stock.of(a)["available"] == 10
    refunds = shop.rows(
        "SELECT id, `key`, amount_cents FROM refunds WHERE order_id = :o ORDER BY created_ms", o=oid
    )
    assert [(k, amt) for _, k, amt in refunds] == [(f"return:{r1}", 967), (f"return:{r2}", 1933)]
    for refund_id, _, amount in refunds:
        await desk.money.settle(refund_id, succeeded=True, amount_cents=amount)
    m = check_bounds(shop, oid)
    assert m["refunded"] == 2900 and m["lines"][0][2] == 2900  # exactly the line's paid amount
    assert [e["to_status"] for e in got2["history"]] == ["requested", "approved", "received"]
    assert shop.scalar("SELECT status FROM returns WHERE id = :r", r=r2) == "refunded"
    assert shop.scalar("SELECT returned_quantity FROM order_items WHERE id = :i", i=line_a) == 3


async def test_a_return_after_the_window_is_refused(shop: Shop) -> None:
    uid, a, b, stock, desk = setup2(shop)
    oid = await paid_order(shop, {a: 1}, stock, desk, uid)
    deliver(shop, oid, ago_ms=15 * DAY_MS)
    with pytest.raises(ReturnWindowClosed):
        await desk.returns.request(
            oid, user_id=uid, lines=[(item_id(shop, oid, a), 1)], reason="defective"
        )


async def test_a_refund_racing_a_return_receipt_never_pays_a_line_twice(shop: Shop) -> None:
    uid, a, b, stock, desk = setup2(shop)
    oid = await paid_order(shop, {a: 3, b: 1}, stock, desk, uid)
    deliver(shop, oid)
    line_a = item_id(shop, oid, a)
    ret = await desk.returns.request(oid, user_id=uid, lines=[(line_a, 3)], reason="defective")
    rid = int(ret["id"])
    await desk.returns.move(rid, "approved", role="admin", actor="admin:1")
    receive = desk.returns.move(rid, "received", role="admin", actor="admin:1")
    refund = desk.money.refund(
        oid, key="goodwill", amount_cents=2900, lines={line_a: 2900}, reason="goodwill"
    )
    results = await asyncio.gather(receive, refund, return_exceptions=True)
    assert isinstance(results[0], dict), results  # the receipt always restocks
    m = check_bounds(shop, oid)
    assert m["lines"][0][2] == 2900  # the line is paid back once, by one of the two
    assert stock.of(a)["available"] == 10
    if isinstance(results[1], dict):  # the refund first: the return refunds what is left
        assert results[0]["refund_cents"] == 0 and results[0]["status"] == "refunded"
    else:
        assert isinstance(results[1], RefundExceedsRemaining)
        assert results[0]["refund_cents"] == 2900
