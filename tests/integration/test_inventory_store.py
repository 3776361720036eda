"""The shard's SQL on both dialects (embedded SQLite and MariaDB): one transaction per
batch, duplicate keys and version fences refuse the whole batch, and an InventoryShard
(driven without Ray) rebuilds the same state from the database after a restart."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from actors.inventory_shard import InventoryShard
from actors.inventory_store import DuplicateKey, InjectedFault, InventoryStore, StaleStock
from actors.shard_book import load_ledger
from raymall.domain.ledger import Ledger
from raymall.domain.shard_ops import Adjust, Confirm, Release, Reserve
from raymall.errors import Unavailable
from raymall.ids import now_ms
from raymall.settings import Settings
from tests.conftest import SERVER_DB, make_mysql_database


@pytest.fixture(params=["sqlite", "mysql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url
        return
    if not SERVER_DB:
        pytest.skip("RAYMALL_TEST_DATABASE_URL not set")
    url, drop = make_mysql_database(SERVER_DB)
    yield url
    drop()


def make_sku(url: str, stock: int, shard: int = 0, threshold: int = 0) -> int:
    engine = create_engine(url)
    now = now_ms()
    tag = secrets.token_hex(4)
    with engine.begin() as conn:
        cat = conn.execute(
            text(
                "INSERT INTO categories (name, slug, sort_order, created_ms, updated_ms) "
                "VALUES (:n, :n, 0, :t, :t)"
            ),
            {"n": tag, "t": now},
        ).lastrowid
        prod = conn.execute(
            text(
                "INSERT INTO products (title, description, category_id, attributes, images, "
                "status, min_price_cents, max_price_cents, sales_count, search_text, "
                "created_ms, updated_ms) VALUES (:n, '', :c, '{}', '[]', 'draft', 1, 1, 0, "
                "'', :t, :t)"
            ),
            {"n": tag, "c": cat, "t": now},
        ).lastrowid
        sku = conn.execute(
            text(
                "INSERT INTO skus (product_id, code, specs, price_cents, low_stock_threshold, "
                "created_ms, updated_ms) VALUES (:p, :n, '{}', 1, :th, :t, :t)"
            ),
            {"p": prod, "n": tag, "th": threshold, "t": now},
        ).lastrowid
        conn.execute(
            text(
                "INSERT INTO inventory (sku_id, shard, total, available, reserved, sold, "
                "version, updated_ms) VALUES (:s, :sh, :q, :q, 0, 0, 0, :t)"
            ),
            {"s": sku, "sh": shard, "q": stock, "t": now},
        )
    engine.dispose()
    return int(sku)


def counters(url: str, sku: int) -> tuple[int, ...]:
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT total, available, reserved, sold, version FROM inventory WHERE sku_id=:s"),
            {"s": sku},
        ).one()
    engine.dispose()
    return tuple(row)


def loaded(store: InventoryStore) -> Ledger:
    return load_ledger(store)  # what a shard loads when it starts


def test_a_batch_round_trips_through_the_database(db_url: str) -> None:
    sku = make_sku(db_url, 10, threshold=7)
    store = InventoryStore(db_url, 0)
    ledger = loaded(store)
    ledger.begin()
    ledger.reserve("a@0", {sku: 3}, expires_ms=123)
    ledger.reserve("b@0", {sku: 3})
    ledger.reserve("c@0", {sku: 99})
    ledger.confirm("b@0")
    ledger.adjust("adj", sku, 2, "restock", 7)
    ledger.release("ghost@0")
    store.write(ledger.changes(), now_ms())
    ledger.commit()
    assert counters(db_url, sku) == (12, 6, 3, 3, 1)
    again = loaded(InventoryStore(db_url, 0))
    assert again.stock[sku] == ledger.stock[sku]
    assert {k: (r.items, r.expires_ms) for k, r in again.records.items()} == {
        "a@0": ({sku: 3}, 123)
    }
    found = store.lookup(["b@0", "c@0", "ghost@0", "adj", "nope"])
    assert {k: (r.state, r.result) for k, r in found.items()} == {
        "b@0": ("confirmed", "ok"),
        "c@0": ("rejected", "out_of_stock"),
        "ghost@0": ("released", "released"),
        "adj": ("applied", "ok"),
    }
    engine = create_engine(db_url)
    with engine.connect() as conn:
        audit = conn.execute(text("SELECT delta, reason, actor_id FROM inventory_adjustments"))
        assert [tuple(r) for r in audit] == [(2, "restock", 7)]
        events = conn.execute(text("SELECT topic, payload FROM outbox")).all()
        assert [(t, json.loads(p)["available"]) for t, p in events] == [("inventory.low_stock", 6)]
    engine.dispose()


def test_statements_bound_ahead_store_exactly_what_the_driver_would(db_url: str) -> None:
    """``render`` (the shard binds batch N+1 while N commits) writes the same rows as the
    driver binding at write time, awkward keys included; SQLite's statements are left to
    its driver, and nothing is bound before the writer has connected."""
    sku = make_sku(db_url, 1000)
    store = InventoryStore(db_url, 0)
    ledger = loaded(store)
    keys = ["q'uote@0", 'dq"@0', "back\\slash@0", "pct%s%%@0", "unié中@0"]
    ledger.begin()
    for key in keys[:2]:
        ledger.reserve(key, {sku: 1}, expires_ms=5)
    statements = store.statements(ledger.changes(), 1)
    assert store.render(statements) == statements  # not connected yet
    store.write_statements(statements)
    ledger.commit()
    ledger.begin()
    for i, key in enumerate(keys[2:]):
        ledger.reserve(key, {sku: 2}, expires_ms=None if i else 9)
    for i in range(600):  # more than one 500-row INSERT
        ledger.reserve(f"bulk-{i}@0", {sku: 1})
    statements = store.statements(ledger.changes(), 2)
    bound = store.render(statements)
    if db_url.startswith("sqlite"):
        assert bound == statements
    else:
        assert all(params is None for _, params, _, _ in bound)
        inserts = [sql for sql, _, _, _ in bound if sql.startswith("INSERT INTO inventory_ops")]
        assert len(inserts) == 2
        assert [expect for *_, expect in bound if expect is not None] == [1]
    store.write_statements(bound)
    ledger.commit()
    assert counters(db_url, sku) == (1000, 1000 - 2 - 6 - 600, 608, 0, 2)
    found = store.lookup(keys)
    assert {k: (r.items, r.expires_ms) for k, r in found.items()} == {
        keys[0]: ({sku: 1}, 5),
        keys[1]: ({sku: 1}, 5),
        keys[2]: ({sku: 2}, 9),
        keys[3]: ({sku: 2}, None),
        keys[4]: ({sku: 2}, None),
    }
    assert len(loaded(InventoryStore(db_url, 0)).records) == 605


def test_a_duplicate_key_refuses_the_whole_batch(db_url: str) -> None:
    sku = make_sku(db_url, 10)
    store = InventoryStore(db_url, 0)
    ledger = loaded(store)
    ledger.begin()
    ledger.reserve("k@0", {sku: 1})
    ledger.confirm("k@0")
    store.write(ledger.changes(), now_ms())
    ledger.commit()
    stale = loaded(store)  # loads open reservations only: it never saw "k@0"
    stale.stock[sku] = ledger.stock[sku].copy()
    stale.begin()
    stale.reserve("other@0", {sku: 1})
    stale.reserve("k@0", {sku: 1})
    with pytest.raises(DuplicateKey):
        store.write(stale.changes(), now_ms())
    stale.rollback()
    assert counters(db_url, sku)[:4] == (10, 9, 0, 1)
    assert set(store.lookup(["k@0", "other@0"])) == {"k@0"}
    ledger.begin()  # the writer connection is still usable
    ledger.reserve("after@0", {sku: 1})
    store.write(ledger.changes(), now_ms())
    ledger.commit()
    assert counters(db_url, sku)[:4] == (10, 8, 1, 1)


def test_a_row_changed_behind_the_owner_is_never_overwritten(db_url: str) -> None:
    sku = make_sku(db_url, 10)
    store = InventoryStore(db_url, 0)
    ledger = loaded(store)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE inventory SET version = version + 1 WHERE sku_id = :s"), {"s": sku}
        )
    engine.dispose()
    ledger.begin()
    ledger.reserve("k@0", {sku: 4})
    with pytest.raises(StaleStock):
        store.write(ledger.changes(), now_ms())
    ledger.rollback()
    assert counters(db_url, sku) == (10, 10, 0, 0, 1)
    assert store.lookup(["k@0"]) == {}
    ledger = loaded(store)  # what a shard does after StaleStock: reload
    ledger.begin()
    ledger.reserve("k2@0", {sku: 1})
    with pytest.raises(InjectedFault):
        store.write(ledger.changes(), now_ms(), fail=True)
    ledger.rollback()
    assert store.lookup(["k2@0"]) == {}
    assert counters(db_url, sku) == (10, 10, 0, 0, 1)


async def test_the_shard_rebuilds_its_state_after_a_restart_on_either_database(
    db_url: str,
) -> None:
    sku = make_sku(db_url, 5)
    settings = Settings(
        env="test",
        database_url=db_url,
        redis_url="redis://unused",
        inventory_shards=1,
        group_commit_window_ms=1,
    )
    shard = InventoryShard(settings, 0)
    ops = [
        Reserve("x@0", {sku: 2}, None),
        Reserve("y@0", {sku: 2}, None),
        Reserve("z@0", {sku: 2}, None),
        Confirm("y@0"),
        Adjust("restock", sku, 3, "delivery", None),
    ]
    assert await shard.submit(ops) == ["ok", "ok", "out_of_stock", "ok", "ok"]
    await shard.inject_commit_failures(1)
    with pytest.raises(Unavailable):
        await shard.submit([Release("x@0")])
    assert (await shard.snapshot([sku]))[sku]["reserved"] == 2
    for task in shard._tasks:  # the process dies
        task.cancel()
    restarted = InventoryShard(settings, 0)
    assert await restarted.snapshot([sku]) == await shard.snapshot([sku])
    assert await restarted.submit(ops) == ["ok", "ok", "out_of_stock", "ok", "ok"]
    assert await restarted.submit([Release("x@0")]) == ["ok"]
    assert counters(db_url, sku)[:4] == (8, 6, 0, 2)
    for task in restarted._tasks:
        task.cancel()
