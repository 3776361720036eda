"""Refund arithmetic (raymall.refunds.arithmetic): unit shares sum exactly to what a line
paid, returns in parts refund exactly the units' shares, a spread never gives a line more
than it has left, and a sequence of refunds never exceeds what was paid."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from raymall.domain.ledger import Ledger
from raymall.domain.stock import Stock
from raymall.refunds.arithmetic import spread, unit_shares, units_refund

cents = st.integers(min_value=0, max_value=10_000_000)
qty = st.integers(min_value=1, max_value=200)


def test_a_line_of_three_units_paying_1000_shares_334_333_333() -> None:
    assert unit_shares(1000, 3) == [334, 333, 333]
    assert units_refund(1000, 3, 0, 1) == 334
    assert units_refund(1000, 3, 1, 2) == 666
    assert units_refund(1000, 3, 2, 5) == 333  # never past the last unit


@given(paid=cents, quantity=qty)
def test_unit_shares_sum_exactly_to_what_the_line_paid(paid: int, quantity: int) -> None:
    shares = unit_shares(paid, quantity)
    assert sum(shares) == paid and len(shares) == quantity
    assert max(shares) - min(shares) <= 1


@given(paid=cents, quantity=qty, data=st.data())
def test_returns_in_parts_refund_exactly_the_line_and_never_more(
    paid: int, quantity: int, data: st.DataObject
) -> None:
    returned, refunded = 0, 0
    while returned < quantity:
        k = data.draw(st.integers(min_value=1, max_value=quantity - returned))
        part = units_refund(paid, quantity, returned, k)
        assert part == sum(unit_shares(paid, quantity)[returned : returned + k])
        returned += k
        refunded += part
        assert refunded <= paid
    assert refunded == paid


@given(
    amount=cents,
    left=st.dictionaries(st.integers(min_value=1, max_value=50), cents, max_size=8),
)
def test_a_spread_gives_no_line_more_than_it_has_left_and_adds_up(
    amount: int, left: dict[int, int]
) -> None:
    out = spread(amount, left)
    assert sum(out.values()) == amount
    for line, part in out.items():
        assert part > 0
        if line != 0:
            assert part <= left[line]
    if amount <= sum(left.values()):
        assert 0 not in out  # the lines take it all: nothing for shipping


@given(
    lines=st.lists(st.tuples(cents, qty), min_size=1, max_size=5),
    shipping=st.integers(min_value=0, max_value=5_000),
    asks=st.lists(st.integers(min_value=1, max_value=3_000_000), max_size=12),
)
def test_successive_refunds_never_exceed_what_was_paid_per_line_or_in_all(
    lines: list[tuple[int, int]], shipping: int, asks: list[int]
) -> None:
    """The ledger's checks, replayed on plain numbers: a refund is taken only if it fits
    what is left (in all, per line through ``spread``, and on shipping)."""
    paid_lines = {i + 1: paid for i, (paid, _) in enumerate(lines)}
    refunded = dict.fromkeys(paid_lines, 0)
    shipping_refunded = 0
    total_paid = sum(paid_lines.values()) + shipping
    total_refunded = 0
    for ask in asks:
        left = {k: paid_lines[k] - refunded[k] for k in paid_lines}
        if ask > total_paid - total_refunded:
            continue  # refused: refund_exceeds_remaining
        out = spread(ask, left)
        ship = out.pop(0, 0)
        if ship > shipping - shipping_refunded:
            continue
        for k, part in out.items():
            refunded[k] += part
        shipping_refunded += ship
        total_refunded += ask
        assert all(refunded[k] <= paid_lines[k] for k in paid_lines)
        assert total_refunded == sum(refunded.values()) + shipping_refunded <= total_paid


@given(
    stock=st.integers(min_value=1, max_value=50),
    bought=st.integers(min_value=1, max_value=50),
    returns=st.lists(st.integers(min_value=1, max_value=10), max_size=6),
    replays=st.integers(min_value=1, max_value=3),
)
def test_stock_is_conserved_when_returned_units_are_restocked_by_key(
    stock: int, bought: int, returns: list[int], replays: int
) -> None:
    """Sold units come back through the stock ledger by ``return:{rma}:{sku}`` keys: a
    replayed restock changes nothing, conservation holds after every step, and the units
    available again are exactly those taken back (never more than were sold)."""
    ledger = Ledger()
    ledger.load_stock(7, Stock(total=stock, available=stock, threshold=0))
    quantity = min(bought, stock)
    assert ledger.reserve("order:1", {7: quantity}) == "ok"
    assert ledger.confirm("order:1") == "ok"
    taken_back = 0
    for rma, asked in enumerate(returns):
        k = min(asked, quantity - taken_back)  # the guarded returned_quantity
        if k <= 0:
            break
        for _ in range(replays):
            assert ledger.adjust(f"return:{rma}:7", 7, k, "return") == "ok"
            assert ledger.violations() == []
        taken_back += k
    s = ledger.stock[7]
    assert s.available == stock - quantity + taken_back
    assert s.total == s.available + s.reserved + s.sold
    assert taken_back <= quantity
