"""Examples of the stock ledger's rules (no Ray, no database)."""

from __future__ import annotations

import pytest

from raymall.domain.ledger import Ledger
from raymall.domain.shard_ops import Adjust, Malformed, Release, Reserve
from raymall.domain.stock import (
    R_CONFIRMED,
    R_INVALID,
    R_KEY_REUSED,
    R_NOT_FOUND,
    R_OK,
    R_OUT_OF_STOCK,
    R_REJECTED,
    R_RELEASED,
    R_SKIPPED,
    R_UNKNOWN_SKU,
    Stock,
)


def ledger_with(**available: int) -> Ledger:
    ledger = Ledger()
    for name, qty in available.items():
        sku = int(name.removeprefix("s"))
        ledger.load_stock(sku, Stock(total=qty, available=qty, threshold=2))
    return ledger


def counters(ledger: Ledger, sku: int) -> tuple[int, int, int, int]:
    s = ledger.stock[sku]
    return s.total, s.available, s.reserved, s.sold


def test_reserve_is_all_or_nothing_across_skus() -> None:
    ledger = ledger_with(s1=5, s2=1)
    assert ledger.reserve("k", {1: 2, 2: 2}) == R_OUT_OF_STOCK
    assert counters(ledger, 1) == (5, 5, 0, 0)
    assert counters(ledger, 2) == (1, 1, 0, 0)
    assert ledger.reserve("k2", {1: 2, 2: 1}) == R_OK
    assert counters(ledger, 1) == (5, 3, 2, 0)
    assert counters(ledger, 2) == (1, 0, 1, 0)


def test_a_replayed_rejection_answers_out_of_stock_even_after_a_restock() -> None:
    ledger = ledger_with(s1=1)
    assert ledger.reserve("k", {1: 2}) == R_OUT_OF_STOCK
    assert ledger.adjust("restock", 1, 10) == R_OK
    assert ledger.reserve("k", {1: 2}) == R_OUT_OF_STOCK
    assert counters(ledger, 1) == (11, 11, 0, 0)


def test_a_replayed_reserve_takes_nothing_twice() -> None:
    ledger = ledger_with(s1=5)
    assert ledger.reserve("k", {1: 2}) == R_OK
    assert ledger.reserve("k", {1: 2}) == R_OK
    assert counters(ledger, 1) == (5, 3, 2, 0)


def test_a_key_reused_for_other_items_is_refused() -> None:
    ledger = ledger_with(s1=5)
    assert ledger.reserve("k", {1: 2}) == R_OK
    assert ledger.reserve("k", {1: 3}) == R_KEY_REUSED
    assert ledger.adjust("k", 1, 3) == R_KEY_REUSED
    assert counters(ledger, 1) == (5, 3, 2, 0)


def test_release_returns_stock_once_and_a_replayed_reserve_then_says_released() -> None:
    ledger = ledger_with(s1=5)
    ledger.reserve("k", {1: 2})
    assert ledger.release("k") == R_OK
    assert ledger.release("k") == R_OK
    assert counters(ledger, 1) == (5, 5, 0, 0)
    assert ledger.reserve("k", {1: 2}) == R_RELEASED
    assert ledger.confirm("k") == R_RELEASED
    assert counters(ledger, 1) == (5, 5, 0, 0)


def test_releasing_an_unknown_key_blocks_a_late_reserve_under_it() -> None:
    ledger = ledger_with(s1=5)
    assert ledger.release("late") == R_OK
    assert ledger.reserve("late", {1: 1}) == R_RELEASED
    assert counters(ledger, 1) == (5, 5, 0, 0)


def test_confirm_moves_reserved_to_sold_and_then_release_is_refused() -> None:
    ledger = ledger_with(s1=5)
    ledger.reserve("k", {1: 3})
    assert ledger.confirm("k") == R_OK
    assert ledger.confirm("k") == R_OK
    assert counters(ledger, 1) == (5, 2, 0, 3)
    assert ledger.release("k") == R_CONFIRMED
    assert counters(ledger, 1) == (5, 2, 0, 3)


def test_confirm_of_an_unknown_or_refused_reservation_changes_nothing() -> None:
    ledger = ledger_with(s1=1)
    assert ledger.confirm("nope") == R_NOT_FOUND
    assert ledger.reserve("big", {1: 5}) == R_OUT_OF_STOCK
    assert ledger.confirm("big") == R_REJECTED
    assert ledger.release("big") == R_OK
    assert counters(ledger, 1) == (1, 1, 0, 0)


