"""The flash-sale desk and the ledger's transfer/give_back, with no Ray and no database."""

from __future__ import annotations

import itertools
import random

from raymall.domain.flash_desk import FlashDesk, Purchase
from raymall.domain.ledger import Ledger
from raymall.domain.sale import Sale
from raymall.domain.shard_ops import BuyResult, FlashBuy, FlashEnd, FlashReturn
from raymall.domain.stock import Stock
from tests.flash_helpers import ManualClock

SKU = 7
HOLD = "flash:1@0"
NOW = 1_000_000
LEASE_MS = 1000


def make(
    quantity: int = 5, limit: int = 1, total: int = 20, clock: ManualClock | None = None
) -> tuple[Ledger, FlashDesk]:
    clock = clock or ManualClock()
    ledger = Ledger()
    ledger.load_stock(SKU, Stock(total, total, 0, 0))
    ledger.begin()
    assert ledger.reserve(HOLD, {SKU: quantity}, NOW + 60_000) == "ok"
    ledger.commit()
    ids = itertools.count(100)
    desk = FlashDesk(
        ledger,
        0,
        next_id=lambda: next(ids),
        order_shard_of=lambda u: u % 2,
        order_timeout_ms=5,
        lease_ms=LEASE_MS,
        clock=clock,
    )
    info = Sale(1, SKU, 99, quantity, limit, NOW - 1, NOW + 60_000, False, 0, 3, "t", {})
    desk.load(info, [])
    return ledger, desk


def give_back(desk: FlashDesk, order: int) -> str:
    desk.ledger.begin()
    desk.begin(NOW)
    code = desk.apply(FlashReturn(f"order:{order}@0", HOLD, 1, order))
    desk.ledger.commit()
    desk.commit()
    return str(code)


def buy(desk: FlashDesk, user: int, key: str | None = "k", qty: int = 1) -> BuyResult:
    desk.ledger.begin()
    desk.begin(NOW)
    result = desk.apply(FlashBuy(HOLD, 1, user, key, qty))
    desk.ledger.commit()
    desk.commit()
    assert type(result) is BuyResult
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
    clock = ManualClock()
    ledger, desk = make(quantity=2, clock=clock)
    order = buy(desk, 1)[1]
    assert buy(desk, 2)[0] == "ok"
    assert buy(desk, 3)[0] == "sold_out"
    assert give_back(desk, order) == "ok"
    assert ledger.records[HOLD].items[SKU] == 1
    assert desk.books[1].live[1] == 0 and desk.books[1].info.sold == 1
    clock.t += LEASE_MS / 1000 + 0.001  # the sold-out leases granted above have lapsed
    assert buy(desk, 1, "again")[0] == "ok"  # the slot is free again
    # end the sale: the rest of the hold and later returns go to normal stock
    second = desk.books[1].by_key[(2, "k")].order_id
    ledger.begin()
    desk.begin(NOW)
    assert desk.apply(FlashEnd(HOLD, 1)) == "ok"
    assert desk.apply(FlashReturn(f"order:{second}@0", HOLD, 1, second)) == "ok"
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
    assert desk.apply(FlashReturn(f"order:{order}@0", HOLD, 1, order)) == "confirmed"
    ledger.commit()
    desk.commit()
    assert ledger.stock[SKU].sold == 1 and desk.books[1].live[1] == 1


def test_rollback_restores_ledger_and_desk() -> None:
    ledger, desk = make(quantity=3)
    ledger.begin()
    desk.begin(NOW)
    for user in (1, 2):
        assert desk.apply(FlashBuy(HOLD, 1, user, "k", 1))[0] == "ok"
    assert len(desk.changes().purchases) == 2
    ledger.rollback()
    desk.rollback()
    assert ledger.records[HOLD].items[SKU] == 3
    assert desk.books[1].by_key == {} and desk.books[1].info.sold == 0
    assert buy(desk, 1)[0] == "ok"


def test_random_histories_never_oversell_exceed_limits_or_sell_under_a_lease() -> None:
    rng = random.Random(7)
    for _ in range(30):
        quantity, limit = rng.randint(1, 20), rng.randint(1, 3)
        clock = ManualClock()
        ledger, desk = make(quantity=quantity, limit=limit, total=50, clock=clock)
        orders: list[int] = []
        leased_until = 0.0  # the end of the last lease answered (a replica may hold it)
        for _ in range(200):
            clock.t += rng.random() * 0.3
            ledger.begin()
            desk.begin(NOW)
            if orders and rng.random() < 0.2:
                o = orders.pop(rng.randrange(len(orders)))
                desk.apply(FlashReturn(f"order:{o}@0", HOLD, 1, o))
                r, bought = None, False
            else:
                user = rng.randint(1, 10)
                r = desk.apply(FlashBuy(HOLD, 1, user, f"k{rng.randint(1, 6)}", 1))
                bought = r[0] == "ok" and not r[3]
                if bought:
                    orders.append(r[1])
            if rng.random() < 0.1:
                ledger.rollback()
                desk.rollback()
                orders = [o for o in orders if o in desk.books[1].by_order]
            else:
                ledger.commit()
                desk.commit()
                # the safety of leases: nothing new is sold while one granted runs
                assert not (bought and clock() < leased_until), (clock(), leased_until)
                if r is not None and r[5]:
                    leased_until = max(leased_until, clock() + r[5] / 1000)
            book = desk.books[1]
            assert all(v <= limit for v in book.live.values())
            assert book.info.sold == sum(book.live.values())
            assert ledger.records[HOLD].items[SKU] == quantity - book.info.sold
            assert ledger.violations() == []


