"""The reshard plan of ``inventory_ops`` (actors.reshard.plan_ops): keys follow their SKUs
to the new shards, split and merged, with states, deadlines and stock kept."""

from __future__ import annotations

import random

from actors.reshard import OpRow, OpsPlan, plan_ops
from raymall.hashing import shard_for


def row(base: str, shard: int, items: dict[int, int], state: str = "reserved", **kw) -> OpRow:
    kind = kw.pop("kind", "reserve")
    key = kw.pop("key", f"{base}@{shard}")
    return OpRow(key, shard, kind, state, items, kw.pop("result", "ok"), kw.pop("exp", None), 1, 1)


def skus_on(old: int, new_shards: int, count: int, *, old_shards: int) -> list[int]:
    """SKUs on ``old`` (of ``old_shards``) spread over at least two of ``new_shards``."""
    found = [s for s in range(1, 5000) if shard_for(s, old_shards) == old]
    out: list[int] = []
    for s in found:
        if not out or shard_for(s, new_shards) not in {shard_for(o, new_shards) for o in out}:
            out.append(s)
        if len(out) == count:
            return out
    raise AssertionError("no SKUs found")


def apply(rows: list[OpRow], plan: OpsPlan) -> dict[str, OpRow]:
    """The table after the plan, as the database would hold it."""
    table = {r.key: r for r in rows}
    for new, shard, old in plan.renames:
        r = table.pop(old)
        table[new] = OpRow(new, shard, r.kind, r.state, r.items, r.result, r.expires_ms, 1, 1)
    for key in plan.deletes:
        table.pop(key, None)
    for r in plan.inserts:
        assert r.key not in table
        table[r.key] = r
    for shard, key in plan.moves:
        table[key].shard = shard
    return table


def test_a_single_sku_reservation_is_renamed_to_its_new_shard() -> None:
    sku = next(s for s in range(1, 999) if shard_for(s, 4) != shard_for(s, 6))
    old, new = shard_for(sku, 4), shard_for(sku, 6)
    plan = plan_ops([row(f"order:{sku}", old, {sku: 2}, exp=99)], 6)
    assert plan.renames == [(f"order:{sku}@{new}", new, f"order:{sku}@{old}")]
    assert not plan.inserts and not plan.deletes and not plan.stock


def test_a_reservation_split_by_the_new_count_keeps_its_state_and_deadline() -> None:
    a, b = skus_on(1, 6, 2, old_shards=4)
    plan = plan_ops([row("order:7", 1, {a: 1, b: 3}, exp=123)], 6)
    assert plan.deletes == ["order:7@1"]
    got = {r.key: (r.shard, r.items, r.state, r.expires_ms) for r in plan.inserts}
    sa, sb = shard_for(a, 6), shard_for(b, 6)
    assert got == {
        f"order:7@{sa}": (sa, {a: 1}, "reserved", 123),
        f"order:7@{sb}": (sb, {b: 3}, "reserved", 123),
    }


def test_parts_that_land_on_one_shard_merge_into_one_record() -> None:
    a = next(s for s in range(1, 999) if shard_for(s, 4) == 0 and shard_for(s, 1) == 0)
    b = next(s for s in range(1, 999) if shard_for(s, 4) == 2)
    rows = [row("order:8", 0, {a: 1}, "confirmed"), row("order:8", 2, {b: 2}, "confirmed")]
    plan = plan_ops(rows, 1)
    assert sorted(plan.deletes) == ["order:8@0", "order:8@2"]
    ((merged),) = plan.inserts
    assert (merged.key, merged.items, merged.state) == ("order:8@0", {a: 1, b: 2}, "confirmed")
    assert not plan.stock


def test_a_half_confirmed_reservation_is_confirmed_and_a_half_released_one_released() -> None:
    a = next(s for s in range(1, 999) if shard_for(s, 4) == 0)
    b = next(s for s in range(1, 999) if shard_for(s, 4) == 1)
    paid = [row("order:1", 0, {a: 1}, "confirmed"), row("order:1", 1, {b: 2})]
    dead = [row("order:2", 0, {a: 4}, "released"), row("order:2", 1, {b: 5})]
    plan = plan_ops(paid + dead, 2)
    assert sorted(plan.settled) == [("order:1", "confirmed"), ("order:2", "released")]
    # b: 2 reserved -> sold, 5 reserved -> available
    assert plan.stock == {b: [5, -7, 2]}
    states = {r.key.split("@")[0]: set() for r in plan.inserts}
    for r in plan.inserts:
        states[r.key.split("@")[0]].add(r.state)
    assert states == {"order:1": {"confirmed"}, "order:2": {"released"}}


def test_adjustments_move_and_unplaceable_records_are_kept() -> None:
    sku = next(s for s in range(1, 999) if shard_for(s, 4) != shard_for(s, 3))
    rows = [
        row("x", shard_for(sku, 4), {sku: 5}, "applied", kind="adjust", key="adj:1"),
        row("t", 2, {}, "released", result="released"),  # a tombstone
        row("raw", 1, {sku: 1}, key="no-suffix"),
        row("bad", 1, {sku: 1}, key="bad@3"),  # a suffix that is not its shard
    ]
    plan = plan_ops(rows, 3)
    assert plan.moves == [(shard_for(sku, 3), "adj:1")]
    assert plan.kept == 3 and not plan.renames and not plan.inserts


def test_random_layouts_keep_every_open_unit_addressable_by_its_new_key() -> None:
    rng = random.Random(28)
    for old, new in ((4, 6), (6, 3), (3, 4), (2, 1), (1, 5)):
        rows: list[OpRow] = []
        for n in range(300):
            skus = rng.sample(range(1, 200), rng.randint(1, 4))
            by_old: dict[int, dict[int, int]] = {}
            for s in skus:
                by_old.setdefault(shard_for(s, old), {})[s] = rng.randint(1, 3)
            state = rng.choice(["reserved", "confirmed", "released", "rejected"])
            for shard, items in by_old.items():
                rows.append(row(f"order:{n}", shard, items, state, exp=n))
        before_open = _open_units(rows)
        plan = plan_ops([OpRow(**vars(r)) for r in rows], new)
        assert not plan.settled and not plan.stock and plan.kept == 0
        table = apply(rows, plan)
        assert _open_units(list(table.values())) == before_open
        for key, r in table.items():
            base, _, suffix = key.rpartition("@")
            assert int(suffix) == r.shard
            assert {shard_for(s, new) for s in r.items} == {r.shard}
        for r in rows:
            for s in r.items:
                moved = table[f"{r.key.rpartition('@')[0]}@{shard_for(s, new)}"]
                assert moved.items[s] == r.items[s] and moved.state == r.state


def _open_units(rows: list[OpRow]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in rows:
        if r.state == "reserved":
            for s, q in r.items.items():
                out[s] = out.get(s, 0) + q
    return out
