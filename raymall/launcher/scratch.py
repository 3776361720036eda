"""Throwaway stores for one test session or benchmark run on real servers: a private
MySQL database (migrated, with the reference data) and a private Redis db index, so runs
on the same servers never see each other's rows or keys."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import create_engine

from raymall.bootstrap import ensure_reference_data
from raymall.launcher.migrate import upgrade
from raymall.settings import load_settings


def make_mysql_database(server_url: str, prefix: str = "rm_test") -> tuple[str, Callable[[], None]]:
    """A new database ``{prefix}_{random}`` on the server, migrated and holding the roles
    and grants; answer its URL and the function that drops it."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(server_url.rstrip("/") + "/")
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    url = server_url.rstrip("/") + f"/{name}"
    upgrade(url)
    ensure_reference_data(load_settings(database_url=url, redis_url="redis://unused"))

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()

    return url, drop


def private_redis_db(server_url: str) -> str:
    """Claim a Redis db index (1-15, in turn) on the server and empty it; answer its URL."""
    import redis

    base = server_url.rstrip("/")
    if base.count("/") > 2:  # strip a db index that was given
        base = base.rsplit("/", 1)[0]
    r0 = redis.Redis.from_url(base + "/0")
    index = int(r0.incr("raymall:test:dbseq")) % 15 + 1
    r0.close()
    url = f"{base}/{index}"
    redis.Redis.from_url(url).flushdb()
    return url
