"""OrderWorkflow on MariaDB with an in-memory stock ledger (the real ``Ledger``, no
actors): one-transaction creation, idempotency under concurrency, compare-and-set
transitions, pay against timeout, duplicate callbacks, refunds and the deadline sweep."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import create_engine

from raymall.db import session_factory
from raymall.domain.ledger import Ledger
from raymall.domain.outcomes import raise_for
from raymall.domain.pricing import price
from raymall.domain.shard_ops import Adjust, Confirm, Release, Reserve
from raymall.domain.stock import Stock
from raymall.errors import (
    AmountMismatch,
    IdempotencyMismatch,
    InvalidTransition,
    NotFound,
    OutOfStock,
)
from raymall.ids import now_ms
from raymall.orders import payments as pay
from raymall.orders import repository as repo
from raymall.orders.ports import PlaceOrder
from raymall.orders.repository import load_skus, shipping_address
from raymall.orders.workflow import OrderWorkflow
from raymall.settings import Settings
from tests.conftest import needs_servers
from tests.order_helpers import Shop

pytestmark = [pytest.mark.integration, needs_servers]


class LedgerStock:
    """The inventory client's contract over one in-memory ledger."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        self.fail_next_release = False

    def add(self, sku_id: int, units: int) -> None:
        self.ledger.load_stock(sku_id, Stock(total=units, available=units))

    async def reserve(self, key: str, items: dict[int, int], ttl_s: float | None) -> None:
        raise_for(self.ledger.apply(Reserve(key, dict(items), None)), key=key, skus=items)

    async def release(self, key: str, sku_ids: Sequence[int]) -> None:
        raise_for(self.ledger.apply(Release(key)), key=key)

    async def confirm(self, key: str, sku_ids: Sequence[int]) -> None:
        raise_for(self.ledger.apply(Confirm(key)), key=key)

    async def adjust(
        self, key: str, sku_id: int, delta: int, reason: str, actor_id: int | None = None
    ) -> None:
        raise_for(self.ledger.apply(Adjust(key, sku_id, delta, reason, actor_id)), key=key)

    def of(self, sku_id: int) -> dict[str, int]:
        s = self.ledger.stock[sku_id]
        assert not self.ledger.violations(full_history=False)
        return {"available": s.available, "reserved": s.reserved, "sold": s.sold}


@pytest.fixture(scope="module")
def shop(mysql_url: str) -> Iterator[Shop]:
    settings = Settings(database_url=mysql_url, redis_url="redis://unused", env="test")
    s = Shop(settings, create_engine(mysql_url, isolation_level="READ COMMITTED"))
    yield s
    s.dispose()


def make(shop: Shop, stock: LedgerStock, timeout_s: float = 60) -> OrderWorkflow:
    return OrderWorkflow(
        session_factory(shop.engine),
        stock,
        shard=0,
        timeout_s=timeout_s,
        grace_s=60,
        worker_id=3072 + secrets.randbelow(1000),
    )


def command(
    shop: Shop, user_id: int, items: dict[int, int], key: str | None = None, rhash: str = "h1"
) -> PlaceOrder:
    with session_factory(shop.engine)() as session:
        quote = price(items, load_skus(session, list(items)))
        address = shipping_address(session, user_id, None)
    return PlaceOrder(
        user_id=user_id,
        idempotency_key=key or f"k-{secrets.token_hex(6)}",
        request_hash=rhash,
        lines=quote.lines,
        currency="USD",
        address=address,
    )


def setup(shop: Shop, units: int = 10, price_cents: int = 1250) -> tuple[int, int, LedgerStock]:
    uid = shop.user()
    shop.address(uid)
    sku = shop.sku(price_cents=price_cents)
    stock = LedgerStock()
    stock.add(sku, units)
    return uid, sku, stock


async def test_an_order_is_written_with_items_history_and_outbox_in_one_go(shop: Shop) -> None:
    uid, sku, stock = setup(shop)
    wf = make(shop, stock)
    placed = await wf.place(command(shop, uid, {sku: 3}))
    order = placed.order
    assert placed.created and order["status"] == "pending_payment"
    assert order["total_cents"] == 3750 and order["items"][0]["quantity"] == 3
    oid = int(order["id"])
    assert shop.scalar("SELECT COUNT(*) FROM order_items WHERE order_id = :o", o=oid) == 1
    assert shop.rows(
        "SELECT from_status, to_status FROM order_events WHERE order_id = :o", o=oid
    ) == [(None, "pending_payment")]
    assert (
        shop.scalar("SELECT topic FROM outbox WHERE aggregate_id = :a", a=str(oid))
        == "order.placed"
    )
    assert stock.of(sku) == {"available": 7, "reserved": 3, "sold": 0}


