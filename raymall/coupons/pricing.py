"""Pricing carts and orders with promotions and coupons (``raymall.domain.promotions``).

``Pricer`` gathers what the pure pricing needs and nothing it must not trust: prices come
from the catalog lines already priced on the server, a line's categories (with every
ancestor) and brand from the catalog rows, the running promotions from a copy at most
``ttl_s`` old, and the customer's coupons from the database at request time. Guarantees:

- ``quote`` (the cart and the quote route) prices with every running promotion and, for a
  signed-in customer who names no coupon, the best valid combination of their usable
  coupons, with the reason each offer left out is not used;
- ``for_order`` prices an order with the coupons it names (refused with the coupon's own
  code if one does not apply: not yours, not found, locked or used, expired, not yet
  valid, out of scope, below threshold, not combinable), and answers the allocation of
  the discount to the lines, which the order stores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import Category, Product
from raymall.coupons import repo
from raymall.domain.pricing import PricedLine
from raymall.domain.promotions import Offer, Priced, PriceLine, best, check_named, evaluate
from raymall.ids import now_ms
from raymall.singleflight import SingleFlight

MAX_NAMED_COUPONS = 5


def price_lines(
    lines: Sequence[PricedLine],
    products: dict[int, tuple[int, int | None]],
    parents: dict[int, int | None],
) -> list[PriceLine]:
    """Server-priced lines with their category paths and brands."""
    out = []
    for ln in lines:
        category, brand = products.get(ln.product_id, (0, None))
        path: set[int] = set()
        cat: int | None = category
        while cat is not None and cat not in path:
            path.add(cat)
            cat = parents.get(cat)
        out.append(
            PriceLine(
                sku_id=ln.sku_id,
                product_id=ln.product_id,
                unit_price_cents=ln.unit_price_cents,
                quantity=ln.quantity,
                category_ids=frozenset(path),
                brand_id=brand,
            )
        )
    return out


class Pricer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        ttl_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self.clock = clock
        self._promotions: tuple[float, list[Offer], dict[int, int | None]] | None = None
        self._loads = SingleFlight()

    async def _read(self, fn: Callable[[Session], Any]) -> Any:
        def run() -> Any:
            with self.sessions() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    async def _shop(self) -> tuple[list[Offer], dict[int, int | None]]:
        """The running promotions and the category tree (child -> parent), cached."""
        held = self._promotions
        if held is not None and held[0] > self.clock():
            return held[1], held[2]

        def read(session: Session) -> tuple[list[Offer], dict[int, int | None]]:
            promos = repo.running_promotions(session, now_ms())
            tree = {int(c): (None if p is None else int(p)) for c, p in session.execute(
                select(Category.id, Category.parent_id)
            )}  # fmt: skip
            return promos, tree

        async def load() -> tuple[list[Offer], dict[int, int | None]]:
            promos, tree = await self._read(read)
            self._promotions = (self.clock() + self.ttl_s, promos, tree)
            return promos, tree

        return await self._loads.do("shop", load)  # type: ignore[no-any-return]

    async def _lines(
        self,
        lines: Sequence[PricedLine],
        parents: dict[int, int | None],
        known: Mapping[int, tuple[int, int | None]] | None = None,
    ) -> list[PriceLine]:
        ids = sorted({ln.product_id for ln in lines})
        if known is not None and all(i in known for i in ids):
            return price_lines(lines, dict(known), parents)

        def read(session: Session) -> dict[int, tuple[int, int | None]]:
            rows = session.execute(
                select(Product.id, Product.category_id, Product.brand_id).where(Product.id.in_(ids))
            )
            return {int(p): (int(c), None if b is None else int(b)) for p, c, b in rows}

        products = await self._read(read) if ids else {}
        return price_lines(lines, products, parents)

    async def quote(
        self,
        user_id: int | None,
        lines: Sequence[PricedLine],
        coupon_ids: Sequence[int] | None = None,
        products: Mapping[int, tuple[int, int | None]] | None = None,
    ) -> Priced:
        """Promotions, and the named coupons or else the user's best combination.
        ``products``: the lines' products' (category, brand) when the caller has them."""
        promos, parents = await self._shop()
        priced_lines = await self._lines(lines, parents, products)
        now = now_ms()
        if coupon_ids:
            assert user_id is not None
            named = await self._read(lambda s: repo.named_coupons(s, user_id, coupon_ids))
            return check_named(priced_lines, promos, named, now)
        if user_id is None:
            return evaluate(priced_lines, promos, now)
        usable = await self._read(lambda s: repo.usable_coupons(s, user_id, now))
        return best(priced_lines, promos, usable, now)

    async def for_order(
        self, user_id: int, lines: Sequence[PricedLine], coupon_ids: Sequence[int]
    ) -> Priced:
        """An order's pricing: promotions and exactly the named coupons (no read at all
        when no promotion runs and none is named)."""
        promos, parents = await self._shop()
        if not promos and not coupon_ids:
            plain = [PriceLine(ln.sku_id, ln.product_id, ln.unit_price_cents, ln.quantity)
                     for ln in lines]  # fmt: skip
            return evaluate(plain, [], now_ms())
        priced_lines = await self._lines(lines, parents)
        now = now_ms()
        named: list[Offer] = []
        if coupon_ids:
            named = await self._read(lambda s: repo.named_coupons(s, user_id, coupon_ids))
        return check_named(priced_lines, promos, named, now)
