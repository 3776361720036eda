"""The review service a replica's routes call: write a review, hide or show it, list a
product's reviews. Each write is one transaction (``raymall.reviews.repository``); after
it commits, the product's cached document, listing pages and search answers are
invalidated (``products``: the catalog, ``CatalogRuntime.invalidate_sync``), so its new
rating shows on the next read on every replica."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import Review
from raymall.catalog.media import ImageStore
from raymall.db import transaction
from raymall.errors import AlreadyReviewed, ValidationFailed
from raymall.ids import now_ms
from raymall.reviews import repository as repo
from raymall.reviews.rules import check_reviewable
from raymall.reviews.schemas import ReviewIn

T = TypeVar("T")


class ProductCaches(Protocol):
    def invalidate_sync(self, product_ids: Sequence[int]) -> None:
        """Drop what caches hold of these products (called after a commit, in a thread)."""


class NoCaches:
    def invalidate_sync(self, product_ids: Sequence[int]) -> None:
        return None


class ReviewService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        media: ImageStore | None = None,
        products: ProductCaches | None = None,
    ) -> None:
        self.sessions = sessions
        self.media = media
        self.products: ProductCaches = products or NoCaches()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    # ---- writes ---------------------------------------------------------------------
    def create_sync(
        self, user_id: int, order_id: int, order_item_id: int, body: ReviewIn
    ) -> dict[str, Any]:
        """The caller's review of one line of their received order (once per line)."""
        for url in body.images:
            if self.media is not None and not self.media.url_is_stored(url):
                raise ValidationFailed(f"image {url} was not uploaded", details={"field": "images"})
        try:
            with transaction(self.sessions) as s:
                facts, item = repo.order_line(s, order_id, order_item_id)
                check_reviewable(user_id, facts)
                assert item is not None  # check_reviewable saw the line in the order
                if s.scalar(select(Review.id).where(Review.order_item_id == order_item_id)):
                    raise AlreadyReviewed("this order line is reviewed already")
                now = now_ms()
                review = Review(
                    product_id=int(item.product_id),
                    sku_id=int(item.sku_id),
                    order_id=order_id,
                    order_item_id=order_item_id,
                    user_id=user_id,
                    rating=body.rating,
                    text=body.text,
                    images=list(body.images),
                    hidden=False,
                    created_ms=now,
                    updated_ms=now,
                )
                s.add(review)
                s.flush()  # a racing review of the same line fails here (unique line)
                repo.add_rating(s, int(item.product_id), body.rating)
                repo.emit(s, repo.CREATED_TOPIC, review, sku_id=int(item.sku_id))
                view = repo.admin_view(review)
        except IntegrityError as exc:
            raise AlreadyReviewed("this order line is reviewed already") from exc
        self.products.invalidate_sync([view["product_id"]])
        return view

    async def create(
        self, user_id: int, order_id: int, order_item_id: int, body: ReviewIn
    ) -> dict[str, Any]:
        return await self._run(self.create_sync, user_id, order_id, order_item_id, body)

    def set_hidden_sync(self, review_id: int, hidden: bool, actor_id: int) -> dict[str, Any]:
        """Hide or show a review (idempotent); its product's rating follows."""
        with transaction(self.sessions) as s:
            review, changed = repo.set_hidden(s, review_id, hidden, now_ms())
            if changed:
                topic = repo.HIDDEN_TOPIC if hidden else repo.SHOWN_TOPIC
                repo.emit(s, topic, review, actor_id=actor_id)
            view = repo.admin_view(review)
        if changed:
            self.products.invalidate_sync([view["product_id"]])
        return view

    async def set_hidden(self, review_id: int, hidden: bool, actor_id: int) -> dict[str, Any]:
        return await self._run(self.set_hidden_sync, review_id, hidden, actor_id)

    # ---- reads ----------------------------------------------------------------------
    def list_sync(self, product_id: int, limit: int, cursor: str | None) -> dict[str, Any]:
        with self.sessions() as s:
            return repo.list_reviews(s, product_id, limit=limit, cursor=cursor).to_dict()

    async def list(self, product_id: int, limit: int, cursor: str | None) -> dict[str, Any]:
        return await self._run(self.list_sync, product_id, limit, cursor)

    def get_sync(self, review_id: int) -> dict[str, Any]:
        with self.sessions() as s:
            return repo.admin_view(repo.get_review(s, review_id))

    async def get(self, review_id: int) -> dict[str, Any]:
        return await self._run(self.get_sync, review_id)
