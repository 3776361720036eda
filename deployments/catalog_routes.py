"""HTTP routes: the public catalog (listing, search, detail, categories, brands, images).

Thin shell: parse and bound the query, call ``raymall.catalog``, answer. The admin routes
live in ``deployments.catalog_admin_routes`` and are included here. The replica's
``CatalogRuntime`` is ``Services.catalog``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse

from deployments import catalog_admin_routes
from deployments.security import public
from deployments.services import services
from raymall.catalog.listing import MAX_PAGE, MAX_PAGE_SIZE
from raymall.catalog.media import CONTENT_TYPES
from raymall.catalog.repository import ProductFilters
from raymall.catalog.runtime import CatalogRuntime
from raymall.errors import NotFound, ValidationFailed

router = APIRouter(tags=["catalog"])
router.include_router(catalog_admin_routes.router)

for _path in (
    "/products",
    "/products/search",
    "/products/{product_id}",
    "/categories",
    "/brands",
    "/media/images/{name}",
):
    public("GET", _path)

ProductId = Annotated[int, Path(ge=1, le=2**63 - 1)]
OptId = Annotated[int | None, Query(ge=1, le=2**63 - 1)]
Cents = Annotated[int | None, Query(ge=0, le=100_000_000_00)]
PageNo = Annotated[int, Query(ge=1, le=MAX_PAGE)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=512)]
ListSort = Literal["newest", "sales", "price_asc", "price_desc"]
SearchSort = Literal["relevance", "newest", "sales", "price_asc", "price_desc"]


def catalog(request: Request) -> CatalogRuntime:
    return services(request).catalog


def make_filters(
    category_id: int | None,
    brand_id: int | None,
    min_price_cents: int | None,
    max_price_cents: int | None,
    in_stock: bool,
    statuses: tuple[str, ...] = ("published",),
) -> ProductFilters:
    if (
        min_price_cents is not None
        and max_price_cents is not None
        and min_price_cents > max_price_cents
    ):
        raise ValidationFailed(
            "min_price_cents must not exceed max_price_cents", details={"field": "min_price_cents"}
        )
    return ProductFilters(
        category_id=category_id,
        brand_id=brand_id,
        min_price_cents=min_price_cents,
        max_price_cents=max_price_cents,
        in_stock=in_stock,
        statuses=statuses,
    )


@router.get("/products", response_class=Response)
async def products(
    request: Request,
    category_id: OptId = None,
    brand_id: OptId = None,
    min_price_cents: Cents = None,
    max_price_cents: Cents = None,
    in_stock: bool = False,
    sort: ListSort = "newest",
    page: PageNo = 1,
    size: PageSize = 20,
    cursor: Cursor = None,
) -> Response:
    """Published products. ``category_id`` includes its descendants; ``cursor`` (from
    ``next_cursor``) continues a listing without offsets. Pages are cached in Redis
    (``RAYMALL_LISTING_CACHE_TTL_S``, 30 s); a catalog write invalidates them at once,
    while the ``in_stock`` filter may lag stock changes by up to that long."""
    f = make_filters(category_id, brand_id, min_price_cents, max_price_cents, in_stock)
    body = await catalog(request).listing(f, sort=sort, page=page, size=size, cursor=cursor)
    return Response(body, media_type="application/json")


@router.get("/products/search", response_class=Response)
async def search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    category_id: OptId = None,
    brand_id: OptId = None,
    min_price_cents: Cents = None,
    max_price_cents: Cents = None,
    in_stock: bool = False,
    sort: SearchSort = "relevance",
    page: PageNo = 1,
    size: PageSize = 20,
    cursor: Cursor = None,
) -> Response:
    """Keyword search over title, description, brand and category names; every word of
    ``q`` (3+ letters, stopwords ignored) must match the start of a word. Answers are
    cached by the catalog generation (a catalog write shows on the next request), while
    the ``in_stock`` flags and filter may lag stock changes by up to
    ``RAYMALL_LISTING_CACHE_TTL_S``, as in listings."""
    f = make_filters(category_id, brand_id, min_price_cents, max_price_cents, in_stock)
    body = await catalog(request).search(q, f, sort=sort, page=page, size=size, cursor=cursor)
    return Response(body, media_type="application/json")


@router.get("/products/{product_id}", response_class=Response)
async def product_detail(request: Request, product_id: ProductId) -> Response:
    """A published product with its SKUs and live availability per SKU. (The hot read
    path: the document is already plain JSON types, so it is serialised directly.)"""
    doc = await catalog(request).public_detail(product_id)
    return Response(json.dumps(doc, separators=(",", ":")), media_type="application/json")


@router.get("/categories")
async def categories(request: Request) -> dict[str, Any]:
    return {"items": await catalog(request).categories()}


@router.get("/brands")
async def brands(request: Request) -> dict[str, Any]:
    return {"items": await catalog(request).brands()}


@router.get("/media/images/{name}")
async def image(request: Request, name: Annotated[str, Path(max_length=80)]) -> FileResponse:
    path = catalog(request).media.path_for(name)
    if path is None:
        raise NotFound("image not found")
    return FileResponse(
        path,
        media_type=CONTENT_TYPES[path.suffix.lstrip(".")],
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
