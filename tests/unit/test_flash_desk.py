"""The flash-sale desk and the ledger's transfer/give_back, with no Ray and no database."""

from __future__ import annotations

import itertools
import random

from raymall.domain.ledger import Ledger, Stock
from raymall.flash.desk import FlashDesk, Purchase, SaleInfo

SKU = 7
HOLD = "flash:1@0"
NOW = 1_000_000


def make(quantity: int = 5, limit: int = 1, total: int = 20) -> tuple[Ledger, FlashDesk]:
    ledger = Ledger()
    ledger.load_stock(SKU, Stock(total, total, 0, 0))
    ledger.begin()
    assert ledger.reserve(HOLD, {SKU: quantity}, NOW + 60_000) == "ok"
    ledger.commit()
    ids = itertools.count(100)
    desk = FlashDesk(
        ledger, 0, next_id=lambda: next(ids), order_shard_of=lambda u: u % 2, order_timeout_ms=5
    )
    info = SaleInfo(1, SKU, 99, quantity, limit, NOW - 1, NOW + 60_000, False, 0, 3, "t", {})
    desk.load(info, [])
    return ledger, desk


def buy(desk: FlashDesk, user: int, key: str | None = "k", qty: int = 1) -> tuple:
    desk.ledger.begin()
    desk.begin(NOW)
    result = desk.apply(("flash_buy", HOLD, 1, user, key, qty))
    desk.ledger.commit()
    desk.commit()
    return result


def test_purchases_sell_out_exactly_and_conserve_stock() -> None:
    ledger, desk = make(quantity=5)
    codes = [buy(desk, user)[0] for user in range(1, 9)]
    assert codes == ["ok"] * 5 + ["sold_out"] * 3
    assert ledger.records[HOLD].items[SKU] == 0
    s = ledger.stock[SKU]
    assert (s.total, s.available, s.reserved, s.sold) == (20, 15, 5, 0)
    assert ledger.violations() == []
    assert desk.books[1].info.sold == 5


def test_a_replay_answers_the_first_order_and_the_limit_is_exact() -> None:
    _, desk = make(quantity=5, limit=2)
    first = buy(desk, 1, "a")
    assert first[0] == "ok" and first[3] is False
    again = buy(desk, 1, "a")
    assert again[:3] == first[:3] and again[3] is True
    assert buy(desk, 1, "b")[0] == "ok"
    assert buy(desk, 1, "c")[0] == "limit_reached"
    assert buy(desk, 1, "d", qty=1)[0] == "limit_reached"
    assert buy(desk, 1, "a", qty=2)[0] == "key_reused"
    assert desk.books[1].live[1] == 2


def test_keyless_requests_are_new_attempts() -> None:
    _, desk = make(quantity=5, limit=2)
    assert buy(desk, 1, None)[0] == "ok"
    assert buy(desk, 1, None)[0] == "ok"
    assert buy(desk, 1, None)[0] == "limit_reached"


def test_not_started_and_ended_are_refused() -> None:
    _, desk = make()
    desk.books[1].info.starts_ms = NOW + 10
    assert buy(desk, 1)[0] == "not_started"
    desk.books[1].info.starts_ms = NOW - 10
    desk.books[1].info.ends_ms = NOW
    assert buy(desk, 1)[0] == "ended"


def test_give_back_returns_to_the_hold_while_running_then_to_stock() -> None:
    ledger, desk = make(quantity=2)
    order = buy(desk, 1)[1]
    assert buy(desk, 2)[0] == "ok"
    assert buy(desk, 3)[0] == "sold_out"
    ledger.begin()
    desk.begin(NOW)
    assert desk.apply(("flash_return", f"order:{order}@0", HOLD, 1, order)) == "ok"
    ledger.commit()
    desk.commit()
    assert ledger.records[HOLD].items[SKU] == 1
    assert desk.books[1].live[1] == 0 and desk.books[1].info.sold == 1
    assert buy(desk, 1, "again")[0] == "ok"  # the slot is free again
    # end the sale: the rest of the hold and later returns go to normal stock
    second = desk.books[1].by_key[(2, "k")].order_id
    ledger.begin()
    desk.begin(NOW)
    assert desk.apply(("flash_end", HOLD, 1)) == "ok"
    assert desk.apply(("flash_return", f"order:{second}@0", HOLD, 1, second)) == "ok"
    ledger.commit()
    desk.commit()
    s = ledger.stock[SKU]
    assert (s.available, s.reserved) == (19, 1)
    assert ledger.violations() == []
    assert buy(desk, 4)[0] == "ended"


def test_a_paid_order_is_not_given_back() -> None:
    ledger, desk = make()
    order = buy(desk, 1)[1]
    ledger.begin()
    assert ledger.confirm(f"order:{order}@0") == "ok"
    ledger.commit()
    ledger.begin()
    desk.begin(NOW)
    assert desk.apply(("flash_return", f"order:{order}@0", HOLD, 1, order)) == "confirmed"
    ledger.commit()
    desk.commit()
    assert ledger.stock[SKU].sold == 1 and desk.books[1].live[1] == 1


def test_rollback_restores_ledger_and_desk() -> None:
    ledger, desk = make(quantity=3)
    ledger.begin()
    desk.begin(NOW)
    for user in (1, 2):
        assert desk.apply(("flash_buy", HOLD, 1, user, "k", 1))[0] == "ok"
    assert len(desk.changes().purchases) == 2
    ledger.rollback()
    desk.rollback()
    assert ledger.records[HOLD].items[SKU] == 3
    assert desk.books[1].by_key == {} and desk.books[1].info.sold == 0
    assert buy(desk, 1)[0] == "ok"


def test_random_histories_never_oversell_or_exceed_limits() -> None:
    rng = random.Random(7)
    for _ in range(30):
        quantity, limit = rng.randint(1, 20), rng.randint(1, 3)
        ledger, desk = make(quantity=quantity, limit=limit, total=50)
        orders: list[int] = []
        for _ in range(200):
            ledger.begin()
            desk.begin(NOW)
            if orders and rng.random() < 0.2:
                o = orders.pop(rng.randrange(len(orders)))
                desk.apply(("flash_return", f"order:{o}@0", HOLD, 1, o))
            else:
                user = rng.randint(1, 10)
                r = desk.apply(("flash_buy", HOLD, 1, user, f"k{rng.randint(1, 6)}", 1))
                if r[0] == "ok" and not r[3]:
                    orders.append(r[1])
            if rng.random() < 0.1:
                ledger.rollback()
                desk.rollback()
                orders = [o for o in orders if o in desk.books[1].by_order]
            else:
                ledger.commit()
                desk.commit()
            book = desk.books[1]
            assert all(v <= limit for v in book.live.values())
            assert book.info.sold == sum(book.live.values())
            assert ledger.records[HOLD].items[SKU] == quantity - book.info.sold
            assert ledger.violations() == []


def test_loaded_purchases_count_toward_the_limit() -> None:
    ledger, desk = make()
    desk.books.clear()
    info = SaleInfo(1, SKU, 99, 5, 1, NOW - 1, NOW + 60_000, False, 1, 3, "t", {})
    desk.load(info, [Purchase(55, 1, "k:x", 1, NOW + 5, NOW)])
    assert buy(desk, 1, "k:x")[:2] == ("ok", 55)
    assert buy(desk, 1, "k:y")[0] == "limit_reached"
