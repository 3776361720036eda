"""Peer (a): a conditional UPDATE on the hot row plus an operation row, one transaction
per attempt, one connection per thread (the classic "WHERE available >= qty" seed)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pymysql
from sqlalchemy.engine import make_url

from peers.common import RoundResult, run_threads

UPDATE = (
    "UPDATE inventory SET available = available - 1, reserved = reserved + 1, "
    "version = version + 1, updated_ms = %s WHERE sku_id = %s AND available >= 1"
)
INSERT = (
    "INSERT INTO inventory_ops (`key`, shard, kind, state, items, result, expires_ms, "
    "created_ms, updated_ms) VALUES (%s, %s, 'reserve', 'reserved', %s, 'ok', %s, %s, %s)"
)


def connect_args(url: str) -> dict[str, Any]:
    u = make_url(url)
    return {
        "host": u.host or "127.0.0.1",
        "port": u.port or 3306,
        "user": u.username or "root",
        "password": u.password or "",
        "database": u.database,
        "autocommit": False,
        "charset": "utf8mb4",
    }


def run(
    url: str, sku_id: int, shard: int, level: int, seconds: float, max_conns: int
) -> RoundResult:
    threads = min(level, max_conns)
    tag = secrets.token_hex(3)
    items = f'{{"{sku_id}":1}}'
    args = connect_args(url)
    conns: list[Any] = []

    def make_worker(index: int) -> Callable[[int], bool]:
        import time

        conn = pymysql.connect(**args)
        conns.append(conn)
        cur = conn.cursor()

        def attempt(n: int) -> bool:
            now = int(time.time() * 1000)
            try:
                cur.execute(UPDATE, (now, sku_id))
                if cur.rowcount != 1:
                    conn.commit()
                    return False
                cur.execute(
                    INSERT, (f"pa-{tag}-{index}-{n}", shard, items, now + 3_600_000, now, now)
                )
                conn.commit()
                return True
            except Exception:
                conn.rollback()
                raise

        return attempt

    note = f"{threads} threads, one connection each"
    if threads < level:
        note += f" (capped from {level}: MariaDB max_connections)"
    try:
        result = run_threads("mysql_conditional", threads, seconds, make_worker, note)
    finally:
        for conn in conns:
            conn.close()
    result.level = level
    return result
