"""Alembic on both dialects: upgrade head, autogenerate shows no diff, downgrade base."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import models
from raymall.db import make_engine
from raymall.launcher.migrate import downgrade, upgrade
from tests.conftest import SERVER_DB


def _roundtrip(url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert set(models.Base.metadata.tables) <= tables
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, models.Base.metadata) == []
        downgrade(url)
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(url)  # and back up again: the downgrade left nothing behind
        assert set(models.Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_roundtrip_on_sqlite(tmp_path: Path) -> None:
    _roundtrip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.skipif(not SERVER_DB, reason="RAYMALL_TEST_DATABASE_URL not set")
def test_migrations_roundtrip_on_mysql() -> None:
    assert SERVER_DB
    name = f"rm_mig_{secrets.token_hex(4)}"
    admin = create_engine(SERVER_DB.rstrip("/") + "/")
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        _roundtrip(SERVER_DB.rstrip("/") + f"/{name}")
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


@pytest.fixture()
def mysql_schema() -> Iterator[tuple[str, str]]:
    """A fresh MySQL database at the head revision: (its name, its URL)."""
    if not SERVER_DB:
        pytest.skip("RAYMALL_TEST_DATABASE_URL not set")
    name = f"rm_schema_{secrets.token_hex(4)}"
    admin = create_engine(SERVER_DB.rstrip("/") + "/")
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = SERVER_DB.rstrip("/") + f"/{name}"
    try:
        upgrade(url)
        yield name, url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


def test_mysql_has_a_fulltext_index_for_search(mysql_schema: tuple[str, str]) -> None:
    name, url = mysql_schema
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT INDEX_TYPE FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA=%s AND INDEX_NAME='ft_products_search'",
            (name,),
        ).fetchall()
    engine.dispose()
    assert rows and all(r[0] == "FULLTEXT" for r in rows)


KEY_COLUMNS = [
    ("inventory_ops", "key"),
    ("inventory_adjustments", "key"),
    ("orders", "idempotency_key"),
    ("orders", "reservation_key"),
    ("flash_purchases", "idempotency_key"),
]


def test_mysql_compares_keys_byte_for_byte(mysql_schema: tuple[str, str]) -> None:
    """Keys that differ only in case are two keys, on MySQL as in SQLite and in the shards'
    ledgers (the server's default collation would make a unique index refuse the second)."""
    name, url = mysql_schema
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            found = dict(
                conn.exec_driver_sql(
                    "SELECT CONCAT(TABLE_NAME, '.', COLUMN_NAME), COLLATION_NAME"
                    " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s",
                    (name,),
                ).fetchall()
            )
            assert {f"{t}.{c}": found[f"{t}.{c}"] for t, c in KEY_COLUMNS} == {
                f"{t}.{c}": "utf8mb4_bin" for t, c in KEY_COLUMNS
            }
            for key in ("adj:1:Ab", "adj:1:ab", "adj:1:AB"):
                conn.exec_driver_sql(
                    "INSERT INTO inventory_ops (`key`, shard, kind, state, items, result,"
                    " created_ms, updated_ms) VALUES (%s, 0, 'adjust', 'confirmed', '{}', 'ok',"
                    " 1, 1)",
                    (key,),
                )
            rows = conn.exec_driver_sql(
                "SELECT `key` FROM inventory_ops WHERE `key` = %s", ("adj:1:ab",)
            ).fetchall()
        assert rows == [("adj:1:ab",)]
    finally:
        engine.dispose()
