"""HTTP routes: reviews from verified buyers, a product's reviews, and their moderation.

Buyers (``reviews:write``): ``POST /orders/{order_id}/items/{item_id}/review`` (``item_id``:
the order line's ``id`` in ``GET /orders/{id}``), or ``POST /reviews`` naming
``order_id`` and ``order_item_id`` in the body. Rating 1-5, text up to 2,000 characters,
up to 9 image URLs. 403 ``not_verified_buyer`` when the caller did not buy the line, 409
``order_not_received`` before delivery, 409 ``already_reviewed`` for a second review.

Everyone: ``GET /products/{product_id}/reviews`` (visible reviews, newest first, keyset
pages, with the product's ``rating_count`` and ``rating_average``).

Admins (``reviews:moderate``): ``GET /admin/reviews/{id}``, ``POST /admin/reviews/{id}/hide``
and ``/show`` (idempotent; the product's rating follows).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from deployments.security import Principal, public, require
from deployments.services import services
from raymall.reviews.schemas import ReviewIn, ReviewOfLineIn
from raymall.reviews.service import ReviewService

router = APIRouter(tags=["reviews"])
public("GET", "/products/{product_id}/reviews")

MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=200)]
Writer = Annotated[Principal, Depends(require("reviews", "write"))]
Moderator = Annotated[Principal, Depends(require("reviews", "moderate"))]


def _svc(request: Request) -> ReviewService:
    return services(request).reviews


@router.post("/orders/{order_id}/items/{item_id}/review", status_code=201)
async def review_line(
    request: Request, order_id: Id, item_id: Id, body: ReviewIn, me: Writer
) -> dict[str, Any]:
    return await _svc(request).create(me.user_id, order_id, item_id, body)


@router.post("/reviews", status_code=201)
async def review(request: Request, body: ReviewOfLineIn, me: Writer) -> dict[str, Any]:
    line = ReviewIn(rating=body.rating, text=body.text, images=list(body.images))
    return await _svc(request).create(me.user_id, int(body.order_id), body.order_item_id, line)


@router.get("/products/{product_id}/reviews")
async def product_reviews(
    request: Request, product_id: Id, limit: Limit = 20, cursor: Cursor = None
) -> dict[str, Any]:
    """A published product's visible reviews, newest first; ``cursor`` is the
    ``next_cursor`` of the previous page."""
    return await _svc(request).list(product_id, limit, cursor)


@router.get("/admin/reviews/{review_id}", tags=["admin"])
async def any_review(request: Request, review_id: Id, _: Moderator) -> dict[str, Any]:
    return await _svc(request).get(review_id)


@router.post("/admin/reviews/{review_id}/hide", tags=["admin"])
async def hide(request: Request, review_id: Id, admin: Moderator) -> dict[str, Any]:
    return await _svc(request).set_hidden(review_id, True, admin.user_id)


@router.post("/admin/reviews/{review_id}/show", tags=["admin"])
async def show(request: Request, review_id: Id, admin: Moderator) -> dict[str, Any]:
    return await _svc(request).set_hidden(review_id, False, admin.user_id)
