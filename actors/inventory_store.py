"""SQL of one inventory shard: load at start, look keys up, write one batch per transaction.

The hot path uses driver-level parameterized SQL (``exec_driver_sql`` with the driver's own
placeholders) because a batch carries hundreds of rows and ORM objects would cost more than
the transaction itself. Guarantees:

- ``write`` is one transaction: stock rows, new key records, state changes, adjustment
  audit rows and outbox events commit together or not at all;
- stock rows are written as absolute values fenced by their version
  (``WHERE sku_id=? AND version=?``); a row changed behind the owner's back raises
  ``StaleStock`` instead of being overwritten;
- a key that already exists in the database raises ``DuplicateKey``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine

from raymall.db import is_mysql, make_engine
from raymall.domain.stock import Changes, Record, Stock

LOW_STOCK_TOPIC = "inventory.low_stock"
_CHUNK = 500
Statement = tuple[str, Any, bool, int | None]  # sql, params (None: bound), executemany?, rowcount


class StaleStock(RuntimeError):
    """An inventory row's version is not the one this shard last wrote."""


class DuplicateKey(RuntimeError):
    """The batch inserted a key the database already holds (a replay the shard did not
    have in memory)."""


class InjectedFault(RuntimeError):
    """Raised on purpose by tests (``InventoryShard.inject_commit_failures``)."""


def items_json(items: dict[int, int]) -> str:
    if len(items) == 1:
        ((sku, qty),) = items.items()
        return f'{{"{sku}":{qty}}}'
    return json.dumps({str(k): v for k, v in sorted(items.items())}, separators=(",", ":"))


def parse_items(text: str | None) -> dict[int, int]:
    return {int(k): int(v) for k, v in json.loads(text or "{}").items()}


