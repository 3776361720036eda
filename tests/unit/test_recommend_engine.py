"""The recommend engine on SQLite and Milvus Lite with the real model: applying catalog
changes, rebuilding, and the reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import delete

from models import Inventory, Product, Sku
from raymall.db import transaction
from tests.recommend_helpers import add_product, lite_engine, set_status


def test_apply_upserts_published_and_skips_unchanged(sqlite_url: str, tmp_path: Path) -> None:
    engine, sessions = lite_engine(sqlite_url, tmp_path)
    a = add_product(sessions, "Stainless steel vacuum thermos flask", category="Thermoses")
    b = add_product(sessions, "Draft travel mug", category="Thermoses", status="draft")
    first = engine.apply([a, b])
    assert (first.upserted, first.deleted, first.unchanged) == (1, 0, 0)
    assert engine.index.count() == 1
    again = engine.apply([a, b])
    assert (again.upserted, again.deleted, again.unchanged) == (0, 0, 1)
    assert not again.wrote


def test_apply_removes_unpublished_and_deleted_products(sqlite_url: str, tmp_path: Path) -> None:
    engine, sessions = lite_engine(sqlite_url, tmp_path)
    a = add_product(sessions, "Cast iron skillet", category="Skillets")
    b = add_product(sessions, "Carbon steel frying pan", category="Skillets")
    engine.apply([a, b])
    assert engine.index.count() == 2
    set_status(sessions, a, "unpublished")
    with transaction(sessions) as s:  # type: ignore[arg-type]
        sku_ids = [sk.id for sk in s.query(Sku).filter(Sku.product_id == b)]
        s.execute(delete(Inventory).where(Inventory.sku_id.in_(sku_ids)))
        s.execute(delete(Sku).where(Sku.product_id == b))
        s.execute(delete(Product).where(Product.id == b))
    result = engine.apply([a, b])
    assert result.deleted == 2
    assert engine.index.count() == 0


def test_similar_never_returns_the_product_itself_and_prefers_its_kind(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine, sessions = lite_engine(sqlite_url, tmp_path)
    ids = [
        add_product(sessions, "Insulated coffee thermos", category="Thermoses"),
        add_product(sessions, "Vacuum flask for hot tea", category="Thermoses"),
        add_product(sessions, "Trail running shoes", category="Shoes"),
        add_product(sessions, "Road running sneakers", category="Shoes"),
    ]
    summary = engine.rebuild(cursor=0, batch_size=2)
    assert summary["products"] == 4
    hits = engine.similar([(ids[0], 3), (ids[2], 1)])
    assert hits[0] is not None and ids[0] not in [h.id for h in hits[0]]
    assert hits[0][0].id == ids[1]
    assert hits[1] is not None and [h.id for h in hits[1]] == [ids[3]]


def test_similar_of_an_unpublished_product_is_none(sqlite_url: str, tmp_path: Path) -> None:
    engine, sessions = lite_engine(sqlite_url, tmp_path)
    draft = add_product(sessions, "Hidden draft", status="draft")
    assert engine.similar([(draft, 5), (999_999, 5)]) == [None, None]


def test_a_published_product_not_yet_indexed_still_gets_neighbours(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine, sessions = lite_engine(sqlite_url, tmp_path)
    old = add_product(sessions, "Electric gooseneck kettle", category="Kettles")
    engine.apply([old])
    new = add_product(sessions, "Stovetop tea kettle", category="Kettles")
    hits = engine.similar([(new, 1)])[0]
    assert hits is not None and [h.id for h in hits] == [old]


def test_profile_search_excludes_bought_products(sqlite_url: str, tmp_path: Path) -> None:
    engine, sessions = lite_engine(sqlite_url, tmp_path)
    tent = add_product(sessions, "Two person backpacking tent", category="Tents")
    tent2 = add_product(sessions, "Ultralight camping tent", category="Tents")
    mug = add_product(sessions, "Ceramic coffee mug", category="Mugs")
    engine.rebuild(cursor=0)
    hits = engine.for_profile({tent: 1.0}, exclude=[tent], k=2)
    assert hits is not None
    assert [h.id for h in hits] == [tent2, mug]
    assert engine.for_profile({123456: 1.0}, exclude=[], k=2) is None


def test_cached_similar_lists_see_the_next_write(sqlite_url: str, tmp_path: Path) -> None:
    engine, sessions = lite_engine(sqlite_url, tmp_path, similar_cache=100)
    a = add_product(sessions, "Insulated coffee thermos", category="Thermoses")
    b = add_product(sessions, "Running shoes", category="Shoes")
    engine.apply([a, b])
    assert [h.id for h in engine.similar([(a, 5)])[0] or []] == [b]
    assert engine.similar([(a, 5)])[0] is not None and engine.cache.stats()["hits"] == 1
    c = add_product(sessions, "Vacuum flask for hot coffee", category="Thermoses")
    engine.apply([c])
    assert [h.id for h in engine.similar([(a, 5)])[0] or []] == [c, b]


def test_the_in_memory_table_follows_writes_and_answers_as_milvus(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine, sessions = lite_engine(sqlite_url, tmp_path, table_max_rows=10)
    ids = [
        add_product(sessions, "Insulated coffee thermos", category="Thermoses"),
        add_product(sessions, "Vacuum flask for hot tea", category="Thermoses"),
        add_product(sessions, "Trail running shoes", category="Shoes"),
        add_product(sessions, "Road running sneakers", category="Shoes"),
    ]
    engine.rebuild(cursor=0)
    table = engine.table
    assert table is not None and table.ids.tolist() == sorted(ids)
    requests = [(pid, 3) for pid in ids]
    from_table = engine.similar(requests)
    searched = engine.search_text([("shoes for jogging", 2)])
    engine.table = None  # the same reads, answered by Milvus
    from_milvus = engine.similar(requests)
    assert [[h.id for h in hs or []] for hs in from_table] == [
        [h.id for h in hs or []] for hs in from_milvus
    ]
    assert [h.id for h in searched[0]] == [
        h.id for h in engine.search_text([("shoes for jogging", 2)])[0]
    ]
    loaded = engine.load_table()  # as the actor does at start: read back from Milvus
    assert loaded is not None and loaded is engine.table and loaded.epoch != table.epoch
    assert loaded.ids.tolist() == sorted(ids)
    assert np.allclose(loaded.vectors, table.vectors, atol=1e-6)
    # an upsert and an unpublish: the next generation of the table, after Milvus took them
    new = add_product(sessions, "Double wall coffee thermos", category="Thermoses")
    set_status(sessions, ids[3], "unpublished")
    engine.apply([new, ids[3]])
    after = engine.table
    assert after is not None and after.version == (loaded.epoch, loaded.generation + 1)
    assert after.ids.tolist() == sorted([*ids[:3], new])
    assert np.allclose(after.vector(new), engine.index.vectors([new])[new], atol=1e-6)  # type: ignore[arg-type]
    assert engine.similar([(ids[0], 1)])[0][0].id in (new, ids[1])  # type: ignore[index]


def test_the_table_is_dropped_past_its_size_limit(sqlite_url: str, tmp_path: Path) -> None:
    engine, sessions = lite_engine(sqlite_url, tmp_path, table_max_rows=2)
    a = add_product(sessions, "Cast iron skillet", category="Skillets")
    b = add_product(sessions, "Carbon steel pan", category="Skillets")
    engine.rebuild(cursor=0)
    assert engine.table is not None and len(engine.table) == 2
    c = add_product(sessions, "Nonstick frying pan", category="Skillets")
    engine.apply([c])
    assert engine.table is None  # three products: reads go to Milvus
    assert [h.id for h in engine.similar([(a, 1)])[0] or []] in ([b], [c])
    engine.rebuild(cursor=0)
    assert engine.table is None


def test_recommender_cards_equal_the_catalog_listing_cards(sqlite_url: str, tmp_path: Path) -> None:
    """``source.cards`` is a leaner read of the catalog's listing cards: it must stay equal
    to ``product_summaries`` for every kind of product."""
    from models import Brand
    from raymall.catalog.repository import product_summaries
    from raymall.ids import now_ms
    from recommend import source

    _, sessions = lite_engine(sqlite_url, tmp_path)
    stocked = add_product(sessions, "Branded kettle", category="Kettles", stock=3, sales=7)
    sold_out = add_product(sessions, "Sold out kettle", category="Kettles", stock=0)
    draft = add_product(sessions, "Draft kettle", category="Kettles", status="draft")
    with transaction(sessions) as s:  # type: ignore[arg-type]
        now = now_ms()
        brand = Brand(name="Kettlecraft", slug=f"kettlecraft-{now}", created_ms=now, updated_ms=now)
        s.add(brand)
        s.flush()
        product = s.get(Product, stocked)
        assert product is not None
        product.brand_id = brand.id
        product.images = ["/media/a.jpg", "/media/b.jpg"]
    ids = [stocked, sold_out, draft, 987_654]
    with sessions() as s:
        expected = {c["id"]: c for c in product_summaries(s, ids)}
        got = source.cards(s, ids)
    assert set(got) == {stocked, sold_out, draft}
    assert got == expected
    assert got[stocked]["brand"]["name"] == "Kettlecraft" and got[stocked]["in_stock"]
    assert got[stocked]["image"] == "/media/a.jpg" and not got[sold_out]["in_stock"]
    assert got[draft]["status"] == "draft"
