"""The MySQL connection pool: idle connections are checked before use, busy ones are not."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from raymall import db

pytestmark = pytest.mark.integration


def kill_pooled_connection(mysql_url: str, engine: Any) -> None:
    with engine.connect() as conn:
        server_id = conn.connection.dbapi_connection.thread_id()
    admin = create_engine(mysql_url)
    with admin.begin() as c:
        c.exec_driver_sql(f"KILL CONNECTION {int(server_id)}")
    admin.dispose()


def test_an_idle_connection_killed_by_the_server_is_replaced_before_use(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(mysql_url, pool_size=1)
    kill_pooled_connection(mysql_url, engine)
    monkeypatch.setattr(db, "IDLE_PING_S", 0.0)  # every pooled connection counts as idle
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged_and_a_loss_is_reported(
    mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "IDLE_PING_S", 3600.0)
    engine = db.make_engine(mysql_url, pool_size=1)
    for _ in range(5):
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    kill_pooled_connection(mysql_url, engine)
    with pytest.raises(OperationalError), engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # not swallowed: the caller sees the loss
    with engine.connect() as conn:  # and the pool has replaced the dead connection
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
