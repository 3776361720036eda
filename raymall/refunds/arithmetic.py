"""Refund arithmetic: plain integer functions, no I/O (property tests beside them in
tests/unit/test_refund_arithmetic.py).

What a line paid is ``line_total_cents - discount_cents``. Its units share that amount by
floor and remainder: each unit pays ``paid // quantity`` and the first ``paid % quantity``
units one cent more, so the shares of all units of a line sum exactly to what it paid.
Returned units take the next shares in order (the first return of a line gets units 0..k-1,
the next one units k..), so however a line is returned in parts, the parts sum exactly to
what the line paid.

``spread`` splits an amount over the lines that still have money to give back, in
proportion to what each has left (floor and remainder again), never more than a line has
left; the part no line can take is the shipping part, bounded by the shipping left.
Guarantees: every function answers non-negative integers, and none ever gives a line more
than it has left.
"""

from __future__ import annotations

from collections.abc import Mapping


def unit_shares(paid_cents: int, quantity: int) -> list[int]:
    """What each unit of a line paid, in unit order (they sum to ``paid_cents``)."""
    if quantity <= 0:
        return []
    base, extra = divmod(max(paid_cents, 0), quantity)
    return [base + (1 if i < extra else 0) for i in range(quantity)]


def units_refund(paid_cents: int, quantity: int, first_unit: int, units: int) -> int:
    """What units ``first_unit .. first_unit + units - 1`` of a line paid."""
    if units <= 0 or quantity <= 0:
        return 0
    first = max(0, min(first_unit, quantity))
    last = max(first, min(first_unit + units, quantity))
    base, extra = divmod(max(paid_cents, 0), quantity)
    # units below ``extra`` pay one cent more
    bonus = max(0, min(last, extra) - first)
    return base * (last - first) + bonus


def spread(amount_cents: int, left: Mapping[int, int]) -> dict[int, int]:
    """Split ``amount_cents`` over lines by what each has ``left`` (cents), proportionally,
    each line capped at its left; what no line can take is answered as key ``0`` (the
    shipping part). Lines that get nothing are omitted."""
    amount = max(amount_cents, 0)
    positive = {k: v for k, v in sorted(left.items()) if v > 0}
    total_left = sum(positive.values())
    if amount >= total_left:
        out = dict(positive)
        if amount > total_left:
            out[0] = amount - total_left
        return out
    shares = {k: amount * v // total_left for k, v in positive.items()}
    remainder = amount - sum(shares.values())
    # the remainder goes a cent at a time to the lines with the largest fractional parts
    order = sorted(positive, key=lambda k: (-(amount * positive[k] % total_left), k))
    for k in order:
        if remainder == 0:
            break
        if shares[k] < positive[k]:
            shares[k] += 1
            remainder -= 1
    return {k: v for k, v in shares.items() if v > 0}
