"""Changing the number of shards: who owns what, rewritten in the database while no shard runs.

Ownership is written down in three places, all by index: ``inventory.shard`` (the rows an
inventory shard loads), the keys of ``inventory_ops`` (a reservation is stored per shard
as ``{key}@{shard}``, and flash-sale holds and purchases too: ``flash:{sale}@{shard}``,
``order:{order}@{shard}``), and ``orders.shard`` (the order shard whose sweeper and
transitions own the order). Everything else a shard holds is derived from those rows when
it loads: flash sales and their purchases (``flash_sales``, ``flash_purchases``), coupon
campaigns and their claims (owned by ``shard_for("coupon-campaign:{id}")``, no index
stored), and idempotency keys (``inventory_ops``, ``orders.idempotency_key``,
``flash_purchases``, ``user_coupons``).

``reown(engine, layout)`` moves all of it to ``layout`` in ONE transaction, so a failure
leaves the old layout whole. It must run while no shard of either kind is alive (the
launcher's stop-the-world, ``raymall.launcher.reshard``): then no SKU and no user ever
has two owners, and each new shard loads exactly what it owns. Guarantees:

- stock counters and every record's state are kept; only owners and key suffixes change,
  so conservation (``total = available + reserved + sold``, ``reserved`` = open
  reservations) holds before and after, to the unit;
- a reservation whose SKUs move to several new shards is split into one record per new
  shard (``{key}@{new}`` with that shard's SKUs); parts that land on one new shard are
  merged into one record. Callers address reservations by ``{key}@{shard_for(sku)}``, so
  every open reservation, hold and flash purchase can still be confirmed, released,
  expired or given back, and every closed one still answers replays as before;
- a reservation found half settled (one part open while another was confirmed, or
  released: a caller died between its per-shard calls, which its retry or the deadline
  would heal) is settled first, as that retry would: confirmed if any part was
  confirmed (payment wins), else released. This is the only change to stock counters,
  and ``Report.settled`` lists it;
- records this module cannot place (a key without its shard suffix, tombstones of a
  release that came before its reservation: no items, so no SKU to follow) keep their
  key; ``Report.kept`` counts them.

``plan_ops`` is the pure part (no I/O, unit-tested); ``problems`` checks that a database
is laid out for given shard counts, and ``check_layout`` refuses to start an app whose
settings it is not laid out for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text

from actors.inventory_store import items_json
from raymall.db import make_engine
from raymall.domain.stock import ADJUST, CONFIRMED, REJECTED, RELEASED, RESERVE, RESERVED
from raymall.hashing import shard_for
from raymall.ids import now_ms
from raymall.settings import ConfigError, Settings

_CHUNK = 500


@dataclass(frozen=True)
class Layout:
    inventory_shards: int
    order_shards: int


def layout_of(settings: Settings) -> Layout:
    return Layout(settings.inventory_shards, settings.order_shards)


@dataclass
class OpRow:
    """One ``inventory_ops`` row."""

    key: str
    shard: int
    kind: str
    state: str
    items: dict[int, int]
    result: str
    expires_ms: int | None
    created_ms: int
    updated_ms: int


@dataclass
class OpsPlan:
    """What ``inventory_ops`` and ``inventory`` need for a new inventory shard count."""

    renames: list[tuple[str, int, str]] = field(default_factory=list)  # new key, shard, old
    deletes: list[str] = field(default_factory=list)
    inserts: list[OpRow] = field(default_factory=list)
    moves: list[tuple[int, str]] = field(default_factory=list)  # shard column only
    # sku -> (d_available, d_reserved, d_sold) of half-settled reservations settled
    stock: dict[int, list[int]] = field(default_factory=dict)
    settled: list[tuple[str, str]] = field(default_factory=list)  # (base key, new state)
    kept: int = 0


@dataclass
class Report:
    layout: Layout
    skus_moved: int = 0
    records_renamed: int = 0
    records_split_or_merged: int = 0
    records_moved: int = 0
    settled: list[tuple[str, str]] = field(default_factory=list)
    kept: int = 0
    order_users_moved: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "inventory_shards": self.layout.inventory_shards,
            "order_shards": self.layout.order_shards,
            "skus_moved": self.skus_moved,
            "records_renamed": self.records_renamed,
            "records_split_or_merged": self.records_split_or_merged,
            "records_moved": self.records_moved,
            "settled": [f"{k} -> {s}" for k, s in self.settled],
            "kept": self.kept,
            "order_users_moved": self.order_users_moved,
        }


def split_key(row: OpRow) -> str | None:
    """The key before its ``@{shard}`` suffix, if it has the suffix of its own shard."""
    base, sep, suffix = row.key.rpartition("@")
    if not sep or not base or not suffix.isdigit() or int(suffix) != row.shard:
        return None
    return base


# ---- the pure plan -------------------------------------------------------------------------
def plan_ops(rows: Iterable[OpRow], shards: int) -> OpsPlan:
    """The changes that put ``rows`` (every ``inventory_ops`` row) on ``shards`` shards
    (see the module docstring)."""
    plan = OpsPlan()
    groups: dict[str, list[OpRow]] = {}
    for row in rows:
        if row.kind == ADJUST:
            new = _one_shard(row.items, shards)
            if new is not None and new != row.shard:
                plan.moves.append((new, row.key))
            continue
        base = split_key(row) if row.kind == RESERVE else None
        if base is None:
            plan.kept += 1
            continue
        groups.setdefault(base, []).append(row)
    for base, group in groups.items():
        _plan_group(plan, base, group, shards)
    return plan


def _one_shard(items: dict[int, int], shards: int) -> int | None:
    found = {shard_for(sku, shards) for sku in items}
    return found.pop() if len(found) == 1 else None


def _plan_group(plan: OpsPlan, base: str, group: list[OpRow], shards: int) -> None:
    real = [r for r in group if r.items]
    if not real:  # tombstones only: nothing says which SKUs they stood for
        plan.kept += len(group)
        return
    if len(group) == 1:  # the common case: one part, renamed if its shard changes
        (row,) = group
        new = _one_shard(row.items, shards)
        if new is not None:
            if new != row.shard:
                plan.renames.append((f"{base}@{new}", new, row.key))
            return
    states = {r.state if r.items else RELEASED for r in group}
    if RESERVED in states and len(states) > 1:
        to = CONFIRMED if CONFIRMED in states else RELEASED
        for r in real:
            if r.state == RESERVED:
                _settle(plan, r, to)
        plan.settled.append((base, to))
    parts: dict[int, list[tuple[OpRow, dict[int, int]]]] = {}
    for row in real:
        by_shard: dict[int, dict[int, int]] = {}
        for sku, qty in row.items.items():
            by_shard.setdefault(shard_for(sku, shards), {})[sku] = qty
        for new, items in by_shard.items():
            parts.setdefault(new, []).append((row, items))
    plan.deletes.extend(r.key for r in group)
    for new, found in sorted(parts.items()):
        plan.inserts.append(_merged(base, new, found))


def _settle(plan: OpsPlan, row: OpRow, to: str) -> None:
    """Close the open part ``row`` as ``to`` (confirmed or released), with its stock."""
    for sku, qty in row.items.items():
        d = plan.stock.setdefault(sku, [0, 0, 0])
        d[1] -= qty
        if to == CONFIRMED:
            d[2] += qty
        else:
            d[0] += qty
    row.state = to


_PRECEDENCE = (RESERVED, CONFIRMED, REJECTED, RELEASED)


def _merged(base: str, shard: int, found: list[tuple[OpRow, dict[int, int]]]) -> OpRow:
    """One record from the parts of a reservation that land on one new shard; after
    settling, their states are all open or all closed (a closed merge answers replays as
    the strongest part: confirmed, then rejected, then released)."""
    state = next(s for s in _PRECEDENCE if any(r.state == s for r, _ in found))
    chosen = [r for r, _ in found if r.state == state]
    items: dict[int, int] = {}
    for _, part in found:
        items.update(part)
    deadlines = [r.expires_ms for r in chosen if r.expires_ms is not None]
    return OpRow(
        f"{base}@{shard}",
        shard,
        RESERVE,
        state,
        items,
        chosen[0].result,
        min(deadlines) if deadlines else None,
        min(r.created_ms for r, _ in found),
        now_ms(),
    )


# ---- the database ----------------------------------------------------------------------------
def _items(value: Any) -> dict[int, int]:
    if isinstance(value, dict):
        return {int(k): int(v) for k, v in value.items()}
    return {int(k): int(v) for k, v in json.loads(value or "{}").items()}


def _load_ops(conn: Connection) -> list[OpRow]:
    rows = conn.execute(
        text(
            "SELECT `key`, shard, kind, state, items, result, expires_ms, created_ms, "
            "updated_ms FROM inventory_ops"
        )
    ).all()
    return [
        OpRow(
            str(r[0]),
            int(r[1]),
            str(r[2]),
            str(r[3]),
            _items(r[4]),
            str(r[5] or "ok"),
            int(r[6]) if r[6] is not None else None,
            int(r[7]),
            int(r[8]),
        )
        for r in rows
    ]


def _chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _many(conn: Connection, sql: str, rows: Sequence[dict[str, Any]]) -> None:
    for part in _chunks(rows):
        conn.execute(text(sql), list(part))


def reown(engine: Engine, layout: Layout) -> Report:
    """Move every owner to ``layout`` in one transaction (see the module docstring). Run
    only while no inventory or order shard is alive."""
    report = Report(layout)
    now = now_ms()
    with engine.begin() as conn:
        # inventory rows
        moved = [
            {"s": shard_for(int(sku), layout.inventory_shards), "k": int(sku)}
            for sku, shard in conn.execute(text("SELECT sku_id, shard FROM inventory")).all()
            if shard_for(int(sku), layout.inventory_shards) != int(shard)
        ]
        _many(conn, "UPDATE inventory SET shard = :s WHERE sku_id = :k", moved)
        report.skus_moved = len(moved)
        # keyed records
        plan = plan_ops(_load_ops(conn), layout.inventory_shards)
        deltas = [
            {"a": a, "r": r, "s": s, "t": now, "k": sku} for sku, (a, r, s) in plan.stock.items()
        ]
        _many(
            conn,
            "UPDATE inventory SET available = available + :a, reserved = reserved + :r, "
            "sold = sold + :s, version = version + 1, updated_ms = :t WHERE sku_id = :k",
            deltas,
        )
        # a rename is of a group's only row, and groups differ in their base key: no new
        # key can be another row's old one
        _many(
            conn,
            "UPDATE inventory_ops SET `key` = :n, shard = :s, updated_ms = :t WHERE `key` = :o",
            [{"n": n, "s": s, "t": now, "o": o} for n, s, o in plan.renames],
        )
        for part in _chunks(plan.deletes):
            marks = ", ".join(f":d{i}" for i in range(len(part)))
            conn.execute(
                text(f"DELETE FROM inventory_ops WHERE `key` IN ({marks})"),
                {f"d{i}": k for i, k in enumerate(part)},
            )
        _many(
            conn,
            "INSERT INTO inventory_ops (`key`, shard, kind, state, items, result, expires_ms, "
            "created_ms, updated_ms) VALUES (:k, :s, :kind, :st, :i, :r, :e, :c, :u)",
            [
                {
                    "k": r.key,
                    "s": r.shard,
                    "kind": r.kind,
                    "st": r.state,
                    "i": items_json(r.items),
                    "r": r.result,
                    "e": r.expires_ms,
                    "c": r.created_ms,
                    "u": r.updated_ms,
                }
                for r in plan.inserts
            ],
        )
        _many(
            conn,
            "UPDATE inventory_ops SET shard = :s WHERE `key` = :k",
            [{"s": s, "k": k} for s, k in plan.moves],
        )
        report.records_renamed = len(plan.renames)
        report.records_split_or_merged = len(plan.inserts)
        report.records_moved = len(plan.moves)
        report.settled = plan.settled
        report.kept = plan.kept
        # orders: the owner of a user's orders is the user's shard
        pairs = conn.execute(text("SELECT DISTINCT user_id, shard FROM orders")).all()
        users = [
            {"s": shard_for(int(u), layout.order_shards), "u": int(u), "o": int(s)}
            for u, s in pairs
            if shard_for(int(u), layout.order_shards) != int(s)
        ]
        _many(conn, "UPDATE orders SET shard = :s WHERE user_id = :u AND shard = :o", users)
        report.order_users_moved = len(users)
    return report


def problems(engine: Engine, layout: Layout, limit: int = 5) -> list[str]:
    """Rows not owned as ``layout`` says (empty: the database is laid out for it). Checks
    every inventory row, every open reservation and every order's user."""
    out: list[str] = []
    n, m = layout.inventory_shards, layout.order_shards
    with engine.connect() as conn:
        for sku, shard in conn.execute(text("SELECT sku_id, shard FROM inventory")).all():
            if shard_for(int(sku), n) != int(shard):
                out.append(f"inventory of SKU {sku} is on shard {shard}, not {shard_for(sku, n)}")
                if len(out) >= limit:
                    return out
        sql = "SELECT `key`, shard, items FROM inventory_ops WHERE state = :s AND kind = :k"
        for key, shard, items in conn.execute(text(sql), {"s": RESERVED, "k": RESERVE}).all():
            owners = {shard_for(sku, n) for sku in _items(items)}
            if owners and owners != {int(shard)}:
                out.append(f"open reservation {key} (shard {shard}) is not on {sorted(owners)}")
                if len(out) >= limit:
                    return out
        for user, shard in conn.execute(text("SELECT DISTINCT user_id, shard FROM orders")).all():
            if shard_for(int(user), m) != int(shard):
                out.append(f"orders of user {user} are on shard {shard}, not {shard_for(user, m)}")
                if len(out) >= limit:
                    return out
    return out


def check_layout(settings: Settings) -> None:
    """Refuse (ConfigError) to serve with shard counts the database is not laid out for."""
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        found = problems(engine, layout_of(settings))
    finally:
        engine.dispose()
    if found:
        n, m = settings.inventory_shards, settings.order_shards
        raise ConfigError(
            f"the database is not laid out for RAYMALL_INVENTORY_SHARDS={n} and "
            f"RAYMALL_ORDER_SHARDS={m} ({'; '.join(found[:3])}). Serve with the counts it "
            f"was last resharded to, or stop and run `raymall reshard --inventory-shards {n} "
            f"--order-shards {m}` first."
        )
