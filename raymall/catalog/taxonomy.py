"""Admin writes for the category tree and brands.

Guarantees: a move that would put a category under itself or one of its descendants is
refused (409 category_cycle); a category with products or subcategories is not deleted
(409 category_not_empty), nor a brand with products (409 brand_in_use). Renaming or moving
a category and renaming a brand recompute ``search_text`` of every affected product, emit
``product.upserted`` for each and invalidate their cached documents.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Brand, Category, Product
from raymall.catalog.effects import WriterBase, emit, product_events, refresh_search_text
from raymall.catalog.repository import category_path, subtree_ids
from raymall.catalog.schemas import BrandCreate, BrandUpdate, CategoryCreate, CategoryUpdate
from raymall.catalog.text import slugify
from raymall.errors import (
    AlreadyExists,
    BrandInUse,
    CategoryCycle,
    CategoryNotEmpty,
    NotFound,
    ValidationFailed,
)
from raymall.ids import now_ms


def category_view(session: Session, c: Category) -> dict[str, Any]:
    return {
        "id": int(c.id),
        "name": c.name,
        "slug": c.slug,
        "parent_id": int(c.parent_id) if c.parent_id is not None else None,
        "sort_order": int(c.sort_order),
        "path": category_path(session, int(c.id)),
    }


def brand_view(b: Brand) -> dict[str, Any]:
    return {"id": int(b.id), "name": b.name, "slug": b.slug, "description": b.description}


def _free_slug(session: Session, model: type[Category] | type[Brand], base: str) -> str:
    """``base`` or ``base-2``, ``base-3``... whichever is not taken."""
    taken = set(session.scalars(select(model.slug).where(model.slug.like(f"{base}%"))))
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


class TaxonomyWrites(WriterBase):
    # ---- categories -----------------------------------------------------------------
    def _category(self, session: Session, category_id: int) -> Category:
        c = session.get(Category, category_id)
        if c is None:
            raise NotFound(f"category {category_id} not found")
        return c

    def _check_parent(self, session: Session, parent_id: int | None) -> None:
        if parent_id is not None and session.get(Category, parent_id) is None:
            raise ValidationFailed(
                f"parent category {parent_id} does not exist", details={"field": "parent_id"}
            )

    def _check_slug(self, session: Session, model: Any, slug: str, own_id: int | None) -> None:
        other = session.scalar(select(model.id).where(model.slug == slug))
        if other is not None and other != own_id:
            raise AlreadyExists(f"slug '{slug}' is taken", details={"field": "slug"})

    def create_category(self, data: CategoryCreate) -> dict[str, Any]:
        with self.write([]) as s:
            self._check_parent(s, data.parent_id)
            if data.slug:
                self._check_slug(s, Category, data.slug, None)
            now = now_ms()
            c = Category(
                name=data.name,
                slug=data.slug or _free_slug(s, Category, slugify(data.name)),
                parent_id=data.parent_id,
                sort_order=data.sort_order,
                created_ms=now,
                updated_ms=now,
            )
            s.add(c)
            s.flush()
            emit(s, "category.upserted", c.id, {"category_id": int(c.id)})
            return category_view(s, c)

    def update_category(self, category_id: int, data: CategoryUpdate) -> dict[str, Any]:
        changes = data.given()
        touched: list[int] = []
        with self.write(touched) as s:
            c = self._category(s, category_id)
            if "parent_id" in changes and changes["parent_id"] != c.parent_id:
                parent_id = changes["parent_id"]
                self._check_parent(s, parent_id)
                if parent_id is not None and category_id in {
                    p["id"] for p in category_path(s, parent_id)
                }:
                    raise CategoryCycle(
                        f"moving category {category_id} under {parent_id} would make a cycle"
                    )
                c.parent_id = parent_id
            if changes.get("slug") is not None:
                self._check_slug(s, Category, changes["slug"], category_id)
                c.slug = changes["slug"]
            if changes.get("name") is not None:
                c.name = changes["name"]
            if changes.get("sort_order") is not None:
                c.sort_order = changes["sort_order"]
            c.updated_ms = now_ms()
            s.flush()
            if changes.keys() & {"name", "parent_id", "slug"}:
                # every product below carries this category in its path and search text
                touched += self._refresh_categories(s, subtree_ids(s, category_id))
            emit(s, "category.upserted", category_id, {"category_id": category_id})
            return category_view(s, c)

    def _refresh_categories(self, session: Session, category_ids: list[int]) -> list[int]:
        products = session.scalars(
            select(Product).where(Product.category_id.in_(category_ids))
        ).all()
        refresh_search_text(session, products)
        ids = [int(p.id) for p in products]
        product_events(session, ids, "category_changed")
        return ids

    def delete_category(self, category_id: int) -> None:
        with self.write([]) as s:
            c = self._category(s, category_id)
            if s.scalar(select(func.count()).where(Product.category_id == category_id)):
                raise CategoryNotEmpty(f"category {category_id} still has products")
            if s.scalar(select(func.count()).where(Category.parent_id == category_id)):
                raise CategoryNotEmpty(f"category {category_id} still has subcategories")
            s.delete(c)
            emit(s, "category.deleted", category_id, {"category_id": category_id})

    # ---- brands ---------------------------------------------------------------------
    def _brand(self, session: Session, brand_id: int) -> Brand:
        b = session.get(Brand, brand_id)
        if b is None:
            raise NotFound(f"brand {brand_id} not found")
        return b

    def _check_brand_name(self, session: Session, name: str, own_id: int | None) -> None:
        other = session.scalar(select(Brand.id).where(Brand.name == name))
        if other is not None and other != own_id:
            raise AlreadyExists(f"brand '{name}' already exists", details={"field": "name"})

    def create_brand(self, data: BrandCreate) -> dict[str, Any]:
        with self.write([]) as s:
            self._check_brand_name(s, data.name, None)
            if data.slug:
                self._check_slug(s, Brand, data.slug, None)
            now = now_ms()
            b = Brand(
                name=data.name,
                slug=data.slug or _free_slug(s, Brand, slugify(data.name)),
                description=data.description,
                created_ms=now,
                updated_ms=now,
            )
            s.add(b)
            s.flush()
            emit(s, "brand.upserted", b.id, {"brand_id": int(b.id)})
            return brand_view(b)

    def update_brand(self, brand_id: int, data: BrandUpdate) -> dict[str, Any]:
        changes = data.given()
        touched: list[int] = []
        with self.write(touched) as s:
            b = self._brand(s, brand_id)
            if changes.get("name") is not None:
                self._check_brand_name(s, changes["name"], brand_id)
                b.name = changes["name"]
            if changes.get("slug") is not None:
                self._check_slug(s, Brand, changes["slug"], brand_id)
                b.slug = changes["slug"]
            if changes.get("description") is not None:
                b.description = changes["description"]
            b.updated_ms = now_ms()
            s.flush()
            if changes.keys() & {"name", "slug"}:
                # product documents and search text carry the brand's name and slug
                products = s.scalars(select(Product).where(Product.brand_id == brand_id)).all()
                refresh_search_text(s, products)
                touched += [int(p.id) for p in products]
                product_events(s, touched, "brand_changed")
            emit(s, "brand.upserted", brand_id, {"brand_id": brand_id})
            return brand_view(b)

    def delete_brand(self, brand_id: int) -> None:
        with self.write([]) as s:
            b = self._brand(s, brand_id)
            if s.scalar(select(func.count()).where(Product.brand_id == brand_id)):
                raise BrandInUse(f"brand {brand_id} still has products")
            s.delete(b)
            emit(s, "brand.deleted", brand_id, {"brand_id": brand_id})
