"""The plain-shop peer of the catalog bench reads the demo catalog exactly as raymall's own
read functions do: the same product documents, availability and listing pages, and over
HTTP the same answers on a cache miss and a hit, 404 for unpublished and missing ids."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from models import Inventory, Product, Sku
from raymall.catalog.listing import list_products
from raymall.catalog.repository import ProductFilters, db_availability, load_product_doc
from raymall.db import make_engine, session_factory
from raymall.launcher.seed import seed_demo
from raymall.settings import Settings
from tests.conftest import SERVER_DB, make_mysql_database

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "peers"))
from plain_shop import Store, build_app  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo catalog with one product withdrawn and one product's SKUs sold out."""
    if not SERVER_DB:
        pytest.skip("RAYMALL_TEST_DATABASE_URL not set")
    url, drop = make_mysql_database(SERVER_DB, "rm_peer")
    seed_demo(Settings(database_url=url, var_dir=tmp_path_factory.mktemp("var"), env="test"))
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as s, s.begin():
        ids = list(s.scalars(select(Product.id).order_by(Product.id)))
        s.execute(update(Product).where(Product.id == ids[0]).values(status="unpublished"))
        sold_out = select(Sku.id).where(Sku.product_id == ids[1])
        s.execute(update(Inventory).where(Inventory.sku_id.in_(sold_out)).values(available=0))
    yield {"url": url, "sessions": sessions, "ids": ids}
    engine.dispose()
    drop()


def test_documents_availability_and_pages_match_raymalls_reads(shop: dict[str, Any]) -> None:
    store = Store(shop["url"], pool_size=2)
    try:
        with shop["sessions"]() as s:
            for pid in [*shop["ids"], shop["ids"][-1] + 1000]:
                doc = load_product_doc(s, pid)
                assert store.product_doc(pid) == doc
                if doc is not None:
                    skus = [k["id"] for k in doc["skus"]]
                    assert store.availability(skus) == db_availability(s, skus)
            pages = len(shop["ids"]) // 20 + 2
            for page in range(1, pages + 1):
                want = list_products(s, ProductFilters(), sort="newest", page=page, size=20)
                assert store.listing(page, 20) == want.to_dict()
    finally:
        store.engine.dispose()


def test_http_answers_on_a_miss_and_a_hit(shop: dict[str, Any], redis_url: str) -> None:
    unpublished, sold_out, other = shop["ids"][:3]
    with TestClient(build_app(shop["url"], redis_url)) as client:
        first = client.get(f"/products/{sold_out}")
        assert first.status_code == 200
        assert client.get(f"/products/{sold_out}").json() == first.json()  # from the cache
        doc = first.json()
        assert doc["in_stock"] is False
        assert all(s["available"] == 0 and s["in_stock"] is False for s in doc["skus"])
        assert client.get(f"/products/{other}").json()["in_stock"] is True
        for pid in (unpublished, shop["ids"][-1] + 1000):
            for _ in range(2):
                resp = client.get(f"/products/{pid}")
                assert resp.status_code == 404
                assert resp.json()["error"]["code"] == "not_found"
        page = client.get("/products", params={"page": 2})
        assert page.status_code == 200 and len(page.json()["items"]) == 20
        assert client.get("/products", params={"page": 2}).content == page.content
        assert client.get("/products", params={"size": 101}).status_code == 422
