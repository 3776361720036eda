"""SKUs as the catalog's product documents describe them (the cart's lines and its pricing).

A SKU never moves to another product (``SkuUpdate`` has no product), so a replica keeps a
map SKU id -> product id, read from the database the first time a SKU is named, and reads
everything else about the SKU (price, specs, title, whether it is on sale, the product's
category and brand) from its product's document: the replica's in-process copy or the
detail cache (``CatalogRuntime.documents``), which every catalog write invalidates.
Guarantees:

- **as fresh as product detail**: a catalog write shows here once it shows on
  ``GET /products/{id}`` (on the writer's replica before the write answers, on the others
  when its invalidation message arrives);
- **never a guess**: a SKU the database does not know is absent from the answer; a SKU
  whose product's document does not list it (a deleted product, a document from before
  the SKU, a product the detail cache does not know of yet) is read from the catalog
  rows;
- bounded: at most ``max_skus`` ids in the map (emptied when full).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import Product, Sku
from raymall.domain.pricing import SkuInfo, sku_info

Doc = dict[str, Any]
Documents = Callable[[Sequence[int]], Awaitable[dict[int, Doc | None]]]


@dataclass(frozen=True)
class CatalogSku:
    """One SKU as pricing needs it, with its product's category and brand."""

    info: SkuInfo
    category_id: int
    brand_id: int | None


def from_document(sku_id: int, doc: Doc | None) -> CatalogSku | None:
    """The SKU as ``doc`` (its product's document) lists it; None if it does not."""
    if doc is None:
        return None
    for sku in doc["skus"]:
        if sku["id"] == sku_id:
            brand = doc.get("brand")
            return CatalogSku(
                SkuInfo(
                    sku_id=sku_id,
                    product_id=int(doc["id"]),
                    title=doc["title"],
                    price_cents=int(sku["price_cents"]),
                    published=doc["status"] == "published",
                    specs=dict(sku["specs"] or {}),
                ),
                category_id=int(doc["category"]["id"]),
                brand_id=None if brand is None else int(brand["id"]),
            )
    return None


class SkuDirectory:
    """See the module docstring. ``sessions``: read sessions (``raymall.db.read_sessions``);
    ``documents``: product documents by id (None: no such product)."""

    def __init__(
        self, sessions: sessionmaker[Session], documents: Documents, *, max_skus: int = 200_000
    ) -> None:
        self.sessions = sessions
        self.documents = documents
        self.max_skus = max_skus
        self._product_of: dict[int, int] = {}

    async def _resolve(self, sku_ids: list[int]) -> None:
        def read() -> dict[int, int]:
            with self.sessions() as session:
                rows = session.execute(select(Sku.id, Sku.product_id).where(Sku.id.in_(sku_ids)))
                return {int(s): int(p) for s, p in rows}

        found = await asyncio.to_thread(read)
        if len(self._product_of) + len(found) > self.max_skus:
            self._product_of.clear()
        for sku_id in sku_ids:
            self._product_of.pop(sku_id, None)
        self._product_of.update(found)

    async def _listed(self, sku_ids: list[int]) -> dict[int, CatalogSku]:
        product_of = self._product_of
        pids = sorted({product_of[s] for s in sku_ids if s in product_of})
        docs = await self.documents(pids) if pids else {}
        out: dict[int, CatalogSku] = {}
        for sku_id in sku_ids:
            pid = product_of.get(sku_id)
            found = from_document(sku_id, docs.get(pid)) if pid is not None else None
            if found is not None:
                out[sku_id] = found
        return out

    async def _rows(self, sku_ids: list[int]) -> dict[int, CatalogSku]:
        """The SKUs from the catalog rows (what the documents do not show yet)."""

        def read() -> dict[int, CatalogSku]:
            with self.sessions() as session:
                rows = session.execute(
                    select(
                        Sku.id,
                        Sku.product_id,
                        Sku.price_cents,
                        Sku.specs,
                        Product.title,
                        Product.status,
                        Product.category_id,
                        Product.brand_id,
                    )
                    .join(Product, Product.id == Sku.product_id)
                    .where(Sku.id.in_(sku_ids))
                )
                return {
                    int(r.id): CatalogSku(
                        sku_info(r),
                        category_id=int(r.category_id),
                        brand_id=None if r.brand_id is None else int(r.brand_id),
                    )
                    for r in rows
                }

        found = await asyncio.to_thread(read)
        for sku_id in sku_ids:
            if sku_id in found:
                self._product_of[sku_id] = found[sku_id].info.product_id
            else:
                self._product_of.pop(sku_id, None)
        return found

    async def lookup(self, sku_ids: Sequence[int]) -> dict[int, CatalogSku]:
        """The SKUs among ``sku_ids`` that exist (on sale or not)."""
        ids = list(dict.fromkeys(int(s) for s in sku_ids))
        unknown = [s for s in ids if s not in self._product_of]
        if unknown:
            await self._resolve(unknown)
        out = await self._listed(ids)
        # known to the database, but its product's document does not list it (the product
        # was deleted, or the document predates the SKU or misses the product): the rows
        again = [s for s in ids if s not in out and s in self._product_of]
        if again:
            out.update(await self._rows(again))
        return out
