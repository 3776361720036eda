"""HTTP routes: catalog administration. Every route needs ``catalog:write`` except the
product read, which needs ``catalog:read_unpublished``. Bodies are strict (422 on a wrong
type, an unknown field or an out-of-range value)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from deployments.security import Principal, require
from deployments.services import services
from raymall.catalog.listing import MAX_PAGE, MAX_PAGE_SIZE
from raymall.catalog.repository import ProductFilters
from raymall.catalog.runtime import CatalogRuntime
from raymall.catalog.schemas import (
    BrandCreate,
    BrandUpdate,
    CategoryCreate,
    CategoryUpdate,
    ProductCreate,
    ProductUpdate,
    SkuCreate,
    SkuUpdate,
)
from raymall.catalog.service import CatalogService
from raymall.errors import PayloadTooLarge

router = APIRouter(prefix="/admin", tags=["catalog admin"])
Writer = Annotated[Principal, Depends(require("catalog", "write"))]
Reader = Annotated[Principal, Depends(require("catalog", "read_unpublished"))]
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _rt(request: Request) -> CatalogRuntime:
    return services(request).catalog


def _svc(request: Request) -> CatalogService:
    return _rt(request).service


async def _run(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


# ---- categories -----------------------------------------------------------------------
@router.post("/categories", status_code=201)
async def create_category(request: Request, body: CategoryCreate, _: Writer) -> dict[str, Any]:
    return await _run(_svc(request).create_category, body)  # type: ignore[no-any-return]


@router.patch("/categories/{category_id}")
async def update_category(
    request: Request, category_id: Id, body: CategoryUpdate, _: Writer
) -> dict[str, Any]:
    """Rename, re-slug, reorder or move (``parent_id``; null moves to the root)."""
    return await _run(_svc(request).update_category, category_id, body)  # type: ignore[no-any-return]


@router.delete("/categories/{category_id}", status_code=204)
async def delete_category(request: Request, category_id: Id, _: Writer) -> Response:
    await _run(_svc(request).delete_category, category_id)
    return Response(status_code=204)


# ---- brands ---------------------------------------------------------------------------
@router.post("/brands", status_code=201)
async def create_brand(request: Request, body: BrandCreate, _: Writer) -> dict[str, Any]:
    return await _run(_svc(request).create_brand, body)  # type: ignore[no-any-return]


@router.patch("/brands/{brand_id}")
async def update_brand(
    request: Request, brand_id: Id, body: BrandUpdate, _: Writer
) -> dict[str, Any]:
    return await _run(_svc(request).update_brand, brand_id, body)  # type: ignore[no-any-return]


@router.delete("/brands/{brand_id}", status_code=204)
async def delete_brand(request: Request, brand_id: Id, _: Writer) -> Response:
    await _run(_svc(request).delete_brand, brand_id)
    return Response(status_code=204)


# ---- products -------------------------------------------------------------------------
@router.get("/products")
async def admin_products(
    request: Request,
    _: Reader,
    status: Literal["draft", "published", "unpublished"] | None = None,
    category_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    brand_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    sort: Literal["newest", "sales", "price_asc", "price_desc", "rating"] = "newest",
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=512)] = None,
) -> dict[str, Any]:
    """Products in any status (or one status)."""
    statuses = (status,) if status else ("draft", "published", "unpublished")
    f = ProductFilters(category_id=category_id, brand_id=brand_id, statuses=statuses)
    return await _rt(request).admin_listing(f, sort=sort, page=page, size=size, cursor=cursor)


@router.get("/products/{product_id}")
async def admin_product(request: Request, product_id: Id, _: Reader) -> dict[str, Any]:
    """A product in any status, read from the database (not the cache)."""
    return await _run(_svc(request).admin_product, product_id)  # type: ignore[no-any-return]


@router.post("/products", status_code=201)
async def create_product(request: Request, body: ProductCreate, _: Writer) -> dict[str, Any]:
    """A draft product, optionally with SKUs (each gets an empty inventory row)."""
    return await _run(_svc(request).create_product, body)  # type: ignore[no-any-return]


@router.patch("/products/{product_id}")
async def update_product(
    request: Request, product_id: Id, body: ProductUpdate, _: Writer
) -> dict[str, Any]:
    return await _run(_svc(request).update_product, product_id, body)  # type: ignore[no-any-return]


@router.post("/products/{product_id}/publish")
async def publish(request: Request, product_id: Id, _: Writer) -> dict[str, Any]:
    return await _run(_svc(request).set_published, product_id, True)  # type: ignore[no-any-return]


@router.post("/products/{product_id}/unpublish")
async def unpublish(request: Request, product_id: Id, _: Writer) -> dict[str, Any]:
    return await _run(_svc(request).set_published, product_id, False)  # type: ignore[no-any-return]


@router.delete("/products/{product_id}", status_code=204)
async def delete_product(request: Request, product_id: Id, _: Writer) -> Response:
    await _run(_svc(request).delete_product, product_id)
    return Response(status_code=204)


# ---- SKUs -----------------------------------------------------------------------------
@router.post("/products/{product_id}/skus", status_code=201)
async def create_sku(
    request: Request, product_id: Id, body: SkuCreate, _: Writer
) -> dict[str, Any]:
    return await _run(_svc(request).create_sku, product_id, body)  # type: ignore[no-any-return]


@router.patch("/skus/{sku_id}")
async def update_sku(request: Request, sku_id: Id, body: SkuUpdate, _: Writer) -> dict[str, Any]:
    """Price and specs; stock changes go through /admin/inventory."""
    return await _run(_svc(request).update_sku, sku_id, body)  # type: ignore[no-any-return]


# ---- images ---------------------------------------------------------------------------
async def read_upload(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"images are limited to {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"images are limited to {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _store(request: Request) -> dict[str, Any]:
    media = _rt(request).media
    media.check_declared(request.headers.get("content-type"))  # 415 before reading the body
    data = await read_upload(request, media.max_bytes)
    return await _run(media.save, data, request.headers.get("content-type"))  # type: ignore[no-any-return]


@router.post("/media/images", status_code=201)
async def upload_image(request: Request, _: Writer) -> dict[str, Any]:
    """Upload one image as the raw request body (Content-Type image/png, image/jpeg,
    image/webp or image/gif); returns its public URL."""
    return await _store(request)


@router.post("/products/{product_id}/images", status_code=201)
async def upload_product_image(request: Request, product_id: Id, _: Writer) -> dict[str, Any]:
    """Upload an image (raw body, as above) and append its URL to the product."""
    stored = await _store(request)
    product = await _run(_svc(request).attach_image, product_id, stored["url"])
    return {"image": stored, "product": product}