def _chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class InventoryStore:
    """Database access for shard ``shard``; one small connection pool per shard."""

    def __init__(self, url: str, shard: int, *, engine: Engine | None = None) -> None:
        self.shard = shard
        self.engine = engine or make_engine(url, pool_size=2)
        self.ph = "%s" if self.engine.dialect.paramstyle in ("format", "pyformat") else "?"
        # SQLite's raw connections run in autocommit mode: open the write transaction.
        self._binds_client_side = is_mysql(self.engine)
        self._begin_sql = None if self._binds_client_side else "BEGIN IMMEDIATE"
        self._integrity_error = self.engine.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
        self._raw: Any = None
        self._insert_ops = (
            "INSERT INTO inventory_ops (`key`, shard, kind, state, items, result, "
            f"expires_ms, created_ms, updated_ms) VALUES ({self._in(9)})"
        )

    def _in(self, n: int) -> str:
        return ", ".join([self.ph] * n)

    # ---- reads ----------------------------------------------------------------------
    def load_stock(self, sku_ids: Sequence[int] | None = None) -> dict[int, Stock]:
        """This shard's inventory rows (all, or the given SKUs that belong to it)."""
        ph = self.ph
        base = (
            "SELECT i.sku_id, i.total, i.available, i.reserved, i.sold, i.version, "
            "s.low_stock_threshold FROM inventory i JOIN skus s ON s.id = i.sku_id "
            f"WHERE i.shard = {ph}"
        )
        out: dict[int, Stock] = {}
        with self.engine.connect() as conn:
            if sku_ids is None:
                rows = conn.exec_driver_sql(base, (self.shard,)).all()
            else:
                rows = []
                for part in _chunks(list(sku_ids)):
                    sql = f"{base} AND i.sku_id IN ({self._in(len(part))})"
                    rows.extend(conn.exec_driver_sql(sql, (self.shard, *part)).all())
        for sku_id, total, available, reserved, sold, version, threshold in rows:
            out[int(sku_id)] = Stock(
                int(total),
                int(available),
                int(reserved),
                int(sold),
                int(version),
                int(threshold or 0),
            )
        return out

    def load_open(self) -> dict[str, Record]:
        """This shard's open reservations."""
        sql = (
            "SELECT `key`, kind, state, items, result, expires_ms FROM inventory_ops "
            f"WHERE shard = {self.ph} AND state = 'reserved'"
        )
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(sql, (self.shard,)).all()
        return {r[0]: self._record(r) for r in rows}

    def lookup(self, keys: Sequence[str]) -> dict[str, Record]:
        """Records of the given keys that the database holds."""
        out: dict[str, Record] = {}
        if not keys:
            return out
        with self.engine.connect() as conn:
            for part in _chunks(list(keys)):
                sql = (
                    "SELECT `key`, kind, state, items, result, expires_ms FROM inventory_ops "
                    f"WHERE `key` IN ({self._in(len(part))})"
                )
                for r in conn.exec_driver_sql(sql, tuple(part)).all():
                    out[r[0]] = self._record(r)
        return out

    @staticmethod
    def _record(row: Any) -> Record:
        _key, kind, state, items, result, expires_ms = row
        return Record(
            kind,
            parse_items(items),
            state,
            result or "ok",
            int(expires_ms) if expires_ms is not None else None,
            stored=True,
        )

    # ---- the batch write --------------------------------------------------------------
    def write(
        self,
        changes: Changes,
        now_ms: int,
        *,
        fail: bool = False,
        extra: Sequence[Statement] = (),
    ) -> None:
        """Persist one batch in one transaction (see the module docstring). ``extra``
        statements (flash-sale rows, ``actors.flash_store``) run after the ledger's, in the
        same transaction."""
        self.write_statements([*self.statements(changes, now_ms), *extra], fail=fail)

    def write_statements(self, statements: Sequence[Statement], *, fail: bool = False) -> None:
        """Run ``statements`` (from ``statements()``, rendered beforehand so that the
        batch's values are fixed even while memory moves on) in one transaction.

        Runs on one long-lived DBAPI connection: a batch costs its statements and COMMIT,
        with no pool checkout, ping or reset round trips. Any error drops the connection's
        transaction (and the connection itself if it is broken)."""
        conn = self._writer()
        cur = conn.cursor()
        try:
            if self._begin_sql:
                cur.execute(self._begin_sql)
            for sql, params, many, expect in statements:
                if params is None:  # bound by render()
                    cur.execute(sql)
                elif many:
                    cur.executemany(sql, params)
                else:
                    cur.execute(sql, params)
                if expect is not None and cur.rowcount != expect:
                    raise StaleStock(f"inventory rows changed outside shard {self.shard}")
            if fail:
                raise InjectedFault("injected commit failure")
            conn.commit()
        except BaseException as exc:
            self._abort(conn)
            if isinstance(exc, self._integrity_error):
                raise DuplicateKey(str(exc)) from exc
            raise
        finally:
            with contextlib.suppress(Exception):  # a broken connection is dropped by _abort
                cur.close()

    def render(self, statements: Sequence[Statement]) -> list[Statement]:
        """``statements`` with their parameters bound now, by the writer connection's own
        driver (``cursor.mogrify``, the binding PyMySQL applies inside ``execute``).

        The shard renders batch N+1 while batch N's transaction is in flight, so the write
        itself only sends text: binding a few hundred rows costs about as much as the
        database's own work on them. A multi-row ``INSERT ... VALUES`` becomes one
        statement (in chunks of 500 rows), as in PyMySQL's ``executemany``. Left as they
        are: everything on SQLite (its driver binds on the server side), other
        ``executemany`` statements, and all of them while the writer is not connected
        (``write_statements`` binds them then, as before)."""
        raw = self._raw
        if raw is None or not self._binds_client_side:
            return list(statements)
        cur = raw.driver_connection.cursor()
        out: list[Statement] = []
        for sql, params, many, expect in statements:
            if params is None:
                out.append((sql, None, False, expect))
            elif not many:
                out.append((cur.mogrify(sql, params), None, False, expect))
            else:
                head, sep, row = sql.partition(" VALUES ")
                if not sep or not head.startswith("INSERT ") or not params:
                    out.append((sql, params, many, expect))
                    continue
                for part in _chunks(params):
                    rows = ",".join([cur.mogrify(row, values) for values in part])
                    out.append((f"{head} VALUES {rows}", None, False, None))
        return out

    def _writer(self) -> Any:
        if self._raw is None:
            self._raw = self.engine.raw_connection()
        return self._raw

    def _abort(self, conn: Any) -> None:
        try:
            conn.rollback()
        except Exception:
            self._raw = None
            with contextlib.suppress(Exception):
                conn.invalidate()

    def statements(self, changes: Changes, now_ms: int) -> list[Statement]:
        """(sql, params, executemany?, expected rowcount) for one batch, in order."""
        ph = self.ph
        shard = self.shard
        out: list[Statement] = []
        for part in _chunks(changes.stock, 60):
            sql, params = self._stock_update(part, now_ms)
            out.append((sql, params, False, len(part)))
        if changes.created:
            rows = [
                (
                    key,
                    shard,
                    rec.kind,
                    rec.state,
                    items_json(rec.items),
                    rec.result,
                    rec.expires_ms,
                    now_ms,
                    now_ms,
                )
                for key, rec in changes.created
            ]
            out.append((self._insert_ops, rows, True, None))
        by_state: dict[str, list[str]] = {}
        item_rows = []
        for key, rec, items_changed in changes.updated:
            if items_changed:
                item_rows.append((rec.state, items_json(rec.items), now_ms, key))
            else:
                by_state.setdefault(rec.state, []).append(key)
        for state, keys in by_state.items():
            for part in _chunks(keys):
                sql = (
                    f"UPDATE inventory_ops SET state = {ph}, updated_ms = {ph} "
                    f"WHERE `key` IN ({self._in(len(part))})"
                )
                out.append((sql, (state, now_ms, *part), False, None))
        if item_rows:
            sql = (
                f"UPDATE inventory_ops SET state = {ph}, items = {ph}, updated_ms = {ph} "
                f"WHERE `key` = {ph}"
            )
            out.append((sql, item_rows, True, None))
        if changes.adjustments:
            sql = (
                "INSERT INTO inventory_adjustments (`key`, sku_id, delta, reason, actor_id, "
                f"created_ms) VALUES ({self._in(6)})"
            )
            adj_rows = [
                (a.key, a.sku_id, a.delta, a.reason[:255], a.actor_id, now_ms)
                for a in changes.adjustments
            ]
            out.append((sql, adj_rows, True, None))
        if changes.low_stock:
            sql = (
                "INSERT INTO outbox (event_id, topic, aggregate_id, payload, created_ms) "
                f"VALUES ({self._in(5)})"
            )
            event_rows = [
                (
                    uuid.uuid4().hex,
                    LOW_STOCK_TOPIC,
                    str(e.sku_id),
                    json.dumps(
                        {
                            "sku_id": e.sku_id,
                            "available": e.available,
                            "threshold": e.threshold,
                            "shard": shard,
                        },
                        separators=(",", ":"),
                        sort_keys=True,
                    ),
                    now_ms,
                )
                for e in changes.low_stock
            ]
            out.append((sql, event_rows, True, None))
        return out

    def _stock_update(self, part: Sequence[tuple[int, Stock]], now_ms: int) -> tuple[str, tuple]:
        """One fenced UPDATE for many rows: absolute values, matched on (sku_id, version)."""
        ph = self.ph
        when = " ".join([f"WHEN {ph} THEN {ph}"] * len(part))
        params: list[int] = []
        sets = []
        for col in ("total", "available", "reserved", "sold", "version"):
            sets.append(f"{col} = CASE sku_id {when} END")
            for sku, s in part:
                params += (sku, getattr(s, col))
        params.append(now_ms)
        for sku, s in part:
            params += (sku, s.version - 1)
        params.extend(sku for sku, _ in part)
        sql = (
            f"UPDATE inventory SET {', '.join(sets)}, updated_ms = {ph} "
            f"WHERE version = CASE sku_id {when} END AND sku_id IN ({self._in(len(part))})"
        )
        return sql, tuple(params)

    def dispose(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        self.engine.dispose()
