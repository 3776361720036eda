"""Database access: one engine factory for SQLite and MySQL/MariaDB.

SQLite (the embedded default) is shared by many Ray processes, so every connection turns on
WAL and a busy timeout. Where the dialects truly differ, callers branch on
``is_mysql(engine)`` here and nowhere else.

Reads that need no transaction of their own take their sessions from ``read_sessions``:
on MySQL these run each statement in autocommit on a pool of their own, so closing one
costs no ``ROLLBACK`` round trip (under READ COMMITTED every statement of a transaction
reads its own fresh snapshot anyway, so a read sees exactly what it saw before).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
IDLE_PING_S = 5.0  # MySQL connections idle longer than this are pinged at checkout


_io_timeouts: weakref.WeakKeyDictionary[Engine, float | None] = weakref.WeakKeyDictionary()


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    echo: bool = False,
    io_timeout_s: float | None = None,
    autocommit: bool = False,
) -> Engine:
    """An engine for ``url``. ``io_timeout_s`` bounds each socket read and write on MySQL,
    so a call on a connection the server dropped without a word fails instead of waiting
    for ever; leave it unset where a statement may rightly run long (migrations, reindex).
    ``autocommit`` (MySQL; ignored on SQLite): every statement commits on its own and a
    session's end sends no ``ROLLBACK``: for ``read_sessions`` only."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            "check_same_thread": False,
        }
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy issue BEGIN itself, so a transaction takes the write lock at once.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    if parsed.get_backend_name() == "mysql":
        kwargs.update(
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=3600,
            isolation_level="READ COMMITTED",
        )
        if autocommit:
            # set once per connection; rollback() is then skipped with no round trip
            kwargs.update(isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
        if io_timeout_s is not None:
            kwargs["connect_args"] = {"read_timeout": io_timeout_s, "write_timeout": io_timeout_s}
        q = dict(parsed.query)
        q.setdefault("charset", "utf8mb4")
        engine = create_engine(parsed.set(query=q), **kwargs)
        _io_timeouts[engine] = io_timeout_s  # its read sessions' engine gets the same bound
        event.listen(engine.pool, "checkin", _mark_checkin)
        event.listen(engine.pool, "checkout", _ping_if_idle)
        return engine
    raise ValueError(f"unsupported database URL: {parsed.render_as_string(hide_password=True)}")


def _mark_checkin(_dbapi_conn: Any, record: Any) -> None:
    if record is not None:
        record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """Pessimistic disconnect handling for connections that sat idle: a connection
    checked in more than ``IDLE_PING_S`` ago is pinged before use, and one that does not
    answer (server restarted, ``wait_timeout`` passed) is replaced by a fresh one. A
    connection in steady use skips the round trip; if the server goes away between two
    uses, the statement fails, the pool is invalidated, and the error reaches the caller
    (never swallowed)."""
    last = record.info.get("checked_in_at")
    if last is None or time.monotonic() - last < IDLE_PING_S:
        return
    try:
        dbapi_conn.ping(reconnect=False)
    except Exception as exc:
        raise DisconnectionError("idle connection did not answer a ping") from exc


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is turned off; the "begin" listener starts them.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def ping(engine: Engine) -> None:
    """One round trip to the database (readiness); raises when it does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


_readers: weakref.WeakKeyDictionary[Engine, sessionmaker[Session]] = weakref.WeakKeyDictionary()


def read_sessions(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for plain reads beside ``sessions`` (same database): on MySQL, bound to one
    autocommit engine per engine of ``sessions`` (made on first use, disposed with it), so
    a read session's end costs no round trip; elsewhere ``sessions`` itself. Never write,
    lock (``FOR UPDATE``) or rely on one snapshot across statements in them."""
    engine = sessions.kw.get("bind") if isinstance(sessions, sessionmaker) else None
    if not isinstance(engine, Engine) or not is_mysql(engine):
        return sessions
    found = _readers.get(engine)
    if found is None:
        size = engine.pool.size() if hasattr(engine.pool, "size") else 10
        reader = make_engine(
            engine.url.render_as_string(hide_password=False),
            pool_size=size,
            echo=bool(engine.echo),
            io_timeout_s=_io_timeouts.get(engine),
            autocommit=True,
        )
        event.listen(engine, "engine_disposed", lambda _engine: reader.dispose())
        found = _readers[engine] = session_factory(reader)
    return found


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session
