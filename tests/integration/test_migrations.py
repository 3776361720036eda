"""Alembic on both dialects: upgrade head, autogenerate shows no diff, downgrade base."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import models
from raymall.db import make_engine
from raymall.migrate import downgrade, upgrade
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


def test_mysql_has_a_fulltext_index_for_search() -> None:
    if not SERVER_DB:
        pytest.skip("RAYMALL_TEST_DATABASE_URL not set")
    name = f"rm_ft_{secrets.token_hex(4)}"
    admin = create_engine(SERVER_DB.rstrip("/") + "/")
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = SERVER_DB.rstrip("/") + f"/{name}"
    try:
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT INDEX_TYPE FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA=%s AND INDEX_NAME='ft_products_search'",
                (name,),
            ).fetchall()
        engine.dispose()
        assert rows and all(r[0] == "FULLTEXT" for r in rows)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()
