"""Admin writes for products (SPU) and SKUs, plus the category/brand writes it inherits.

Every method is one transaction that also writes its outbox event(s); see
``raymall.catalog.effects`` for the cache and Bloom-filter ordering. Guarantees:
- a SKU is created together with its inventory row (all zeros, shard =
  ``shard_for(sku_id, inventory_shards)``) in the same transaction; stock is afterwards
  changed only by the owning inventory shard;
- ``min/max_price_cents`` always match the product's SKUs;
- publishing needs at least one SKU (409 product_not_publishable); publish/unpublish
  are idempotent; unpublishing a draft is 409 invalid_transition;
- a product is deleted only while none of its SKUs has stock history (409
  product_in_use otherwise: unpublish it instead).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from models import Brand, Category, FlashSale, Inventory, InventoryAdjustment, Product, Sku
from raymall.catalog.effects import CacheHooks, emit, refresh_search_text
from raymall.catalog.media import ImageStore
from raymall.catalog.repository import db_availability, load_product_doc
from raymall.catalog.schemas import ProductCreate, ProductUpdate, SkuCreate, SkuUpdate
from raymall.catalog.taxonomy import TaxonomyWrites
from raymall.errors import (
    AlreadyExists,
    InvalidTransition,
    NotFound,
    NotPublishable,
    ProductInUse,
    ValidationFailed,
)
from raymall.hashing import shard_for
from raymall.ids import now_ms


class CatalogService(TaxonomyWrites):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        inventory_shards: int,
        media: ImageStore | None = None,
        hooks: CacheHooks | None = None,
    ) -> None:
        super().__init__(sessions, inventory_shards=inventory_shards, hooks=hooks)
        self.media = media

    # ---- reads for admins -----------------------------------------------------------
    def admin_product(self, product_id: int) -> dict[str, Any]:
        """The product in any status, straight from the DB, with DB availability."""
        with self.sessions() as s:
            return self._view(s, product_id)

    def _view(self, session: Session, product_id: int) -> dict[str, Any]:
        doc = load_product_doc(session, product_id)
        if doc is None:
            raise NotFound(f"product {product_id} not found")
        stock = db_availability(session, [sku["id"] for sku in doc["skus"]])
        for sku in doc["skus"]:
            sku["available"] = stock.get(sku["id"], 0)
        return doc

    # ---- validation helpers ---------------------------------------------------------
    def _product(self, session: Session, product_id: int) -> Product:
        p = session.get(Product, product_id)
        if p is None:
            raise NotFound(f"product {product_id} not found")
        return p

    def _check_refs(self, session: Session, category_id: int | None, brand_id: int | None) -> None:
        if category_id is not None and session.get(Category, category_id) is None:
            raise ValidationFailed(
                f"category {category_id} does not exist", details={"field": "category_id"}
            )
        if brand_id is not None and session.get(Brand, brand_id) is None:
            raise ValidationFailed(
                f"brand {brand_id} does not exist", details={"field": "brand_id"}
            )

    def _check_images(self, images: list[str]) -> None:
        for url in images:
            if self.media is not None and not self.media.url_is_stored(url):
                raise ValidationFailed(f"image {url} was not uploaded", details={"field": "images"})

    def _add_sku(self, session: Session, product: Product, data: SkuCreate) -> Sku:
        if session.scalar(select(Sku.id).where(Sku.code == data.code)) is not None:
            raise AlreadyExists(f"SKU code '{data.code}' is taken", details={"field": "code"})
        now = now_ms()
        sku = Sku(
            product_id=product.id,
            code=data.code,
            specs=dict(data.specs),
            price_cents=data.price_cents,
            low_stock_threshold=data.low_stock_threshold,
            created_ms=now,
            updated_ms=now,
        )
        session.add(sku)
        session.flush()
        session.add(
            Inventory(
                sku_id=sku.id,
                shard=shard_for(int(sku.id), self.inventory_shards),
                total=0,
                available=0,
                reserved=0,
                sold=0,
                version=0,
                updated_ms=now,
            )
        )
        return sku

    def _reprice(self, session: Session, product: Product) -> None:
        session.flush()
        lo, hi = session.execute(
            select(func.min(Sku.price_cents), func.max(Sku.price_cents)).where(
                Sku.product_id == product.id
            )
        ).one()
        product.min_price_cents = int(lo or 0)
        product.max_price_cents = int(hi or 0)

    def _event(self, session: Session, product: Product, reason: str) -> None:
        payload = {"product_id": int(product.id), "status": product.status, "reason": reason}
        emit(session, "product.upserted", product.id, payload)

    # ---- products -------------------------------------------------------------------
    def create_product(self, data: ProductCreate) -> dict[str, Any]:
        """A new draft product, with its SKUs (if given) and their inventory rows."""
        self._check_images(list(data.images))
        codes = [s.code for s in data.skus]
        if len(set(codes)) != len(codes):
            raise ValidationFailed("SKU codes must be distinct", details={"field": "skus"})
        touched: list[int] = []
        with self.write(touched) as s:
            self._check_refs(s, data.category_id, data.brand_id)
            now = now_ms()
            p = Product(
                title=data.title,
                description=data.description,
                category_id=data.category_id,
                brand_id=data.brand_id,
                attributes=dict(data.attributes),
                images=list(data.images),
                status="draft",
                min_price_cents=0,
                max_price_cents=0,
                sales_count=0,
                search_text="",
                created_ms=now,
                updated_ms=now,
            )
            s.add(p)
            s.flush()
            for sku in data.skus:
                self._add_sku(s, p, sku)
            self._reprice(s, p)
            refresh_search_text(s, [p])
            self._event(s, p, "created")
            touched.append(int(p.id))
            self.hooks.announce([int(p.id)])  # before commit: see effects
            s.flush()
            return self._view(s, int(p.id))

    def update_product(self, product_id: int, data: ProductUpdate) -> dict[str, Any]:
        changes = data.given()
        if changes.get("images") is not None:
            self._check_images(list(changes["images"]))
        if "category_id" in changes and changes["category_id"] is None:
            raise ValidationFailed("category_id cannot be null", details={"field": "category_id"})
        touched = [product_id]
        with self.write(touched) as s:
            p = self._product(s, product_id)
            self._check_refs(s, changes.get("category_id"), changes.get("brand_id"))
            for field in ("title", "description", "category_id", "attributes", "images"):
                if changes.get(field) is not None:
                    value = changes[field]
                    setattr(p, field, dict(value) if field == "attributes" else value)
            if "brand_id" in changes:
                p.brand_id = changes["brand_id"]
            p.updated_ms = now_ms()
            s.flush()
            refresh_search_text(s, [p])
            self._event(s, p, "updated")
            s.flush()
            return self._view(s, product_id)

    def attach_image(self, product_id: int, url: str) -> dict[str, Any]:
        touched = [product_id]
        with self.write(touched) as s:
            p = self._product(s, product_id)
            images = list(p.images or [])
            if url not in images:
                if len(images) >= 20:
                    raise ValidationFailed("a product has at most 20 images")
                p.images = [*images, url]
                p.updated_ms = now_ms()
                self._event(s, p, "image_added")
            s.flush()
            return self._view(s, product_id)

    def set_published(self, product_id: int, published: bool) -> dict[str, Any]:
        touched = [product_id]
        with self.write(touched) as s:
            p = self._product(s, product_id)
            target = "published" if published else "unpublished"
            if p.status != target:
                if published and not s.scalar(
                    select(func.count()).where(Sku.product_id == product_id)
                ):
                    raise NotPublishable("a product needs at least one SKU to be published")
                if not published and p.status == "draft":
                    raise InvalidTransition("a draft product is not published")
                p.status = target
                p.updated_ms = now_ms()
                self._event(s, p, target)
            s.flush()
            return self._view(s, product_id)

    def delete_product(self, product_id: int) -> None:
        touched = [product_id]
        with self.write(touched) as s:
            self._product(s, product_id)
            sku_ids = [
                int(i) for i in s.scalars(select(Sku.id).where(Sku.product_id == product_id))
            ]
            if sku_ids:
                self._check_unused(s, sku_ids)
            s.execute(delete(Sku).where(Sku.product_id == product_id))
            s.execute(delete(Product).where(Product.id == product_id))
            emit(s, "product.deleted", product_id, {"product_id": product_id})

    def _check_unused(self, session: Session, sku_ids: list[int]) -> None:
        used = session.scalar(
            select(func.count())
            .select_from(Inventory)
            .where(Inventory.sku_id.in_(sku_ids))
            .where((Inventory.total != 0) | (Inventory.reserved != 0) | (Inventory.sold != 0))
        )
        used = used or session.scalar(select(func.count()).where(FlashSale.sku_id.in_(sku_ids)))
        used = used or session.scalar(
            select(func.count()).where(InventoryAdjustment.sku_id.in_(sku_ids))
        )
        if used:
            raise ProductInUse("the product has stock history; unpublish it instead")
        # Empty inventory rows go with their SKUs; the guard re-checks under the delete.
        removed = session.execute(  # type: ignore[attr-defined]
            delete(Inventory).where(
                Inventory.sku_id.in_(sku_ids),
                Inventory.total == 0,
                Inventory.reserved == 0,
                Inventory.sold == 0,
                Inventory.available == 0,
            )
        ).rowcount
        left = session.scalar(select(func.count()).where(Inventory.sku_id.in_(sku_ids)))
        if left:
            raise ProductInUse(f"stock arrived while deleting ({removed} rows cleared)")

    # ---- SKUs -----------------------------------------------------------------------
    def create_sku(self, product_id: int, data: SkuCreate) -> dict[str, Any]:
        touched = [product_id]
        with self.write(touched) as s:
            p = self._product(s, product_id)
            sku = self._add_sku(s, p, data)
            self._reprice(s, p)
            p.updated_ms = now_ms()
            self._event(s, p, "sku_added")
            s.flush()
            view = self._view(s, product_id)
            return next(x for x in view["skus"] if x["id"] == sku.id)

    def update_sku(self, sku_id: int, data: SkuUpdate) -> dict[str, Any]:
        changes = data.given()
        touched: list[int] = []
        with self.write(touched) as s:
            sku = s.get(Sku, sku_id)
            if sku is None:
                raise NotFound(f"SKU {sku_id} not found")
            if changes.get("specs") is not None:
                sku.specs = dict(changes["specs"])
            if changes.get("price_cents") is not None:
                sku.price_cents = changes["price_cents"]
            if changes.get("low_stock_threshold") is not None:
                sku.low_stock_threshold = changes["low_stock_threshold"]
            sku.updated_ms = now_ms()
            p = self._product(s, int(sku.product_id))
            self._reprice(s, p)
            p.updated_ms = now_ms()
            self._event(s, p, "sku_updated")
            touched.append(int(p.id))
            s.flush()
            view = self._view(s, int(p.id))
            return next(x for x in view["skus"] if x["id"] == sku_id)