async def test_twenty_concurrent_requests_with_one_key_make_one_order(shop: Shop) -> None:
    uid, sku, stock = setup(shop)
    wf = make(shop, stock)
    cmd = command(shop, uid, {sku: 2}, key="same-key")
    results = await asyncio.gather(*(wf.place(cmd) for _ in range(20)))
    assert len({r.order["id"] for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert shop.scalar("SELECT COUNT(*) FROM orders WHERE user_id = :u", u=uid) == 1
    assert stock.of(sku)["reserved"] == 2
    # a later replay comes from the database; another body under the key is refused
    again = await make(shop, stock).place(cmd)
    assert again.order["id"] == results[0].order["id"] and not again.created
    with pytest.raises(IdempotencyMismatch):
        await wf.place(command(shop, uid, {sku: 1}, key="same-key", rhash="h2"))


async def test_a_lost_race_on_the_unique_key_releases_only_its_own_reservation(shop: Shop) -> None:
    uid, sku, stock = setup(shop)
    cmd = command(shop, uid, {sku: 4}, key="two-shards")
    a, b = make(shop, stock), make(shop, stock)  # two shard instances (a restart overlap)
    first, second = await asyncio.gather(a.place(cmd), b.place(cmd))
    assert first.order["id"] == second.order["id"]
    assert stock.of(sku) == {"available": 6, "reserved": 4, "sold": 0}


async def test_out_of_stock_writes_nothing(shop: Shop) -> None:
    uid, sku, stock = setup(shop, units=1)
    with pytest.raises(OutOfStock):
        await make(shop, stock).place(command(shop, uid, {sku: 2}))
    assert shop.scalar("SELECT COUNT(*) FROM orders WHERE user_id = :u", u=uid) == 0
    assert stock.of(sku) == {"available": 1, "reserved": 0, "sold": 0}


async def test_a_failed_write_returns_the_reserved_stock(shop: Shop) -> None:
    uid, sku, stock = setup(shop)
    wf = make(shop, stock)
    cmd = command(shop, uid, {sku: 2})
    bad = PlaceOrder(**{**cmd.__dict__, "currency": "TOO-LONG-CURRENCY"})
    with pytest.raises(Exception):  # noqa: B017 - the database refuses the row
        await wf.place(bad)
    assert stock.of(sku) == {"available": 10, "reserved": 0, "sold": 0}
    assert shop.scalar("SELECT COUNT(*) FROM orders WHERE user_id = :u", u=uid) == 0


async def pending_payment(shop: Shop, order_id: int, outcome: str = "succeed") -> str:
    sessions = session_factory(shop.engine)
    with sessions() as s, s.begin():
        from raymall.orders.repository import get_order

        order = get_order(s, order_id)
        assert order is not None
        return pay.create_payment(s, order, outcome, now_ms()).id


async def test_payment_confirms_the_stock_and_a_duplicate_callback_changes_nothing(
    shop: Shop,
) -> None:
    uid, sku, stock = setup(shop)
    wf = make(shop, stock)
    order = (await wf.place(command(shop, uid, {sku: 2}))).order
    oid = int(order["id"])
    pid = await pending_payment(shop, oid)
    with pytest.raises(AmountMismatch):
        await wf.settle(pid, succeeded=True, amount_cents=1)
    first = await wf.settle(pid, succeeded=True, amount_cents=2500)
    assert first == {"payment_id": pid, "payment": "succeeded", "order": "paid", "duplicate": False}
    again = await wf.settle(pid, succeeded=True, amount_cents=2500)
    assert again["duplicate"] and again["order"] == "paid"
    assert stock.of(sku) == {"available": 8, "reserved": 0, "sold": 2}
    assert shop.scalar("SELECT callbacks FROM payments WHERE id = :p", p=pid) == 2
    events = shop.rows("SELECT to_status FROM order_events WHERE order_id = :o ORDER BY id", o=oid)
    assert [e[0] for e in events] == ["pending_payment", "paid"]


async def test_a_declined_payment_leaves_the_order_payable(shop: Shop) -> None:
    uid, sku, stock = setup(shop)
    wf = make(shop, stock)
    oid = int((await wf.place(command(shop, uid, {sku: 1}))).order["id"])
    pid = await pending_payment(shop, oid, "fail")
    result = await wf.settle(pid, succeeded=False, amount_cents=1250)
    assert result["payment"] == "failed" and result["order"] == "pending_payment"
    assert stock.of(sku)["reserved"] == 1


async def test_pay_against_timeout_exactly_one_wins_and_stock_agrees(shop: Shop) -> None:
    outcomes = {"paid": 0, "cancelled": 0}
    for _ in range(25):
        uid, sku, stock = setup(shop, units=1)
        wf = make(shop, stock, timeout_s=0.001)
        oid = int((await wf.place(command(shop, uid, {sku: 1}))).order["id"])
        pid = await pending_payment(shop, oid)
        await asyncio.sleep(0.005)
        settle, swept = await asyncio.gather(
            wf.settle(pid, succeeded=True, amount_cents=1250), wf.sweep()
        )
        status = shop.scalar("SELECT status FROM orders WHERE id = :o", o=oid)
        outcomes[status] += 1
        pstatus = shop.scalar("SELECT status FROM payments WHERE id = :p", p=pid)
        if status == "paid":
            assert swept == 0 and pstatus == "succeeded"
            assert stock.of(sku) == {"available": 0, "reserved": 0, "sold": 1}
        else:
            assert status == "cancelled" and swept == 1 and pstatus == "refunded"
            assert stock.of(sku) == {"available": 1, "reserved": 0, "sold": 0}
        n = shop.scalar("SELECT COUNT(*) FROM order_events WHERE order_id = :o", o=oid)
        assert n == 2  # placed + exactly one winner
    assert sum(outcomes.values()) == 25


async def test_the_sweep_cancels_only_overdue_orders_of_its_shard(shop: Shop) -> None:
    uid, sku, stock = setup(shop)
    due = make(shop, stock, timeout_s=0.001)
    later = make(shop, stock, timeout_s=3600)
    overdue = int((await due.place(command(shop, uid, {sku: 1}))).order["id"])
    keep = int((await later.place(command(shop, uid, {sku: 1}))).order["id"])
    await asyncio.sleep(0.01)
    assert await later.sweep() >= 1
    assert shop.scalar("SELECT status FROM orders WHERE id = :o", o=overdue) == "cancelled"
    assert shop.scalar("SELECT cancel_reason FROM orders WHERE id = :o", o=overdue) == "timeout"
    assert shop.scalar("SELECT status FROM orders WHERE id = :o", o=keep) == "pending_payment"
    assert stock.of(sku) == {"available": 9, "reserved": 1, "sold": 0}


async def test_moves_are_compare_and_set_and_refund_restocks_once(shop: Shop) -> None:
    uid, sku, stock = setup(shop)
    wf = make(shop, stock)
    oid = int((await wf.place(command(shop, uid, {sku: 3}))).order["id"])
    with pytest.raises(InvalidTransition) as early:
        await wf.move(oid, "shipped", reason="x", actor="admin:1", role="admin")
    assert early.value.details["status"] == "pending_payment"
    pid = await pending_payment(shop, oid)
    await wf.settle(pid, succeeded=True, amount_cents=3750)
    ship = wf.move(oid, "shipped", reason="shipped", actor="admin:1", role="admin")
    refund = wf.move(oid, "refunded", reason="refund", actor="admin:1", role="admin")
    results = await asyncio.gather(ship, refund, return_exceptions=True)
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1, results
    assert isinstance([r for r in results if not isinstance(r, dict)][0], InvalidTransition)
    if winners[0]["status"] == "refunded":
        assert stock.of(sku) == {"available": 10, "reserved": 0, "sold": 3}
        # the money goes back through the provider: a pending refund of all, reserved
        assert shop.rows(
            "SELECT `key`, amount_cents, status FROM refunds WHERE order_id = :o", o=oid
        ) == [(f"refund:{oid}", 3750, "pending")]
        assert shop.scalar("SELECT refunded_cents FROM payments WHERE id = :p", p=pid) == 3750
    with pytest.raises(NotFound):
        await wf.cancel(oid, reason="user", actor="user:9", role="user", user_id=uid + 10_000)


async def test_a_user_cannot_cancel_a_shipped_order(shop: Shop) -> None:
    uid, sku, stock = setup(shop)
    wf = make(shop, stock)
    oid = int((await wf.place(command(shop, uid, {sku: 1}))).order["id"])
    await wf.settle(await pending_payment(shop, oid), succeeded=True, amount_cents=1250)
    await wf.move(oid, "shipped", reason="shipped", actor="admin:1", role="admin")
    with pytest.raises(InvalidTransition) as err:
        await wf.cancel(oid, reason="user", actor=f"user:{uid}", role="user", user_id=uid)
    assert err.value.details["status"] == "shipped"


async def test_a_stale_replica_check_still_returns_the_stored_order(shop: Shop) -> None:
    import dataclasses

    uid, sku, stock = setup(shop, units=3)
    wf = make(shop, stock)
    cmd = command(shop, uid, {sku: 3}, key="checked-late")
    first = await wf.place(cmd)
    # another replica checked the key before the first order was stored
    stale = dataclasses.replace(cmd, checked=True)
    again = await wf.place(stale)  # stock is gone: the reservation fails, the key answers
    assert again.order["id"] == first.order["id"] and not again.created
    stock.ledger.stock[sku].total += 5
    stock.ledger.stock[sku].available += 5
    third = await wf.place(stale)  # stock is there: the unique key answers, stock returns
    assert third.order["id"] == first.order["id"] and not third.created
    assert stock.of(sku) == {"available": 5, "reserved": 3, "sold": 0}
    assert shop.scalar("SELECT COUNT(*) FROM orders WHERE user_id = :u", u=uid) == 1


async def test_an_order_is_visible_to_its_owner_and_admins_only(shop: Shop) -> None:
    uid, sku, stock = setup(shop)
    other = shop.user()
    placed = await make(shop, stock).place(command(shop, uid, {sku: 1}))
    oid = int(placed.order["id"])
    with session_factory(shop.engine)() as session:
        assert int(repo.visible_order(session, oid, uid).id) == oid
        assert int(repo.visible_order(session, oid, None).user_id) == uid  # an admin
        for who in (other, None):  # another user's order reads like a missing one
            with pytest.raises(NotFound):
                repo.visible_order(session, oid if who is not None else oid + 10**12, who)
