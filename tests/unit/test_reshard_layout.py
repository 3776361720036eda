"""The database side of a reshard on SQLite (actors.reshard.reown and check_layout): the
app refuses counts the database is not laid out for, and a reshard lays it out for them
with the stock and open units of every SKU unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from actors.reshard import Layout, check_layout, problems, reown
from raymall.db import make_engine
from raymall.hashing import shard_for
from raymall.launcher.shop import SkuSpec, add_category, add_product
from raymall.settings import ConfigError, Settings


def test_a_reshard_lays_the_database_out_for_the_new_counts(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        category = add_category(conn, "Kettles", "kettles")
        _, skus = add_product(
            conn, category, "Kettle", [SkuSpec(f"K{i}", 100, 10, {}) for i in range(12)], shards=4
        )
        # one open reservation of three SKUs, stored per shard as the client does
        held = {sku: i + 1 for i, sku in enumerate(skus[:3])}
        by_shard: dict[int, dict[int, int]] = {}
        for sku, qty in held.items():
            by_shard.setdefault(shard_for(sku, 4), {})[sku] = qty
            conn.execute(
                text(
                    "UPDATE inventory SET available = available - :q, reserved = :q "
                    "WHERE sku_id = :s"
                ),
                {"q": qty, "s": sku},
            )
        for shard, items in by_shard.items():
            conn.execute(
                text(
                    "INSERT INTO inventory_ops (`key`, shard, kind, state, items, result, "
                    "expires_ms, created_ms, updated_ms) "
                    "VALUES (:k, :s, 'reserve', 'reserved', :i, 'ok', 99, 1, 1)"
                ),
                {"k": f"order:5@{shard}", "s": shard, "i": json.dumps(items)},
            )
    base = {"database_url": sqlite_url, "redis_url": "redis://unused"}
    check_layout(Settings(**base, inventory_shards=4, order_shards=2))
    with pytest.raises(ConfigError, match="raymall reshard --inventory-shards 6"):
        check_layout(Settings(**base, inventory_shards=6, order_shards=2))
    stock_before = _stock(engine)
    for layout in (Layout(6, 3), Layout(3, 2), Layout(1, 1)):
        report = reown(engine, layout)
        assert problems(engine, layout) == [], report.as_dict()
        assert _stock(engine) == stock_before and not report.settled
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT `key`, shard, items, expires_ms FROM inventory_ops")
            ).all()
        found: dict[int, int] = {}
        for key, shard, items, expires in rows:
            assert key == f"order:5@{shard}" and expires == 99
            for sku, qty in json.loads(items).items():
                assert shard_for(int(sku), layout.inventory_shards) == shard
                found[int(sku)] = qty
        assert found == held
    check_layout(Settings(**base, inventory_shards=1, order_shards=1))
    engine.dispose()


def _stock(engine: Engine) -> list[tuple[int, ...]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT sku_id, total, available, reserved, sold FROM inventory ORDER BY 1")
            ).all()
        ]


def test_raymall_reshard_refuses_while_the_instance_runs_then_re_owns(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from raymall.launcher import cli

    monkeypatch.setenv("RAYMALL_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("RAYMALL_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    args = ["reshard", "--inventory-shards", "5", "--order-shards", "3"]
    (tmp_path / "runtime.json").write_text(json.dumps({"pid": os.getpid()}))
    assert cli.main(args) == 2
    assert "stop it first" in capsys.readouterr().err
    (tmp_path / "runtime.json").unlink()
    assert cli.main([*args, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"] is True
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inventory_shards"] == 5 and "RAYMALL_INVENTORY_SHARDS=5" in report["next"]
    check_layout(
        Settings(
            database_url=sqlite_url, redis_url="redis://unused", inventory_shards=5, order_shards=3
        )
    )