def test_an_answer_that_leaves_nothing_carries_a_lease_and_the_record_count() -> None:
    _, desk = make(quantity=2, limit=2)
    assert buy(desk, 1, "a")[4:] == (1, 0, 1)  # one left: no lease
    last = buy(desk, 2, "b")
    assert last[0] == "ok" and last[4:] == (0, LEASE_MS, 2)  # the last unit
    assert buy(desk, 3, "c")[4:] == (0, LEASE_MS, 2)  # sold out
    assert buy(desk, 1, "a")[:4] == ("ok", desk.books[1].by_key[(1, "a")].order_id, 5 + NOW, True)
    assert buy(desk, 1, "a")[5:] == (LEASE_MS, 2)  # a replay too, while nothing is left
    desk.books[1].info.ends_ms = NOW
    assert buy(desk, 4, "d") == ("ended", None, None, False, 0, 0, 2)  # ended: no lease


def test_units_given_back_under_a_lease_sell_only_once_it_has_lapsed() -> None:
    clock = ManualClock()
    _, desk = make(quantity=1, clock=clock)
    order = buy(desk, 1, "a")[1]
    clock.t += 0.5
    assert buy(desk, 2, "b")[5] == LEASE_MS  # granted at t + 0.5: it runs to t + 1.5
    assert give_back(desk, order) == "ok"
    clock.t += 0.9  # the first lease has lapsed, the second runs
    held = buy(desk, 3, "c")
    assert held == ("sold_out", None, None, False, 1, 0, 1)  # a unit is back, held: no lease
    clock.t += 0.11
    bought = buy(desk, 3, "c")
    assert bought[0] == "ok" and bought[4:] == (0, LEASE_MS, 2)
    assert desk.books[1].info.sold == 1 and desk.ledger.violations() == []


def test_units_given_back_with_no_lease_running_sell_at_once() -> None:
    clock = ManualClock()
    _, desk = make(quantity=2, clock=clock)
    clock.t += LEASE_MS / 1000 + 0.001  # the load's own guard has lapsed
    order = buy(desk, 1, "a")[1]  # one left: no lease granted
    assert give_back(desk, order) == "ok"
    assert buy(desk, 2, "b")[0] == "ok"


def test_a_reloaded_sale_waits_out_leases_it_cannot_know_if_units_came_back() -> None:
    clock = ManualClock()
    ledger, desk = make(quantity=2, clock=clock)
    info = desk.books[1].info
    # as after a restart: the sale has a purchase given back (its unit is in the hold)
    desk.books.clear()
    desk.load(info, [Purchase(55, 1, "k:x", 1, NOW + 5, NOW, state="returned")])
    assert buy(desk, 2, "k:y")[:2] == ("sold_out", None)
    clock.t += LEASE_MS / 1000 + 0.001
    assert buy(desk, 2, "k:y")[0] == "ok"
    # with nothing ever given back, a reloaded sale sells at once
    desk.books.clear()
    desk.load(info, [])
    assert buy(desk, 3, "k:z")[0] == "ok"
    assert ledger.violations() == []


def test_loaded_purchases_count_toward_the_limit() -> None:
    ledger, desk = make()
    desk.books.clear()
    info = Sale(1, SKU, 99, 5, 1, NOW - 1, NOW + 60_000, False, 1, 3, "t", {})
    desk.load(info, [Purchase(55, 1, "k:x", 1, NOW + 5, NOW)])
    assert buy(desk, 1, "k:x")[:2] == ("ok", 55)
    assert buy(desk, 1, "k:y")[0] == "limit_reached"


def test_an_event_whose_quantity_is_not_set_aside_yet_is_not_called_ended() -> None:
    # The admin's create writes the event's row, then reserves its quantity in the shard: a
    # purchase in between finds the event but no hold. It is not ended (a replica would
    # then refuse the running sale as ended) and grants no sold-out lease.
    ledger = Ledger()
    ledger.load_stock(SKU, Stock(20, 20, 0, 0))
    ids = itertools.count(100)
    desk = FlashDesk(
        ledger,
        0,
        next_id=lambda: next(ids),
        order_shard_of=lambda u: 0,
        order_timeout_ms=5,
        lease_ms=LEASE_MS,
        clock=ManualClock(),
    )
    info = Sale(1, SKU, 99, 5, 1, NOW - 1, NOW + 60_000, False, 0, 3, "t", {})
    desk.load(info, [])
    early = buy(desk, 1, "a")
    assert early[0] == "unknown_sale" and early[5] == 0  # no lease
    ledger.begin()
    assert ledger.reserve(HOLD, {SKU: 5}, NOW + 60_000) == "ok"
    ledger.commit()
    assert buy(desk, 1, "a")[0] == "ok"