def test_adjust_never_takes_available_below_zero_and_replays_its_first_answer() -> None:
    ledger = ledger_with(s1=5)
    ledger.reserve("k", {1: 4})
    assert ledger.adjust("w1", 1, -2) == R_OUT_OF_STOCK
    assert ledger.adjust("w2", 1, -1) == R_OK
    assert counters(ledger, 1) == (4, 0, 4, 0)
    assert ledger.adjust("w1", 1, -2) == R_OUT_OF_STOCK
    assert ledger.adjust("w2", 1, -1) == R_OK
    assert ledger.adjust("w2", 1, -2) == R_KEY_REUSED
    assert counters(ledger, 1) == (4, 0, 4, 0)
    assert ledger.adjust("add", 7, 1) == R_UNKNOWN_SKU
    assert ledger.reserve("ghost", {7: 1}) == R_UNKNOWN_SKU


@pytest.mark.parametrize(
    "op",
    [
        Reserve("k", {}, None),
        Reserve("k", {1: 0}, None),
        Reserve("k", {1: -1}, None),
        Reserve("k", {"1": 1}, None),  # type: ignore[dict-item]
        Reserve("", {1: 1}, None),
        Reserve("k", None),  # type: ignore[arg-type]
        Adjust("k", 1, 0, "r", None),
        Adjust("k", 1, 1.5, "r", None),  # type: ignore[arg-type]
        Release(["unhashable"]),  # type: ignore[arg-type]
        Malformed(("nonsense", "k")),
        ("reserve", "k", {1: 1}, None),  # a plain tuple is no operation
        (),
    ],
)
def test_malformed_operations_answer_invalid_and_change_nothing(op: tuple) -> None:
    ledger = ledger_with(s1=5)
    assert ledger.apply(op) == R_INVALID
    assert counters(ledger, 1) == (5, 5, 0, 0)
    assert ledger.records == {}


def test_rollback_restores_exactly_the_state_before_the_batch() -> None:
    ledger = ledger_with(s1=5, s2=5)
    ledger.reserve("open", {1: 1}, expires_ms=100)
    before = {s: ledger.stock[s].copy() for s in (1, 2)}
    ledger.begin()
    ledger.reserve("new", {1: 2, 2: 2})
    ledger.confirm("open")
    ledger.adjust("a", 2, 7)
    ledger.release("tomb")
    ledger.rollback()
    assert {s: ledger.stock[s] for s in (1, 2)} == before
    assert set(ledger.records) == {"open"}
    assert ledger.records["open"].state == "reserved"
    assert ledger.due(100) == ["open"]  # its deadline is still watched


def test_changes_list_what_a_batch_touched_and_low_stock_crossings() -> None:
    ledger = ledger_with(s1=5, s2=5)
    ledger.reserve("old", {2: 1})
    ledger.records["old"].stored = True
    ledger.begin()
    ledger.reserve("k1", {1: 3})  # 5 -> 2: crosses threshold 2
    ledger.reserve("k2", {1: 9})  # refused, still recorded
    ledger.release("old")
    ledger.adjust("a", 2, 1)
    ch = ledger.changes()
    assert sorted(k for k, _ in ch.created) == ["a", "k1", "k2"]
    assert [(k, r.state, items) for k, r, items in ch.updated] == [("old", "released", False)]
    assert sorted(s for s, _ in ch.stock) == [1, 2]
    assert [(e.sku_id, e.available) for e in ch.low_stock] == [(1, 2)]
    assert [(a.key, a.delta) for a in ch.adjustments] == [("a", 1)]
    assert all(s.version == 1 for _, s in ch.stock)
    ledger.commit()
    assert all(r.stored for r in ledger.records.values())


def test_a_batch_of_replays_has_no_changes() -> None:
    ledger = ledger_with(s1=5)
    ledger.begin()
    ledger.reserve("k", {1: 1})
    ledger.commit()
    ledger.begin()
    assert ledger.reserve("k", {1: 1}) == R_OK
    assert not ledger.changes()
    ledger.commit()


def test_expire_releases_only_overdue_open_reservations() -> None:
    ledger = ledger_with(s1=5)
    ledger.reserve("soon", {1: 1}, expires_ms=100)
    ledger.reserve("later", {1: 1}, expires_ms=200)
    ledger.reserve("never", {1: 1})
    ledger.reserve("paid", {1: 1}, expires_ms=50)
    ledger.confirm("paid")
    assert ledger.due(150) == ["soon"]
    assert ledger.expire("later", 150) == R_SKIPPED
    assert ledger.expire("soon", 150) == R_OK
    assert ledger.expire("soon", 150) == R_SKIPPED
    assert counters(ledger, 1) == (5, 2, 2, 1)
    assert ledger.due(10**12) == ["later"]


def test_evict_forgets_old_finished_records_but_never_open_ones() -> None:
    ledger = ledger_with(s1=100)
    for i in range(10):
        ledger.begin()
        ledger.reserve(f"k{i}", {1: 1})
        if i % 2:
            ledger.release(f"k{i}")
        ledger.commit()
    assert ledger.evict(keep=2) == 3
    assert sorted(ledger.records) == ["k0", "k2", "k4", "k6", "k7", "k8", "k9"]
    assert ledger.violations(full_history=False) == []
