"""Catalog admin writes on SQLite and MariaDB: the tree rules, search text upkeep,
inventory rows and outbox events in the same transaction, and the refusals."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import Inventory, OutboxEvent, Product, Sku
from raymall.catalog.media import MediaStore
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
from raymall.db import make_engine, session_factory
from raymall.errors import (
    AlreadyExists,
    BrandInUse,
    CategoryCycle,
    CategoryNotEmpty,
    InvalidTransition,
    NotFound,
    NotPublishable,
    ProductInUse,
    ValidationFailed,
)
from raymall.hashing import shard_for

SHARDS = 4


@pytest.fixture(params=["sqlite", "mysql"])
def sessions(request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "mysql_url")
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture()
def svc(sessions: sessionmaker[Session], tmp_path: Path) -> CatalogService:
    return CatalogService(
        sessions, inventory_shards=SHARDS, media=MediaStore(tmp_path, max_bytes=10_000)
    )


def tag() -> str:
    return secrets.token_hex(4)


def events(sessions: sessionmaker[Session], aggregate: int, topic: str) -> int:
    with sessions() as s:
        return int(
            s.scalar(
                select(func.count()).where(
                    OutboxEvent.aggregate_id == str(aggregate), OutboxEvent.topic == topic
                )
            )
            or 0
        )


def search_text(sessions: sessionmaker[Session], pid: int) -> str:
    with sessions() as s:
        return s.get(Product, pid).search_text  # type: ignore[union-attr]


def product(svc: CatalogService, category_id: int, **kw: object) -> dict:  # type: ignore[type-arg]
    t = tag()
    data = {
        "title": f"Kettle {t}",
        "category_id": category_id,
        "skus": [SkuCreate(code=f"K-{t}-1", price_cents=3000)],
        **kw,
    }
    return svc.create_product(ProductCreate(**data))  # type: ignore[arg-type]


def test_moving_a_category_under_its_own_subtree_is_a_cycle(svc: CatalogService) -> None:
    t = tag()
    a = svc.create_category(CategoryCreate(name=f"A {t}"))
    b = svc.create_category(CategoryCreate(name=f"B {t}", parent_id=a["id"]))
    c = svc.create_category(CategoryCreate(name=f"C {t}", parent_id=b["id"]))
    assert [p["id"] for p in c["path"]] == [a["id"], b["id"], c["id"]]
    for target in (c["id"], b["id"], a["id"]):
        with pytest.raises(CategoryCycle):
            svc.update_category(a["id"], CategoryUpdate(parent_id=target))
    moved = svc.update_category(c["id"], CategoryUpdate(parent_id=None))
    assert moved["parent_id"] is None and [p["id"] for p in moved["path"]] == [c["id"]]
    with pytest.raises(ValidationFailed):
        svc.update_category(c["id"], CategoryUpdate(parent_id=10**15))
    with pytest.raises(NotFound):
        svc.update_category(10**15, CategoryUpdate(name="x"))


def test_slugs_are_generated_unique_and_explicit_duplicates_are_refused(
    svc: CatalogService,
) -> None:
    t = tag()
    first = svc.create_category(CategoryCreate(name=f"Tea Cups {t}"))
    second = svc.create_category(CategoryCreate(name=f"Tea  cups {t}!"))
    assert first["slug"] == f"tea-cups-{t}" and second["slug"] == f"tea-cups-{t}-2"
    with pytest.raises(AlreadyExists):
        svc.create_category(CategoryCreate(name="Other", slug=first["slug"]))
    svc.create_brand(BrandCreate(name=f"Brand {t}"))
    with pytest.raises(AlreadyExists):
        svc.create_brand(BrandCreate(name=f"Brand {t}"))


def test_renaming_or_moving_a_category_updates_search_text_below_it(
    svc: CatalogService, sessions: sessionmaker[Session]
) -> None:
    t = tag()
    root = svc.create_category(CategoryCreate(name=f"Kitchenware{t}"))
    leaf = svc.create_category(CategoryCreate(name=f"Kettles{t}", parent_id=root["id"]))
    other = svc.create_category(CategoryCreate(name=f"Appliances{t}"))
    pid = product(svc, leaf["id"])["id"]
    assert f"kitchenware{t}" in search_text(sessions, pid)
    before = events(sessions, pid, "product.upserted")
    svc.update_category(root["id"], CategoryUpdate(name=f"Cookshop{t}"))
    text = search_text(sessions, pid)
    assert f"cookshop{t}" in text and f"kitchenware{t}" not in text
    svc.update_category(leaf["id"], CategoryUpdate(parent_id=other["id"]))
    text = search_text(sessions, pid)
    assert f"appliances{t}" in text and f"cookshop{t}" not in text
    assert events(sessions, pid, "product.upserted") == before + 2
    assert svc.admin_product(pid)["category"]["path"][0]["id"] == other["id"]


def test_categories_with_products_or_children_are_not_deleted(svc: CatalogService) -> None:
    t = tag()
    parent = svc.create_category(CategoryCreate(name=f"P {t}"))
    child = svc.create_category(CategoryCreate(name=f"C {t}", parent_id=parent["id"]))
    pid = product(svc, child["id"])["id"]
    with pytest.raises(CategoryNotEmpty):
        svc.delete_category(child["id"])
    with pytest.raises(CategoryNotEmpty):
        svc.delete_category(parent["id"])
    svc.delete_product(pid)
    svc.delete_category(child["id"])
    svc.delete_category(parent["id"])
    with pytest.raises(NotFound):
        svc.delete_category(parent["id"])


def test_brand_rename_reaches_search_text_and_a_used_brand_stays(
    svc: CatalogService, sessions: sessionmaker[Session]
) -> None:
    t = tag()
    cat = svc.create_category(CategoryCreate(name=f"Cat {t}"))
    brand = svc.create_brand(BrandCreate(name=f"Oldname{t}"))
    pid = product(svc, cat["id"], brand_id=brand["id"])["id"]
    assert f"oldname{t}" in search_text(sessions, pid)
    svc.update_brand(brand["id"], BrandUpdate(name=f"Newname{t}"))
    assert f"newname{t}" in search_text(sessions, pid)
    assert svc.admin_product(pid)["brand"]["name"] == f"Newname{t}"
    with pytest.raises(BrandInUse):
        svc.delete_brand(brand["id"])
    svc.update_product(pid, ProductUpdate(brand_id=None))
    assert f"newname{t}" not in search_text(sessions, pid)
    svc.delete_brand(brand["id"])


def test_a_new_product_gets_inventory_rows_and_an_outbox_event_in_one_transaction(
    svc: CatalogService, sessions: sessionmaker[Session]
) -> None:
    t = tag()
    cat = svc.create_category(CategoryCreate(name=f"Cat {t}"))
    doc = product(
        svc,
        cat["id"],
        skus=[
            SkuCreate(code=f"A-{t}", specs={"colour": "red"}, price_cents=1200),
            SkuCreate(code=f"B-{t}", specs={"colour": "blue"}, price_cents=900),
        ],
    )
    assert doc["status"] == "draft"
    assert (doc["min_price_cents"], doc["max_price_cents"]) == (900, 1200)
    with sessions() as s:
        rows = s.scalars(
            select(Inventory).where(Inventory.sku_id.in_([k["id"] for k in doc["skus"]]))
        ).all()
        assert len(rows) == 2
        for row in rows:
            assert (row.total, row.available, row.reserved, row.sold) == (0, 0, 0, 0)
            assert row.shard == shard_for(row.sku_id, SHARDS)
    assert events(sessions, doc["id"], "product.upserted") == 1
    # a duplicate SKU code rolls the whole product back
    with pytest.raises(AlreadyExists):
        product(svc, cat["id"], title=f"Dup {t}", skus=[SkuCreate(code=f"A-{t}", price_cents=1)])
    with sessions() as s:
        assert s.scalar(select(func.count()).where(Product.title == f"Dup {t}")) == 0
    with pytest.raises(ValidationFailed):
        svc.create_product(ProductCreate(title="x", category_id=10**15))


def test_publishing_rules(svc: CatalogService, sessions: sessionmaker[Session]) -> None:
    t = tag()
    cat = svc.create_category(CategoryCreate(name=f"Cat {t}"))
    bare = svc.create_product(ProductCreate(title=f"No SKUs {t}", category_id=cat["id"]))
    with pytest.raises(NotPublishable):
        svc.set_published(bare["id"], True)
    with pytest.raises(InvalidTransition):
        svc.set_published(bare["id"], False)
    sku = svc.create_sku(bare["id"], SkuCreate(code=f"S-{t}", price_cents=500))
    assert svc.set_published(bare["id"], True)["status"] == "published"
    count = events(sessions, bare["id"], "product.upserted")
    assert svc.set_published(bare["id"], True)["status"] == "published"  # idempotent
    assert events(sessions, bare["id"], "product.upserted") == count
    assert svc.set_published(bare["id"], False)["status"] == "unpublished"
    updated = svc.update_sku(sku["id"], SkuUpdate(price_cents=750, specs={"size": "L"}))
    assert updated["price_cents"] == 750 and updated["specs"] == {"size": "L"}
    view = svc.admin_product(bare["id"])
    assert (view["min_price_cents"], view["max_price_cents"]) == (750, 750)
    with pytest.raises(NotFound):
        svc.update_sku(10**15, SkuUpdate(price_cents=1))


def test_a_product_with_stock_history_is_not_deleted(
    svc: CatalogService, sessions: sessionmaker[Session]
) -> None:
    t = tag()
    cat = svc.create_category(CategoryCreate(name=f"Cat {t}"))
    doc = product(svc, cat["id"])
    sku_id = doc["skus"][0]["id"]
    with sessions.begin() as s:  # as if the owning shard had restocked it
        s.execute(update(Inventory).where(Inventory.sku_id == sku_id).values(total=5, available=5))
    with pytest.raises(ProductInUse):
        svc.delete_product(doc["id"])
    fresh = product(svc, cat["id"])
    svc.delete_product(fresh["id"])
    with sessions() as s:
        assert s.get(Product, fresh["id"]) is None
        assert s.scalar(select(func.count()).where(Sku.product_id == fresh["id"])) == 0
        assert s.get(Inventory, fresh["skus"][0]["id"]) is None
    assert events(sessions, fresh["id"], "product.deleted") == 1


def test_images_must_be_uploaded_before_they_are_attached(svc: CatalogService) -> None:
    t = tag()
    cat = svc.create_category(CategoryCreate(name=f"Cat {t}"))
    missing = "/media/images/" + "a" * 64 + ".png"
    with pytest.raises(ValidationFailed):
        product(svc, cat["id"], images=[missing])
    doc = product(svc, cat["id"], images=["https://cdn.example.com/kettle.png"])
    assert doc["images"] == ["https://cdn.example.com/kettle.png"]
    assert svc.media is not None
    png = bytes.fromhex("89504e470d0a1a0a") + b"\x00" * 32
    url = str(svc.media.save(png, "image/png")["url"])
    attached = svc.attach_image(doc["id"], url)
    assert attached["images"] == ["https://cdn.example.com/kettle.png", url]
