"""HTTP routes: the public catalog (listing, search, detail, categories, brands, images).

Thin shell: parse and bound the query, call ``raymall.catalog``, answer. The admin routes
live in ``deployments.catalog_admin_routes`` and are included here. The replica's
``CatalogRuntime`` is ``Services.catalog``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse

from deployments import catalog_admin_routes
from deployments.edge import Scope, Send, Shortcut, send_json_body
from deployments.errors import domain_error_json
from deployments.security import public
from deployments.services import Services, services
from raymall.catalog.listing import MAX_PAGE, MAX_PAGE_SIZE
from raymall.catalog.media import CACHE_CONTROL, content_type_of
from raymall.catalog.repository import ProductFilters
from raymall.catalog.runtime import CatalogRuntime
from raymall.errors import NotFound, ValidationFailed
from raymall.faults import to_domain

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
ListSort = Literal["newest", "sales", "price_asc", "price_desc", "rating"]
SearchSort = Literal["relevance", "newest", "sales", "price_asc", "price_desc", "rating"]


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
    cached by the catalog generation (a catalog write shows on the next request); each
    card's ``in_stock`` comes from the availability read model, as in listings, while the
    ``in_stock`` filter may lag stock changes by up to ``RAYMALL_LISTING_CACHE_TTL_S``."""
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
async def image(request: Request, name: Annotated[str, Path(max_length=80)]) -> Response:
    """An uploaded image, from local disk or the object store (``RAYMALL_MEDIA_URL``)."""
    found = await catalog(request).media.load(name)
    if found is None:
        raise NotFound("image not found")
    headers = {"Cache-Control": CACHE_CONTROL}
    if isinstance(found, bytes):
        return Response(found, media_type=content_type_of(name), headers=headers)
    return FileResponse(found, media_type=content_type_of(name), headers=headers)


# ---- the hot reads below FastAPI (``deployments.edge.Shortcut``) -------------------------
_DETAIL = re.compile(r"/products/([1-9][0-9]{0,18})")
_DIGITS = re.compile(r"[1-9][0-9]{0,5}")
_ID = re.compile(r"[1-9][0-9]{0,18}")
LIST_SORTS = ("newest", "sales", "price_asc", "price_desc", "rating")
MAX_ID = 2**63 - 1


async def _answer(scope: Scope, send: Send, route: str, read: Any) -> bool:
    """Send ``await read()`` (JSON text) with 200, or its domain error as the app would."""
    try:
        body = await read()
    except Exception as exc:
        mapped = to_domain(exc)
        if mapped is None:
            raise  # the edge logs it and answers 500 in the one shape
        rid = str(scope.get("state", {}).get("request_id", "-"))
        status, err, headers = domain_error_json(mapped, rid, route)
        extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send_json_body(send, status, err, extra)
        return True
    await send_json_body(send, 200, body.encode())
    return True


class DetailShortcut:
    """``GET /products/{id}`` with no query, answered exactly as ``product_detail``."""

    path = "/products/{product_id}"

    def __init__(self, runtime: CatalogRuntime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, send: Send) -> bool:
        if scope["method"] != "GET" or scope.get("query_string"):
            return False
        found = _DETAIL.fullmatch(scope["path"])
        if found is None or int(found.group(1)) > MAX_ID:
            return False
        product_id = int(found.group(1))

        async def read() -> str:
            doc = await self.runtime.public_detail(product_id)
            return json.dumps(doc, separators=(",", ":"))

        return await _answer(scope, send, self.path, read)


def plain_listing_args(query: bytes) -> tuple[int, int, str, int | None] | None:
    """(page, size, sort, category_id) of a listing whose query names at most those four,
    each once, as plain valid values; None for anything else, which the app then rules on."""
    args: dict[str, str] = {}
    if query:
        try:
            pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return None
        for name, value in pairs:
            if name not in ("page", "size", "sort", "category_id") or name in args:
                return None
            args[name] = value
    page, size, sort = args.get("page", "1"), args.get("size", "20"), args.get("sort", "newest")
    if not (_DIGITS.fullmatch(page) and _DIGITS.fullmatch(size)) or sort not in LIST_SORTS:
        return None
    if int(page) > MAX_PAGE or int(size) > MAX_PAGE_SIZE:
        return None
    category = args.get("category_id")
    if category is not None and not (_ID.fullmatch(category) and int(category) <= MAX_ID):
        return None
    return int(page), int(size), sort, None if category is None else int(category)


class ListingShortcut:
    """``GET /products`` with no filters but a category, answered exactly as ``products``."""

    path = "/products"

    def __init__(self, runtime: CatalogRuntime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, send: Send) -> bool:
        if scope["method"] != "GET" or scope["path"] != "/products":
            return False
        args = plain_listing_args(scope.get("query_string", b""))
        if args is None:
            return False
        page, size, sort, category_id = args
        filters = ProductFilters(category_id=category_id)
        return await _answer(
            scope,
            send,
            self.path,
            lambda: self.runtime.listing(filters, sort=sort, page=page, size=size, cursor=None),
        )


def shortcuts(svc: Services) -> list[Shortcut]:
    """This module's shortcuts for ``deployments.edge.Edge``."""
    return [DetailShortcut(svc.catalog), ListingShortcut(svc.catalog)]
