"""HTTP routes: similar products, recommendations and semantic search.

Thin shell over ``recommend.service.RecommendService`` (``Services.recommend``), which
calls the ``Recommender`` actor; with the recommender on, the replica's copy of the index
answers similar-product reads.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from deployments.edge import Scope, Send, Shortcut, send_json_body
from deployments.security import PUBLIC_ROUTES, Principal, current_user, optional_user, public
from deployments.services import Services, services
from raymall.errors import ValidationFailed
from recommend.service import RecommendService

router = APIRouter(tags=["recommendations"])
SIMILAR_PATH = "/products/{product_id}/similar"
public("GET", SIMILAR_PATH)
public("GET", "/search")

ProductId = Annotated[int, Path(ge=1, le=2**63 - 1)]
K = Annotated[int, Query(ge=1, le=50)]


def service(request: Request) -> RecommendService:
    return services(request).recommend


@router.get(SIMILAR_PATH, response_class=Response)
async def similar_products(
    request: Request,
    product_id: ProductId,
    k: K = 10,
    in_stock_only: bool = False,
    principal: Principal | None = Depends(optional_user),
) -> Response:
    """The k published products most like this one (never itself), closest first. A
    signed-in caller's view of the product is recorded for their recommendations. (A hot
    read path: the cards are plain JSON types, so the body is serialised directly.)"""
    svc = service(request)
    items = await svc.similar_json(product_id, k, in_stock_only)
    if principal is not None:
        await svc.record_view(principal.user_id, product_id)
    body = similar_body(product_id, k, in_stock_only, items)
    return Response(body, media_type="application/json")


def similar_body(product_id: int, k: int, in_stock_only: bool, items_json: str) -> bytes:
    """``{"product_id", "k", "in_stock_only", "items"}`` as compact JSON, around the items'
    own JSON array (``RecommendService.similar_json``)."""
    flag = "true" if in_stock_only else "false"
    head = f'{{"product_id":{product_id},"k":{k},"in_stock_only":{flag},"items":'
    return (head + items_json + "}").encode()


_SIMILAR = re.compile(r"/products/([1-9][0-9]{0,18})/similar")
_K_VALUE = re.compile(rb"[1-9][0-9]?")
_FLAGS = {b"true": True, b"false": False, b"1": True, b"0": False}


def plain_similar_args(scope: Scope) -> tuple[int, int, bool] | None:
    """(product_id, k, in_stock_only) of an anonymous similar-product read whose every
    part is in its plainest valid form; None for anything else (a token, an unknown,
    repeated or encoded parameter, an out-of-range value), which the app then rules on."""
    if scope["method"] != "GET":
        return None
    found = _SIMILAR.fullmatch(scope["path"])
    if found is None:
        return None
    product_id = int(found.group(1))
    if product_id > 2**63 - 1:
        return None
    for name, _ in scope["headers"]:
        if name == b"authorization":
            return None
    k, in_stock_only = 10, False
    query = scope.get("query_string", b"")
    if query:
        seen = set()
        for part in query.split(b"&"):
            name, sep, value = part.partition(b"=")
            if not sep or name in seen:
                return None
            seen.add(name)
            if name == b"k" and _K_VALUE.fullmatch(value) and int(value) <= 50:
                k = int(value)
            elif name == b"in_stock_only" and value in _FLAGS:
                in_stock_only = _FLAGS[value]
            else:
                return None
    return product_id, k, in_stock_only


class SimilarShortcut:
    """The similar-product read below FastAPI (``deployments.edge.Shortcut``), for
    requests ``plain_similar_args`` accepts: the same service call and the same body as
    ``similar_products``. A failed read is declined and the app answers it (running the
    read again) in the one error shape."""

    path = SIMILAR_PATH

    def __init__(self, svc: RecommendService) -> None:
        if ("GET", SIMILAR_PATH) not in PUBLIC_ROUTES:
            raise RuntimeError(f"{SIMILAR_PATH} must be public to be answered below the app")
        self.svc = svc

    async def __call__(self, scope: Scope, send: Send) -> bool:
        args = plain_similar_args(scope)
        if args is None:
            return False
        try:
            items = await self.svc.similar_json(*args)
        except Exception:
            return False
        await send_json_body(send, 200, similar_body(*args, items))
        return True


def shortcuts(svc: Services) -> list[Shortcut]:
    """This module's shortcuts for ``deployments.edge.Edge``."""
    return [SimilarShortcut(svc.recommend)]


class ViewIn(BaseModel):
    product_id: int = Field(ge=1, le=2**63 - 1)


@router.post("/me/views", status_code=204)
async def record_view(
    request: Request, body: ViewIn, principal: Principal = Depends(current_user)
) -> Response:
    """Record that the caller looked at a product (feeds ``/recommendations/me``)."""
    await service(request).record_view(principal.user_id, body.product_id)
    return Response(status_code=204)


@router.get("/recommendations/me")
async def my_recommendations(
    request: Request, k: K = 10, principal: Principal = Depends(current_user)
) -> dict[str, Any]:
    """Picks for the caller from what they ordered, carted and viewed, recent things
    weighing more; best sellers when there is no history yet."""
    result = await service(request).for_user(principal.user_id, k)
    return {"user_id": principal.user_id, "k": k, **result}


@router.get("/search")
async def search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    mode: Literal["semantic", "keyword", "hybrid"] = "hybrid",
    page: Annotated[int, Query(ge=1, le=1_000)] = 1,
    size: Annotated[int, Query(ge=1, le=50)] = 20,
) -> dict[str, Any]:
    """Product search. ``semantic`` matches meaning (the query is embedded), ``keyword``
    matches words, ``hybrid`` fuses both rankings with reciprocal rank fusion (k=60).
    While semantic search is unavailable (the recommender or Milvus down), every mode is
    answered by keyword: ``mode`` is then ``keyword`` and ``requested_mode`` the one asked
    for. Rankings are cached by the catalog generation: a catalog change shows on the
    next request."""
    query = " ".join(q.split())
    if not query:
        raise ValidationFailed("q must contain a word", details={"field": "q"})
    result = await service(request).search(query, mode, page, size)
    return {
        "query": query,
        "mode": result.mode,
        "requested_mode": mode,
        "modes_used": result.modes,
        "page": page,
        "size": size,
        "total": result.total,
        "has_more": result.has_more,
        "items": result.items,
    }
