"""SKUs from their products' documents (the cart's prices) and read sessions without a
ROLLBACK, against real MariaDB."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from raymall.catalog.repository import load_product_doc
from raymall.catalog.schemas import (
    CategoryCreate,
    ProductCreate,
    ProductUpdate,
    SkuCreate,
    SkuUpdate,
)
from raymall.catalog.service import CatalogService
from raymall.catalog.skus import SkuDirectory
from raymall.db import make_engine, read_sessions, session_factory
from raymall.orders.repository import load_skus

pytestmark = pytest.mark.integration


class Statements:
    """Every statement an engine sends, as text."""

    def __init__(self, engine: Engine) -> None:
        self.sent: list[str] = []
        event.listen(engine, "before_cursor_execute", self._on)

    def _on(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sent.append(statement)


@pytest.fixture()
def engine(mysql_url: str) -> Iterator[Engine]:
    engine = make_engine(mysql_url, pool_size=1)
    yield engine
    engine.dispose()


@pytest.fixture()
def service(engine: Engine) -> CatalogService:
    return CatalogService(session_factory(engine), inventory_shards=4)


def new_product(service: CatalogService, *prices: int, published: bool = True) -> dict[str, Any]:
    tag = secrets.token_hex(4)
    category = service.create_category(CategoryCreate(name=f"Skus {tag}"))
    doc = service.create_product(
        ProductCreate(
            title=f"Kettle {tag}",
            description="Boils.",
            category_id=category["id"],
            skus=[SkuCreate(code=f"SK-{tag}-{i}", price_cents=p) for i, p in enumerate(prices)],
        )
    )
    if published:
        doc = service.set_published(doc["id"], True)
    return doc


class Documents:
    """Product documents read from the database every time (what the caches hold after
    every invalidation), counting the products asked for."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.asked: list[int] = []
        self.unknown: set[int] = set()  # products the cache does not know of (yet)

    async def __call__(self, product_ids: Sequence[int]) -> dict[int, dict[str, Any] | None]:
        self.asked += product_ids

        def read() -> dict[int, dict[str, Any] | None]:
            with self.sessions() as s:
                return {
                    pid: None if pid in self.unknown else load_product_doc(s, pid)
                    for pid in product_ids
                }

        return await asyncio.to_thread(read)


async def test_skus_from_documents_match_the_catalog_rows_and_follow_writes(
    engine: Engine, service: CatalogService
) -> None:
    sessions = session_factory(engine)
    on_sale = new_product(service, 1500, 900)
    hidden = new_product(service, 700, published=False)
    a, b = (s["id"] for s in on_sale["skus"])
    (c,) = (s["id"] for s in hidden["skus"])
    missing = 2**62
    docs = Documents(sessions)
    reads = read_sessions(sessions)
    skus = SkuDirectory(reads, docs)
    statements = Statements(reads.kw["bind"])  # the directory's own reads

    found = await skus.lookup([a, b, c, missing])
    with sessions() as s:
        rows = load_skus(s, [a, b, c, missing])
    assert {k: v.info for k, v in found.items()} == rows and missing not in found
    assert found[c].info.published is False and found[a].info.published is True
    assert found[a].category_id == on_sale["category"]["id"] and found[a].brand_id is None
    # the SKU -> product map is kept: a second lookup asks the database nothing of its own
    statements.sent.clear()
    docs.asked.clear()
    await skus.lookup([a, b, c])
    assert statements.sent == [] and sorted(docs.asked) == sorted({on_sale["id"], hidden["id"]})

    await asyncio.to_thread(service.update_sku, a, SkuUpdate(price_cents=1234))
    await asyncio.to_thread(service.update_product, on_sale["id"], ProductUpdate(title="Renamed"))
    after = await skus.lookup([a])
    assert after[a].info.price_cents == 1234 and after[a].info.title == "Renamed"
    await asyncio.to_thread(service.set_published, on_sale["id"], False)
    assert (await skus.lookup([b]))[b].info.published is False

    # a product the documents do not show (a writer that bypassed the detail cache):
    # its SKUs come from the catalog rows, never "unknown"
    docs.unknown.add(on_sale["id"])
    with sessions() as s:
        rows = load_skus(s, [a, b])
    assert {k: v.info for k, v in (await skus.lookup([a, b])).items()} == rows
    assert rows[a].price_cents == 1234 and rows[b].published is False
    docs.unknown.clear()

    await asyncio.to_thread(service.delete_product, hidden["id"])
    statements.sent.clear()
    assert await skus.lookup([c]) == {}  # no longer listed: asked again, and gone
    assert len(statements.sent) == 1
    assert await skus.lookup([missing]) == {}


async def test_a_read_session_sends_no_rollback_and_sees_every_commit(
    engine: Engine, service: CatalogService
) -> None:
    sessions = session_factory(engine)
    reads = read_sessions(sessions)
    assert read_sessions(sessions) is reads  # one reader per engine
    reader = reads.kw["bind"]
    assert reader is not engine and reader.pool.size() == 1

    def rollbacks(factory: sessionmaker[Session]) -> int:
        """The ROLLBACK statements the pool's one connection has run so far."""
        with factory() as s:
            row = s.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'")).one()
            return int(row[1])

    for factory, sends in ((reads, False), (sessions, True)):
        before = rollbacks(factory)
        for _ in range(3):
            with factory() as s:
                s.execute(text("SELECT 1")).one()
        assert (rollbacks(factory) - before > 0) is sends

    product = new_product(service, 500)
    with reads() as s:
        first = s.execute(text("SELECT title FROM products WHERE id = :i"), {"i": product["id"]})
        assert first.scalar_one() == product["title"]
        await asyncio.to_thread(service.update_product, product["id"], ProductUpdate(title="New"))
        again = s.execute(text("SELECT title FROM products WHERE id = :i"), {"i": product["id"]})
        assert again.scalar_one() == "New"  # each statement reads the latest commit
    engine.dispose()
    assert reader.pool.checkedin() == 0  # disposed with the engine it reads beside


def test_a_read_session_keeps_the_engines_io_timeout(mysql_url: str) -> None:
    """A read on a connection the server dropped fails after the engine's I/O bound, as
    every other statement does, instead of waiting for ever."""
    bounded = make_engine(mysql_url, pool_size=1, io_timeout_s=2.5)
    plain = make_engine(mysql_url, pool_size=1)
    try:
        for engine, timeout in ((bounded, 2.5), (plain, None)):
            reader = read_sessions(session_factory(engine)).kw["bind"]
            with reader.connect() as conn:
                raw = conn.connection.dbapi_connection
                assert raw is not None
                assert raw._read_timeout == timeout and raw._write_timeout == timeout
    finally:
        bounded.dispose()
        plain.dispose()
