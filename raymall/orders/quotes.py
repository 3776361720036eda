"""The catalog and address reads that pricing an order needs, batched per replica.

Every order request needs its SKUs' current prices and one of the caller's addresses.
Concurrent requests share one round of two queries (``Batcher``), in Core SQL, so the
cost per order stays small under load. Guarantees:

- prices and published status are read from the database at request time (never
  cached, never taken from the client);
- with an ``Idempotency-Key`` the same round says whether an order is already stored
  under it, so the OrderShard need not look again before reserving;
- an address belongs to the caller or it is ``NotFound``, exactly as
  ``raymall.auth.addresses.get_address``; without an address id the caller's default is
  used, and a caller without addresses gets a 422 asking for one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from raymall.auth.addresses import FIELDS as ADDRESS_FIELDS
from raymall.batching import Batcher
from raymall.domain.pricing import SkuInfo
from raymall.errors import NotFound, ValidationFailed
from raymall.orders.rows import placeholder


@dataclass(frozen=True)
class QuoteRead:
    user_id: int
    address_id: int | None
    sku_ids: tuple[int, ...]
    key: str | None = None  # the client's Idempotency-Key


@dataclass(frozen=True)
class QuoteData:
    catalog: dict[int, SkuInfo]
    address: dict[str, Any]
    existing: tuple[int, str] | None = None  # (order id, request hash) stored under the key


# driver-level SQL: the statements are fixed but for the length of their IN lists, which
# SQLAlchemy would otherwise re-key for its compiled cache on every batch
_SKU_SELECT = (
    "SELECT s.id, s.product_id, s.price_cents, s.specs, p.title, p.status "
    "FROM skus s JOIN products p ON p.id = s.product_id"
)
_ADDRESS_SELECT = f"SELECT id, user_id, is_default, {', '.join(ADDRESS_FIELDS)} FROM addresses"


def _marks(ph: str, n: int) -> str:
    return ", ".join([ph] * n)


class QuoteReader:
    def __init__(self, engine: Engine, max_batch: int = 256) -> None:
        self.engine = engine
        self._batcher: Batcher[QuoteRead, QuoteData] = Batcher.in_thread(
            self._read_batch, max_batch=max_batch, max_inflight=2
        )

    async def read(
        self, user_id: int, address_id: int | None, sku_ids: list[int], key: str | None = None
    ) -> QuoteData:
        return await self._batcher.submit(QuoteRead(user_id, address_id, tuple(sku_ids), key))

    def _read_batch(self, reads: list[QuoteRead]) -> list[QuoteData | BaseException]:
        sku_ids = sorted({s for r in reads for s in r.sku_ids})
        user_ids = sorted({r.user_id for r in reads})
        keys = sorted({(r.user_id, r.key) for r in reads if r.key is not None})
        with self.engine.connect() as conn:
            ph = placeholder(conn)
            skus = (
                conn.exec_driver_sql(
                    f"{_SKU_SELECT} WHERE s.id IN ({_marks(ph, len(sku_ids))})", tuple(sku_ids)
                ).all()
                if sku_ids
                else []
            )
            addresses = conn.exec_driver_sql(
                f"{_ADDRESS_SELECT} WHERE user_id IN ({_marks(ph, len(user_ids))})",
                tuple(user_ids),
            ).all()
            stored = (
                conn.exec_driver_sql(
                    "SELECT user_id, idempotency_key, id, request_hash FROM orders "
                    "WHERE (user_id, idempotency_key) IN "
                    f"({', '.join([f'({ph}, {ph})'] * len(keys))})",
                    tuple(v for key in keys for v in key),
                ).all()
                if keys
                else []
            )
        existing = {(int(r[0]), str(r[1])): (int(r[2]), str(r[3] or "")) for r in stored}
        catalog = {
            int(sku): SkuInfo(
                sku_id=int(sku),
                product_id=int(product),
                title=title,
                price_cents=int(price_cents),
                published=status == "published",
                specs=dict((json.loads(specs) if specs is not None else None) or {}),
            )
            for sku, product, price_cents, specs, title, status in skus
        }
        by_user: dict[int, list[Any]] = {}
        for row in addresses:
            by_user.setdefault(int(row.user_id), []).append(row)
        out: list[QuoteData | BaseException] = []
        for r in reads:
            try:
                address = _pick_address(by_user.get(r.user_id, []), r.address_id)
            except (NotFound, ValidationFailed) as exc:
                out.append(exc)
                continue
            out.append(
                QuoteData(
                    {s: catalog[s] for s in r.sku_ids if s in catalog},
                    address,
                    existing.get((r.user_id, r.key)) if r.key is not None else None,
                )
            )
        return out


def _pick_address(rows: list[Any], address_id: int | None) -> dict[str, Any]:
    if address_id is not None:
        match = [r for r in rows if int(r.id) == address_id]
        if not match:
            raise NotFound(f"address {address_id} not found")
        row = match[0]
    else:
        defaults = [r for r in rows if r.is_default]
        if not defaults:
            raise ValidationFailed("add a shipping address first, or name one (address_id)")
        row = defaults[0]
    snapshot: dict[str, Any] = {name: getattr(row, name) for name in ADDRESS_FIELDS}
    snapshot["address_id"] = int(row.id)
    return snapshot
