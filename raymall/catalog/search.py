"""Keyword search over title, description, brand and category names.

The one dialect branch is ``_matches``: MySQL/MariaDB use the FULLTEXT index
``ft_products_search`` on (title, search_text) in boolean mode, every term required as a
word prefix (``+term*``) and ranked by InnoDB's relevance; SQLite, which has no such
index here, scans ``search_text`` with the same rule (every term must start a word) and
ranks in Python: a term hit in the title weighs 3, elsewhere 1. ``search_text`` is kept
normalised (see ``raymall.catalog.text``), so both dialects agree on what matches.

``search_ids``/``keyword_search`` are the reusable entry points (the recommender's hybrid
search calls them): ranked product ids plus the total match count.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.dialects.mysql import match
from sqlalchemy.orm import Session, sessionmaker

from models import Product
from raymall.catalog.listing import (
    MAX_PAGE,
    MAX_PAGE_SIZE,
    SORTS,
    Page,
    sign_cursor,
    verified_cursor,
)
from raymall.catalog.repository import ProductFilters, filter_clauses, product_summaries
from raymall.catalog.text import query_terms, words
from raymall.db import is_mysql
from raymall.errors import ValidationFailed

SEARCH_SORTS = ("relevance", *SORTS)
TITLE_WEIGHT = 3.0
MAX_SEARCH_OFFSET = (MAX_PAGE - 1) * MAX_PAGE_SIZE  # as deep as page numbers reach


@dataclass(frozen=True)
class KeywordHits:
    """Ranked product ids for one window of results; ``total`` counts every match."""

    ids: list[int]
    scores: list[float]
    total: int
    terms: list[str]


def search_ids(
    session: Session,
    query: str,
    filters: ProductFilters | None = None,
    *,
    offset: int = 0,
    limit: int = 20,
    sort: str = "relevance",
) -> KeywordHits:
    """Products matching every searchable term of ``query`` under ``filters``, ordered by
    relevance (ties: newer id first) or by one of the listing sorts."""
    if sort not in SEARCH_SORTS:
        raise ValidationFailed(f"unknown sort '{sort}'", details={"field": "sort"})
    filters = filters or ProductFilters()
    terms = query_terms(query)
    if not terms or limit < 1:
        return KeywordHits([], [], 0, terms)
    if is_mysql(session.get_bind()):  # type: ignore[arg-type]
        return _mysql(session, terms, filters, offset, limit, sort)
    return _scan(session, terms, filters, offset, limit, sort)


async def keyword_search(
    sessions: sessionmaker[Session],
    query: str,
    filters: ProductFilters | None = None,
    *,
    offset: int = 0,
    limit: int = 20,
    sort: str = "relevance",
) -> KeywordHits:
    """``search_ids`` off the event loop, in its own session."""

    def run() -> KeywordHits:
        with sessions() as session:
            return search_ids(session, query, filters, offset=offset, limit=limit, sort=sort)

    return await asyncio.to_thread(run)


def _order(sort: str) -> tuple[Any, ...]:
    key, desc = SORTS[sort]
    return (key.desc(), Product.id.desc()) if desc else (key.asc(), Product.id.asc())


def _mysql(
    session: Session, terms: list[str], f: ProductFilters, offset: int, limit: int, sort: str
) -> KeywordHits:
    against = " ".join(f"+{t}*" for t in terms)
    cols = (Product.__table__.c.title, Product.__table__.c.search_text)
    score = match(*cols, against=against).in_boolean_mode()
    clauses: list[ColumnElement[bool]] = [score, *filter_clauses(f)]  # type: ignore[list-item]
    total = int(session.scalar(select(func.count()).select_from(Product).where(*clauses)) or 0)
    order = (score.desc(), Product.id.desc()) if sort == "relevance" else _order(sort)
    rows = session.execute(
        select(Product.id, score.label("score"))
        .where(*clauses)
        .order_by(*order)
        .offset(offset)
        .limit(limit)
    ).all()
    return KeywordHits([int(r[0]) for r in rows], [float(r[1]) for r in rows], total, terms)


def _scan(
    session: Session, terms: list[str], f: ProductFilters, offset: int, limit: int, sort: str
) -> KeywordHits:
    text = literal(" ").concat(Product.search_text)
    clauses = [text.like(f"% {t}%") for t in terms] + filter_clauses(f)
    key, desc = SORTS["newest" if sort == "relevance" else sort]
    rows = session.execute(
        select(Product.id, Product.title, Product.search_text, key).where(*clauses)
    ).all()
    scored: list[tuple[float, int, int]] = []
    for pid, title, search_text, sort_value in rows:
        title_words, text_words = words(title), str(search_text).split()
        score = sum(
            TITLE_WEIGHT * sum(w.startswith(t) for w in title_words)
            + sum(w.startswith(t) for w in text_words)
            for t in terms
        )
        scored.append((score, int(sort_value), int(pid)))
    if sort == "relevance":
        scored.sort(key=lambda r: (r[0], r[2]), reverse=True)
    else:
        scored.sort(key=lambda r: (r[1], r[2]), reverse=desc)
    window = scored[offset : offset + limit]
    return KeywordHits([r[2] for r in window], [r[0] for r in window], len(scored), terms)


def _query_tag(query: str, sort: str) -> str:
    return hashlib.blake2b(
        f"{sort}|{' '.join(query_terms(query))}".encode(), digest_size=6
    ).hexdigest()


def search_products(
    session: Session,
    query: str,
    filters: ProductFilters,
    *,
    sort: str = "relevance",
    page: int = 1,
    size: int = 20,
    cursor: str | None = None,
    cursor_key: bytes,
) -> Page:
    """One page of search results as listing summaries. A search cursor is an opaque
    position in the ranked results, bound to the query and sort it came from and signed
    with ``cursor_key`` (a server secret), so its offset is one this server handed out,
    and never past what page numbers can reach."""
    if not 1 <= size <= MAX_PAGE_SIZE or not 1 <= page <= MAX_PAGE:
        raise ValidationFailed("page or size out of range", details={"field": "size"})
    tag = _query_tag(query, sort)
    offset = (page - 1) * size
    if cursor is not None:
        data = verified_cursor(cursor, cursor_key)
        pos = data.get("o")
        if (
            data.get("t") != tag
            or not isinstance(pos, int)
            or isinstance(pos, bool)
            or not 0 <= pos <= MAX_SEARCH_OFFSET
        ):
            raise ValidationFailed(
                "cursor does not belong to this query", details={"field": "cursor"}
            )
        offset = pos
    hits = search_ids(session, query, filters, offset=offset, limit=size, sort=sort)
    end = offset + len(hits.ids)
    more = end < hits.total and end <= MAX_SEARCH_OFFSET
    next_cursor = sign_cursor({"t": tag, "o": end}, cursor_key) if more else None
    return Page(
        items=product_summaries(session, hits.ids),
        total=hits.total,
        page=None if cursor is not None else page,
        size=size,
        next_cursor=next_cursor,
    )
