"""Server-side pricing in integer cents (DESIGN invariant 7). Plain Python, no I/O.

A client names SKUs and quantities; every price comes from the catalog rows the server
read. Guarantees (tests/unit/test_order_pricing.py):

- ``normalize_lines`` merges repeated SKUs, refuses non-positive or oversized quantities
  and too many lines, and returns the lines in a canonical order (ascending SKU id);
- ``price`` refuses a SKU that does not exist (``UnknownSku``, 404) or is not on sale
  (``NotForSale``, 409) and otherwise returns exact integer totals;
- ``request_hash`` is the same for requests that mean the same thing (key order, repeated
  SKUs and line order do not matter), so an ``Idempotency-Key`` replay is recognised.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from raymall.errors import NotForSale, UnknownSku, ValidationFailed

CURRENCY = "USD"
MAX_ORDER_TOTAL_CENTS = 2**53  # well inside BIGINT, exact as a JSON number everywhere


@dataclass(frozen=True)
class SkuInfo:
    """What pricing needs to know about one SKU, read from the catalog."""

    sku_id: int
    product_id: int
    title: str
    price_cents: int
    published: bool
    specs: dict[str, str] = field(default_factory=dict)


def sku_info(row: Any) -> SkuInfo:
    """A SKU as pricing sees it, from a catalog row joined with its product (``id``,
    ``product_id``, ``title``, ``price_cents``, ``status``, ``specs``): on sale when its
    product is published."""
    return SkuInfo(
        sku_id=int(row.id),
        product_id=int(row.product_id),
        title=row.title,
        price_cents=int(row.price_cents),
        published=row.status == "published",
        specs=dict(row.specs or {}),
    )


@dataclass(frozen=True)
class PricedLine:
    sku_id: int
    product_id: int
    title: str
    specs: dict[str, str]
    unit_price_cents: int
    quantity: int

    @property
    def line_total_cents(self) -> int:
        return self.unit_price_cents * self.quantity

    def as_dict(self) -> dict[str, Any]:
        return {
            "sku_id": self.sku_id,
            "product_id": self.product_id,
            "title": self.title,
            "specs": dict(self.specs),
            "unit_price_cents": self.unit_price_cents,
            "quantity": self.quantity,
            "line_total_cents": self.line_total_cents,
        }


@dataclass(frozen=True)
class Quote:
    lines: tuple[PricedLine, ...]
    currency: str = CURRENCY

    @property
    def total_cents(self) -> int:
        return sum(line.line_total_cents for line in self.lines)

    @property
    def items(self) -> dict[int, int]:
        """{sku_id: quantity}: what the inventory must reserve."""
        return {line.sku_id: line.quantity for line in self.lines}


def normalize_lines(
    lines: Iterable[tuple[int, int]], *, max_qty: int, max_lines: int
) -> dict[int, int]:
    """Merge repeated SKUs and check the bounds; ascending SKU order."""
    merged: dict[int, int] = {}
    for sku_id, qty in lines:
        if type(sku_id) is not int or sku_id <= 0:
            raise ValidationFailed("sku_id must be a positive integer", details={"sku_id": sku_id})
        if type(qty) is not int or qty <= 0:
            raise ValidationFailed(
                "quantity must be a positive integer", details={"sku_id": sku_id}
            )
        merged[sku_id] = merged.get(sku_id, 0) + qty
    if not merged:
        raise ValidationFailed("an order needs at least one line")
    if len(merged) > max_lines:
        raise ValidationFailed(
            f"an order has at most {max_lines} lines", details={"max_lines": max_lines}
        )
    for sku_id, qty in merged.items():
        if qty > max_qty:
            raise ValidationFailed(
                f"at most {max_qty} units of one SKU per order",
                details={"sku_id": sku_id, "max_quantity": max_qty},
            )
    return dict(sorted(merged.items()))


def check_sku(sku_id: int, info: SkuInfo | None) -> SkuInfo:
    """The SKU's catalog row, or the clear refusal a client should see."""
    if info is None:
        raise UnknownSku(f"SKU {sku_id} does not exist", details={"sku_id": sku_id})
    if not info.published:
        raise NotForSale(f"SKU {sku_id} is not for sale", details={"sku_id": sku_id})
    return info


def price(lines: Mapping[int, int], catalog: Mapping[int, SkuInfo]) -> Quote:
    """Price ``lines`` ({sku_id: qty}) from the catalog rows; never from client input."""
    priced = []
    for sku_id, qty in sorted(lines.items()):
        info = check_sku(sku_id, catalog.get(sku_id))
        if type(info.price_cents) is not int or info.price_cents < 0:
            raise ValueError(f"SKU {sku_id} has an invalid price in the catalog")
        priced.append(
            PricedLine(
                sku_id=sku_id,
                product_id=info.product_id,
                title=info.title,
                specs=dict(info.specs),
                unit_price_cents=info.price_cents,
                quantity=qty,
            )
        )
    quote = Quote(tuple(priced))
    if quote.total_cents > MAX_ORDER_TOTAL_CENTS:
        raise ValidationFailed("the order total is too large")
    return quote


def request_hash(payload: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a normalized request."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
