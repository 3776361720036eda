"""Reviews in the database: the review row, the product's rating counters, the outbox.

Guarantees (tests/integration/test_reviews_repository.py, on SQLite and MySQL):

- a review and the change it makes to its product's rating commit in one transaction
  (``create``; ``set_hidden``), with the outbox event announcing it;
- the rating counters move only by guarded UPDATEs computed in SQL from the row's
  current values (``rating_x100`` first, from the old count and sum, so MySQL's left to
  right SET and SQLite's all-old-values SET agree), never read, changed and written back
  by the application: concurrent reviews of one product all count;
- one review per order line: the unique ``order_item_id`` refuses a second
  (``AlreadyReviewed``), whoever wins a race;
- hiding and showing are compare-and-set on ``hidden``: a repeat changes nothing and the
  counters move once per real change; the counters hold exactly the visible reviews;
- the public list is newest first (``created_ms``, then id), hidden reviews excluded,
  paged by keys: a cursor names the last review shown.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, or_, select, true, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import BigInteger

from models import Order, OrderItem, OutboxEvent, Product, Review, User
from raymall.catalog.listing import INT64_MAX, decode_cursor, encode_cursor
from raymall.errors import NotFound, ReviewNotFound, ValidationFailed
from raymall.reviews.rules import LineFacts, public_rating

CREATED_TOPIC = "review.created"
HIDDEN_TOPIC = "review.hidden"
SHOWN_TOPIC = "review.shown"


class int_div(FunctionElement[int]):  # noqa: N801 (a SQL function's name)
    """Integer division of two non-negative integer expressions (``DIV`` on MySQL)."""

    type = BigInteger()
    inherit_cache = True


@compiles(int_div)
def _int_div(element: int_div, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = list(element.clauses)
    return f"(({compiler.process(a, **kw)}) / ({compiler.process(b, **kw)}))"


@compiles(int_div, "mysql")
@compiles(int_div, "mariadb")
def _int_div_mysql(element: int_div, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = list(element.clauses)
    return f"(({compiler.process(a, **kw)}) DIV ({compiler.process(b, **kw)}))"


def _x100(count: ColumnElement[int], total: ColumnElement[int]) -> ColumnElement[int]:
    """``rules.average_x100`` in SQL, for a count known to be positive."""
    return int_div(total * 200 + count, count * 2)  # type: ignore[return-value]


def add_rating(session: Session, product_id: int, rating: int) -> None:
    """Count one more visible rating on the product."""
    count, total = Product.rating_count + 1, Product.rating_sum + rating
    done = session.execute(
        update(Product)
        .where(Product.id == product_id)
        .ordered_values(
            (Product.rating_x100, _x100(count, total)),
            (Product.rating_count, count),
            (Product.rating_sum, total),
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound(f"product {product_id} not found")


def remove_rating(session: Session, product_id: int, rating: int) -> None:
    """Count one visible rating fewer; refused (nothing changes) if it was not counted."""
    count, total = Product.rating_count - 1, Product.rating_sum - rating
    done = session.execute(
        update(Product)
        .where(
            Product.id == product_id,
            Product.rating_count >= 1,
            Product.rating_sum >= rating,
        )
        .ordered_values(
            (Product.rating_x100, case((Product.rating_count == 1, 0), else_=_x100(count, total))),
            (Product.rating_count, count),
            (Product.rating_sum, total),
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise RuntimeError(f"product {product_id}'s rating does not count this review")


def order_line(
    session: Session, order_id: int, order_item_id: int
) -> tuple[LineFacts | None, OrderItem | None]:
    """What ``rules.check_reviewable`` needs about an order line (None: no such order),
    and the line when it belongs to the order."""
    order = session.get(Order, order_id, populate_existing=True)
    if order is None:
        return None, None
    item = session.get(OrderItem, order_item_id)
    if item is not None and int(item.order_id) != int(order.id):
        item = None
    return LineFacts(int(order.user_id), str(order.status), item is not None), item


def emit(session: Session, topic: str, review: Review, **extra: Any) -> None:
    payload = {
        "review_id": int(review.id),
        "product_id": int(review.product_id),
        "order_id": str(review.order_id),
        "user_id": int(review.user_id),
        "rating": int(review.rating),
        **extra,
    }
    session.add(
        OutboxEvent(
            event_id=uuid.uuid4().hex,
            topic=topic,
            aggregate_id=str(review.id),
            payload=payload,
            created_ms=int(review.updated_ms),
        )
    )


def review_view(review: Review, author: str | None = None) -> dict[str, Any]:
    view = {
        "id": int(review.id),
        "product_id": int(review.product_id),
        "sku_id": int(review.sku_id),
        "rating": int(review.rating),
        "text": review.text,
        "images": list(review.images or []),
        "created_ms": int(review.created_ms),
    }
    if author is not None:
        view["author"] = author
    return view


def admin_view(review: Review) -> dict[str, Any]:
    return {
        **review_view(review),
        "order_id": str(review.order_id),
        "order_item_id": int(review.order_item_id),
        "user_id": int(review.user_id),
        "hidden": bool(review.hidden),
        "updated_ms": int(review.updated_ms),
    }


@dataclass(frozen=True)
class ReviewPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    rating: dict[str, object]

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor, **self.rating}


def _after(cursor: str) -> ColumnElement[bool]:
    data = decode_cursor(cursor)
    created, last = data.get("c"), data.get("i")
    for v in (created, last):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= INT64_MAX:
            raise ValidationFailed("cursor is not valid", details={"field": "cursor"})
    return or_(Review.created_ms < created, and_(Review.created_ms == created, Review.id < last))


def list_reviews(
    session: Session, product_id: int, *, limit: int, cursor: str | None
) -> ReviewPage:
    """A published product's visible reviews, newest first; 404 for any other product."""
    product = session.execute(
        select(Product.status, Product.rating_count, Product.rating_x100).where(
            Product.id == product_id
        )
    ).first()
    if product is None or product.status != "published":
        raise NotFound(f"product {product_id} not found")
    stmt = (
        select(Review, User.display_name, User.username)
        .join(User, User.id == Review.user_id)
        .where(Review.product_id == product_id, Review.hidden == false())
        .order_by(Review.created_ms.desc(), Review.id.desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        stmt = stmt.where(_after(cursor))
    rows = session.execute(stmt).all()
    more = len(rows) > limit
    rows = rows[:limit]
    items = [review_view(r, display or username) for r, display, username in rows]
    next_cursor = None
    if more and rows:
        last = rows[-1][0]
        next_cursor = encode_cursor({"c": int(last.created_ms), "i": int(last.id)})
    rating = public_rating(int(product.rating_count), int(product.rating_x100))
    return ReviewPage(items, next_cursor, rating)


def get_review(session: Session, review_id: int) -> Review:
    review = session.get(Review, review_id, populate_existing=True)
    if review is None:
        raise ReviewNotFound(f"review {review_id} not found")
    return review


def set_hidden(session: Session, review_id: int, hidden: bool, now: int) -> tuple[Review, bool]:
    """Hide or show a review (compare-and-set on ``hidden``); the product's counters move
    in the same transaction only when the flag really changed. Returns (review, changed)."""
    review = get_review(session, review_id)
    changed = session.execute(
        update(Review)
        .where(Review.id == review_id, Review.hidden == (false() if hidden else true()))
        .values(hidden=hidden, updated_ms=now)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if changed:
        if hidden:
            remove_rating(session, int(review.product_id), int(review.rating))
        else:
            add_rating(session, int(review.product_id), int(review.rating))
    session.expire(review)
    return get_review(session, review_id), bool(changed)
