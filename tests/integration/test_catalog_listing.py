"""Listing and keyword search over the demo catalog, on SQLite and on MariaDB: every page
and every cursor walk returns exactly the products a plain-Python model of the filters
selects, in the model's order, with the model's total."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models import Brand, Category, Inventory, Product, Sku
from raymall.catalog.listing import (
    SORTS,
    decode_cursor,
    encode_cursor,
    list_products,
    sign_cursor,
)
from raymall.catalog.repository import ProductFilters
from raymall.catalog.search import keyword_search, search_ids, search_products
from raymall.catalog.text import query_terms
from raymall.db import make_engine, session_factory
from raymall.errors import ValidationFailed
from raymall.launcher.seed import seed_demo
from raymall.reviews.repository import add_rating
from raymall.settings import Settings
from tests.conftest import SERVER_DB, make_mysql_database

KEY = b"search-cursor-test-key-0123456789"


@dataclass
class Row:
    id: int
    status: str
    category_id: int
    brand_id: int | None
    min_price: int
    created_ms: int
    sales: int
    rating: int
    search_text: str
    prices: list[int]
    available: list[int]


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def demo_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sessionmaker[Session]]:
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('listing') / 'catalog.db'}"
    else:
        if not SERVER_DB:
            pytest.skip("RAYMALL_TEST_DATABASE_URL not set")
        url, drop = make_mysql_database(SERVER_DB)
    var_dir: Path = tmp_path_factory.mktemp("var")
    settings = Settings(database_url=url, var_dir=var_dir, env="test")
    seed_demo(settings)
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions.begin() as s:  # a few non-published products the public must never see
        ids = s.scalars(select(Product.id).order_by(Product.id.desc()).limit(6)).all()
        for pid in ids[:3]:
            s.get(Product, pid).status = "unpublished"  # type: ignore[union-attr]
        for pid in ids[3:]:
            s.get(Product, pid).status = "draft"  # type: ignore[union-attr]
        # ratings (through the reviews' guarded UPDATE), with ties, for sort=rating
        rated = s.scalars(select(Product.id).order_by(Product.id).limit(40)).all()
        for n, pid in enumerate(rated):
            for stars in (1 + n % 5, 1 + n % 3, 5)[: 1 + n % 3]:
                add_rating(s, pid, stars)
    yield sessions
    engine.dispose()
    if drop:
        drop()


def model_rows(s: Session) -> tuple[list[Row], dict[int, int | None]]:
    skus: dict[int, list[tuple[int, int]]] = {}
    for sku, avail in s.execute(
        select(Sku, Inventory.available).join(Inventory, Inventory.sku_id == Sku.id)
    ):
        skus.setdefault(sku.product_id, []).append((sku.price_cents, avail))
    rows = [
        Row(
            p.id,
            p.status,
            p.category_id,
            p.brand_id,
            p.min_price_cents,
            p.created_ms,
            p.sales_count,
            p.rating_x100,
            p.search_text,
            [x[0] for x in skus.get(p.id, [])],
            [x[1] for x in skus.get(p.id, [])],
        )
        for p in s.scalars(select(Product))
    ]
    parents = {c.id: c.parent_id for c in s.scalars(select(Category))}
    return rows, parents


def under(cat: int, root: int, parents: dict[int, int | None]) -> bool:
    node: int | None = cat
    while node is not None:
        if node == root:
            return True
        node = parents[node]
    return False


def expected(rows: list[Row], parents: dict[int, int | None], f: ProductFilters) -> list[Row]:
    out = []
    for r in rows:
        if r.status not in f.statuses:
            continue
        if f.category_id is not None and not under(r.category_id, f.category_id, parents):
            continue
        if f.brand_id is not None and r.brand_id != f.brand_id:
            continue
        lo, hi = f.min_price_cents, f.max_price_cents
        if (lo is not None or hi is not None) and not any(
            (lo is None or p >= lo) and (hi is None or p <= hi) for p in r.prices
        ):
            continue
        if f.in_stock and not any(a > 0 for a in r.available):
            continue
        out.append(r)
    return out


def ordered(rows: list[Row], sort: str) -> list[int]:
    key = {
        "newest": lambda r: (r.created_ms, r.id),
        "sales": lambda r: (r.sales, r.id),
        "rating": lambda r: (r.rating, r.id),
        "price_asc": lambda r: (r.min_price, r.id),
        "price_desc": lambda r: (r.min_price, r.id),
    }[sort]
    return [r.id for r in sorted(rows, key=key, reverse=SORTS[sort][1])]


def filter_cases(s: Session) -> list[ProductFilters]:
    root = s.scalar(select(Category.id).where(Category.slug == "home-kitchen"))
    leaf = s.scalar(select(Category.id).where(Category.slug == "running-shoes"))
    brand = s.scalar(select(Brand.id).where(Brand.slug == "pixelpoint"))
    return [
        ProductFilters(),
        ProductFilters(category_id=root),
        ProductFilters(category_id=leaf),
        ProductFilters(brand_id=brand),
        ProductFilters(min_price_cents=2_000, max_price_cents=6_000),
        ProductFilters(min_price_cents=10_000),
        ProductFilters(in_stock=True),
        ProductFilters(category_id=root, in_stock=True, max_price_cents=5_000),
        ProductFilters(brand_id=brand, in_stock=True, min_price_cents=1_500),
        ProductFilters(statuses=("draft", "unpublished")),
        ProductFilters(category_id=999_999_999),
    ]


def walk_pages(s: Session, f: ProductFilters, sort: str, size: int) -> tuple[list[int], int]:
    first = list_products(s, f, sort=sort, page=1, size=size)
    ids = [i["id"] for i in first.items]
    for page in range(2, math.ceil(first.total / size) + 1):
        nxt = list_products(s, f, sort=sort, page=page, size=size)
        assert nxt.total == first.total
        ids += [i["id"] for i in nxt.items]
    assert list_products(s, f, sort=sort, page=1000, size=size).items == []
    return ids, first.total


def walk_cursor(s: Session, f: ProductFilters, sort: str, size: int) -> list[int]:
    page = list_products(s, f, sort=sort, size=size)
    ids = [i["id"] for i in page.items]
    while page.next_cursor:
        page = list_products(s, f, sort=sort, size=size, cursor=page.next_cursor)
        assert 0 < len(page.items) <= size
        ids += [i["id"] for i in page.items]
    return ids


def test_listing_pages_cursors_and_totals_match_the_model_under_every_filter(
    demo_db: sessionmaker[Session],
) -> None:
    with demo_db() as s:
        rows, parents = model_rows(s)
        for f in filter_cases(s):
            want = expected(rows, parents, f)
            for sort in SORTS:
                want_ids = ordered(want, sort)
                got, total = walk_pages(s, f, sort, size=37)
                assert total == len(want), (f, sort)
                assert got == want_ids, (f, sort)
                assert walk_cursor(s, f, sort, size=50) == want_ids, (f, sort)


def test_listing_items_are_summaries_with_stock_flags(demo_db: sessionmaker[Session]) -> None:
    with demo_db() as s:
        page = list_products(s, ProductFilters(), sort="price_asc", size=100)
        rows, _ = model_rows(s)
        by_id = {r.id: r for r in rows}
        for item in page.items:
            r = by_id[item["id"]]
            assert item["status"] == "published"
            assert item["min_price_cents"] == min(r.prices)
            assert item["in_stock"] == any(a > 0 for a in r.available)
            assert item["brand"]["name"]


def test_listing_refuses_bad_arguments(demo_db: sessionmaker[Session]) -> None:
    with demo_db() as s:
        for kwargs in (
            {"sort": "cheapest"},
            {"page": 0},
            {"size": 101},
            {"size": 0},
            {"cursor": "not-a-cursor"},
        ):
            with pytest.raises(ValidationFailed):
                list_products(s, ProductFilters(), **kwargs)  # type: ignore[arg-type]
        cursor = list_products(s, ProductFilters(), sort="sales", size=5).next_cursor
        with pytest.raises(ValidationFailed):  # a cursor is bound to its sort
            list_products(s, ProductFilters(), sort="newest", cursor=cursor)


def test_a_forged_listing_cursor_outside_64_bits_is_refused(
    demo_db: sessionmaker[Session],
) -> None:
    with demo_db() as s:
        for value, last_id in ((2**63, 1), (-(2**63) - 1, 1), (1, 2**63), (10**40, 10**40)):
            forged = encode_cursor({"s": "newest", "v": value, "i": last_id})
            with pytest.raises(ValidationFailed):
                list_products(s, ProductFilters(), sort="newest", cursor=forged)
        edge = encode_cursor({"s": "newest", "v": 2**63 - 1, "i": 2**63 - 1})
        assert list_products(s, ProductFilters(), sort="newest", cursor=edge).items


def test_search_cursors_are_signed_and_their_offset_bounded(
    demo_db: sessionmaker[Session],
) -> None:
    with demo_db() as s:
        cursor = search_products(s, "steel", ProductFilters(), size=3, cursor_key=KEY).next_cursor
        assert cursor
        body, _, mac = cursor.partition(".")
        forged = [
            body,  # unsigned
            body + "." + mac[::-1],  # signature of something else
            sign_cursor({"t": "x", "o": 3}, b"another key"),
        ]
        for bad in forged:
            with pytest.raises(ValidationFailed):
                search_products(s, "steel", ProductFilters(), cursor=bad, cursor_key=KEY)
        data = decode_cursor(body)
        for offset in (10**6, 2**63, 10**30):
            deep = sign_cursor({"t": data["t"], "o": offset}, KEY)
            with pytest.raises(ValidationFailed):
                search_products(s, "steel", ProductFilters(), cursor=deep, cursor_key=KEY)


QUERIES = [
    "thermos",
    "Noise cancelling",
    "stainless steel",
    "Nordhaven",
    "kitchen",
    "running shoe",
    "waterproof jacket",
    "yoga mat",
    "zzqxv",
    "the a of",
]


def search_model(rows: list[Row], query: str) -> set[int]:
    terms = query_terms(query)
    if not terms:
        return set()
    return {
        r.id
        for r in rows
        if all(any(w.startswith(t) for w in r.search_text.split()) for t in terms)
    }


def test_search_matches_every_term_as_a_word_prefix_with_filters_and_pages(
    demo_db: sessionmaker[Session],
) -> None:
    with demo_db() as s:
        rows, parents = model_rows(s)
        for f in filter_cases(s)[:8]:
            allowed = {r.id for r in expected(rows, parents, f)}
            for q in QUERIES:
                want = search_model(rows, q) & allowed
                hits = search_ids(s, q, f, limit=1000)
                assert hits.total == len(want), (q, f)
                assert set(hits.ids) == want, (q, f)
                assert hits.scores == sorted(hits.scores, reverse=True)
                paged: list[int] = []
                page = search_products(s, q, f, size=7, cursor_key=KEY)
                paged += [i["id"] for i in page.items]
                while page.next_cursor:
                    page = search_products(s, q, f, size=7, cursor=page.next_cursor, cursor_key=KEY)
                    paged += [i["id"] for i in page.items]
                assert paged == hits.ids, (q, f)
                by_number = []
                for n in range(1, math.ceil(hits.total / 7) + 1):
                    by_number += [
                        i["id"]
                        for i in search_products(s, q, f, page=n, size=7, cursor_key=KEY).items
                    ]
                assert by_number == hits.ids


def test_search_ranks_title_matches_first(demo_db: sessionmaker[Session]) -> None:
    with demo_db() as s:
        in_title = s.scalar(
            select(func.count()).where(
                Product.status == "published", Product.title.like("%thermos%")
            )
        )
        hits = search_ids(s, "thermos", limit=100)
        assert in_title and hits.total > in_title  # also found by category and description
        titles = [s.get(Product, i).title.lower() for i in hits.ids]  # type: ignore[union-attr]
        assert all("thermos" in t for t in titles[:in_title])
        assert not any("thermos" in t for t in titles[in_title:])
        sorted_hits = search_ids(s, "thermos", sort="price_asc", limit=100)
        prices = [s.get(Product, i).min_price_cents for i in sorted_hits.ids]  # type: ignore[union-attr]
        assert prices == sorted(prices)
        assert set(sorted_hits.ids) == set(hits.ids)


def test_search_cursor_is_bound_to_its_query(demo_db: sessionmaker[Session]) -> None:
    with demo_db() as s:
        cursor = search_products(s, "steel", ProductFilters(), size=3, cursor_key=KEY).next_cursor
        assert cursor
        with pytest.raises(ValidationFailed):
            search_products(s, "kettle", ProductFilters(), cursor=cursor, cursor_key=KEY)


async def test_keyword_search_runs_off_the_event_loop(demo_db: sessionmaker[Session]) -> None:
    hits = await keyword_search(demo_db, "yoga mat", limit=3)
    assert hits.total > 0 and len(hits.ids) == 3 and hits.terms == ["yoga", "mat"]
