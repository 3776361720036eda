"""Shipping fees, in integer cents: plain Python, no I/O.

A shipping method has a flat fee, optional per-region fees and an optional free-over
threshold. Guarantees (tests/unit/test_shipping_fees.py):

- **region**: ``region_fees`` keys are ISO 3166-style codes matched case-insensitively
  against the address: ``"<country>-<region>"`` first (``"US-CA"``), then ``"<country>"``
  (``"GB"``); the first key that matches gives the fee, otherwise the flat fee applies;
- **free over**: when the goods after discounts (what the lines cost once promotions and
  coupons are taken off, without shipping) reach ``free_over_cents``, the fee is 0;
- **free-shipping promotion**: an applied ``free_shipping`` offer
  (``raymall.domain.promotions``) makes the fee 0 as well;
- a fee is never negative, and an order's total is goods after discounts + fee.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_FEE_CENTS = 10**9


@dataclass(frozen=True)
class MethodTerms:
    """What a shipping method charges (a picklable snapshot of its row)."""

    id: int
    code: str
    name: str
    fee_cents: int
    free_over_cents: int | None = None
    region_fees: Mapping[str, int] = field(default_factory=dict)
    active: bool = True

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "fee_cents": self.fee_cents,
            "free_over_cents": self.free_over_cents,
            "region_fees": dict(self.region_fees),
            "active": self.active,
        }


def region_keys(address: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys an address matches, most specific first."""
    country = str(address.get("country") or "").strip().upper()
    region = str(address.get("region") or "").strip().upper()
    keys: list[str] = []
    if country and region:
        keys.append(f"{country}-{region}")
    if country:
        keys.append(country)
    return tuple(keys)


def base_fee(method: MethodTerms, address: Mapping[str, Any]) -> int:
    """The method's fee for this address before any waiver: region fee, else flat fee."""
    fees = {str(k).strip().upper(): int(v) for k, v in method.region_fees.items()}
    for key in region_keys(address):
        if key in fees:
            return max(0, fees[key])
    return max(0, int(method.fee_cents))


def shipping_fee(
    method: MethodTerms,
    address: Mapping[str, Any],
    *,
    goods_cents: int,
    free_shipping: bool = False,
) -> int:
    """What shipping costs: 0 with a free-shipping promotion or when ``goods_cents`` (the
    lines after discounts) reach the method's threshold, else ``base_fee``."""
    if free_shipping:
        return 0
    if method.free_over_cents is not None and goods_cents >= method.free_over_cents:
        return 0
    return base_fee(method, address)
