"""Paying an order on MariaDB: the replica's payment write (``payments.start_payment``) and
callback owner read, the shard's settlement with the owner the replica read, each way a
callback can end (paid, duplicate, declined, order already cancelled, stock gone), and the
quote reads that price an order (``QuoteReader``)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from raymall.db import session_factory, transaction
from raymall.domain.shard_ops import Release
from raymall.errors import InvalidTransition, NotFound, ValidationFailed
from raymall.ids import now_ms
from raymall.orders import payments as pay
from raymall.orders.quotes import QuoteReader
from raymall.settings import Settings
from tests.conftest import needs_servers
from tests.integration.test_orders_workflow import LedgerStock, command, make, setup
from tests.order_helpers import Shop

pytestmark = [pytest.mark.integration, needs_servers]


@pytest.fixture(scope="module")
def shop(mysql_url: str) -> Iterator[Shop]:
    settings = Settings(database_url=mysql_url, redis_url="redis://unused", env="test")
    s = Shop(settings, create_engine(mysql_url, isolation_level="READ COMMITTED"))
    yield s
    s.dispose()


def start(shop: Shop, user_id: int, order_id: int, outcome: str = "succeed") -> dict:
    with transaction(session_factory(shop.engine)) as session:
        return pay.start_payment(session, user_id, order_id, outcome, now_ms())


async def placed(shop: Shop, units: int = 10) -> tuple[int, int, int, LedgerStock, object]:
    """(user, sku, order id, stock, workflow) of one unpaid order of 2 units at 12.50."""
    uid, sku, stock = setup(shop, units=units)
    wf = make(shop, stock)
    order = (await wf.place(command(shop, uid, {sku: 2}))).order
    return uid, sku, int(order["id"]), stock, wf


async def test_paying_reuses_the_pending_payment_of_the_same_outcome_only(shop: Shop) -> None:
    uid, _, oid, _, _ = await placed(shop)
    first = start(shop, uid, oid)
    assert first["order_id"] == str(oid) and first["amount_cents"] == 2500
    assert first["status"] == "pending" and first["outcome"] == "succeed"
    assert first["callbacks"] == 0 and first["refunded_cents"] == 0
    assert start(shop, uid, oid) == first  # paying again re-sends the same payment
    declined = start(shop, uid, oid, "fail")
    assert declined["id"] != first["id"] and declined["outcome"] == "fail"
    assert start(shop, uid, oid, "fail")["id"] == declined["id"]
    n = shop.scalar("SELECT COUNT(*) FROM payments WHERE order_id = :o", o=oid)
    assert n == 2


async def test_only_the_owner_pays_and_only_an_unpaid_order(shop: Shop) -> None:
    uid, _, oid, _, wf = await placed(shop)
    other = shop.user()
    with pytest.raises(NotFound):
        start(shop, other, oid)
    with pytest.raises(NotFound):
        start(shop, uid, oid + 1)
    payment = start(shop, uid, oid)
    await wf.settle(payment["id"], succeeded=True, amount_cents=2500, order_id=oid)
    with pytest.raises(InvalidTransition) as refused:
        start(shop, uid, oid)
    assert refused.value.details == {"status": "paid", "to": "paid"}


async def test_the_owner_read_and_the_hint_settle_the_payment_once(shop: Shop) -> None:
    uid, sku, oid, stock, wf = await placed(shop)
    payment = start(shop, uid, oid)["id"]
    with session_factory(shop.engine)() as session:
        assert pay.payment_owner(session, payment) == (oid, 0, uid)
        assert pay.payment_owner(session, "pay_missing") is None
    with pytest.raises(NotFound):  # a hint naming another order changes nothing
        await wf.settle(payment, succeeded=True, amount_cents=2500, order_id=oid + 1)
    assert shop.scalar("SELECT callbacks FROM payments WHERE id = :p", p=payment) == 0
    first = await wf.settle(payment, succeeded=True, amount_cents=2500, order_id=oid)
    assert first == {
        "payment_id": payment,
        "payment": "succeeded",
        "order": "paid",
        "duplicate": False,
    }
    again = await wf.settle(payment, succeeded=True, amount_cents=2500, order_id=oid)
    assert again == {
        "payment_id": payment,
        "payment": "succeeded",
        "order": "paid",
        "duplicate": True,
    }
    assert shop.scalar("SELECT callbacks FROM payments WHERE id = :p", p=payment) == 2
    assert stock.of(sku) == {"available": 8, "reserved": 0, "sold": 2}
    topics = shop.rows(
        "SELECT topic FROM outbox WHERE aggregate_id = :a ORDER BY created_ms", a=str(oid)
    )
    assert [t[0] for t in topics] == ["order.placed", "order.paid"]
    events = shop.rows(
        "SELECT from_status, to_status, reason, actor FROM order_events WHERE order_id = :o "
        "ORDER BY id",
        o=oid,
    )
    assert events[1] == ("pending_payment", "paid", "payment", f"payment:{payment}")


async def test_a_payment_for_a_cancelled_order_goes_back_and_then_is_a_duplicate(
    shop: Shop,
) -> None:
    uid, sku, oid, stock, wf = await placed(shop)
    payment = start(shop, uid, oid)["id"]
    await wf.cancel(oid, reason="user", actor=f"user:{uid}", role="user", user_id=uid)
    first = await wf.settle(payment, succeeded=True, amount_cents=2500, order_id=oid)
    assert first == {
        "payment_id": payment,
        "payment": "refunded",
        "order": "cancelled",
        "duplicate": False,
    }
    again = await wf.settle(payment, succeeded=True, amount_cents=2500)  # no hint: looked up
    assert again["duplicate"] and again["payment"] == "refunded"
    assert stock.of(sku) == {"available": 10, "reserved": 0, "sold": 0}
    assert shop.scalar("SELECT status FROM orders WHERE id = :o", o=oid) == "cancelled"


async def test_a_declined_callback_is_settled_failed_in_one_go(shop: Shop) -> None:
    uid, sku, oid, stock, wf = await placed(shop)
    payment = start(shop, uid, oid, "fail")["id"]
    result = await wf.settle(payment, succeeded=False, amount_cents=2500, order_id=oid)
    assert result == {
        "payment_id": payment,
        "payment": "failed",
        "order": "pending_payment",
        "duplicate": False,
    }
    row = shop.rows("SELECT status, callbacks FROM payments WHERE id = :p", p=payment)
    assert row == [("failed", 1)]
    assert stock.of(sku)["reserved"] == 2


async def test_a_payment_whose_stock_went_back_refunds_and_cancels(shop: Shop) -> None:
    uid, sku, oid, stock, wf = await placed(shop)
    payment = start(shop, uid, oid)["id"]
    stock.ledger.apply(Release(f"order:{oid}"))  # the reservation's deadline won
    result = await wf.settle(payment, succeeded=True, amount_cents=2500, order_id=oid)
    assert result == {
        "payment_id": payment,
        "payment": "refunded",
        "order": "cancelled",
        "duplicate": False,
    }
    assert shop.scalar("SELECT status FROM payments WHERE id = :p", p=payment) == "refunded"
    assert shop.scalar("SELECT cancel_reason FROM orders WHERE id = :o", o=oid) == (
        "reservation_expired"
    )
    assert stock.of(sku) == {"available": 10, "reserved": 0, "sold": 0}


async def test_concurrent_duplicate_callbacks_pay_once(shop: Shop) -> None:
    uid, sku, oid, stock, wf = await placed(shop)
    payment = start(shop, uid, oid)["id"]
    results = await asyncio.gather(
        *(wf.settle(payment, succeeded=True, amount_cents=2500, order_id=oid) for _ in range(5))
    )
    assert sum(not r["duplicate"] for r in results) == 1
    assert {r["order"] for r in results} == {"paid"}
    assert stock.of(sku) == {"available": 8, "reserved": 0, "sold": 2}
    n = shop.scalar(
        "SELECT COUNT(*) FROM order_events WHERE order_id = :o AND to_status = 'paid'", o=oid
    )
    assert n == 1


async def test_quote_reads_price_pick_the_address_and_see_the_key(shop: Shop) -> None:
    uid = shop.user()
    home = shop.address(uid)
    other = shop.address(uid, default=False)
    sku = shop.sku(price_cents=1999)
    hidden = shop.sku(price_cents=500, published=False)
    nobody = shop.user()  # no address
    reader = QuoteReader(shop.engine)
    wf = make(shop, LedgerStock())
    wf.stock.add(sku, 5)  # type: ignore[attr-defined]
    key = f"k-{secrets.token_hex(4)}"
    order = (await wf.place(command(shop, uid, {sku: 1}, key=key, rhash="h9"))).order

    read, named, missing, none, stranger = await asyncio.gather(
        reader.read(uid, None, [sku, hidden, 999_999_999], key),
        reader.read(uid, other, [sku]),
        reader.read(uid, 999_999_999, [sku]),
        reader.read(nobody, None, [sku]),
        reader.read(nobody, home, [sku]),
        return_exceptions=True,
    )
    assert not isinstance(read, BaseException)
    assert set(read.catalog) == {sku, hidden}
    info = read.catalog[sku]
    assert (info.price_cents, info.published, info.specs) == (1999, True, {"size": "1l"})
    assert info.title.startswith("Test kettle") and not read.catalog[hidden].published
    assert read.address["address_id"] == home and read.address["city"] == "London"
    assert read.existing == (int(order["id"]), "h9")
    assert not isinstance(named, BaseException) and named.address["address_id"] == other
    assert named.existing is None
    assert isinstance(missing, NotFound) and isinstance(stranger, NotFound)
    assert isinstance(none, ValidationFailed)
