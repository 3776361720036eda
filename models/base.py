"""Declarative base with a naming convention, so constraint names match across dialects."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BigInteger, Dialect, MetaData, String, Text, TypeDecorator
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeEngine

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT that autoincrements on SQLite too (SQLite only autoincrements INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")


def ExactKey(length: int) -> TypeEngine[str]:
    """An idempotency or ledger key, compared byte for byte. MySQL's default collation is
    case-insensitive ('Ab' = 'ab'), so a unique index there would refuse a key that the
    shards' in-memory ledgers and SQLite hold as distinct, and fail the whole group commit
    it is in; ``utf8mb4_bin`` makes MySQL agree with them."""
    return String(length).with_variant(mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql")


class Json(TypeDecorator[Any]):
    """A JSON document stored as TEXT. MariaDB's JSON is LONGTEXT underneath and reflects as
    such, so plain TEXT keeps both dialects (and autogenerate) in agreement."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
