"""Property tests of the stock ledger: random operation sequences in random batches.

After every step: conservation holds exactly, nothing is negative, ``reserved`` is the sum
of open reservations and ``sold`` the sum of confirmed ones. Replaying any recorded
operation changes nothing and answers the first result. A rolled-back batch leaves memory
exactly as before it began. A model database fed only by ``changes()`` always equals
memory after a commit, and never receives a key twice.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from raymall.domain.ledger import Ledger
from raymall.domain.shard_ops import Adjust, Confirm, Expire, Release, Reserve
from raymall.domain.stock import (
    R_INVALID,
    R_NOT_FOUND,
    R_OK,
    RELEASED,
    Changes,
    Stock,
)

SKUS = [1, 2, 3, 4]
keys = st.sampled_from([f"k{i}" for i in range(8)])
sku = st.sampled_from([*SKUS, 99])  # 99 is unknown to the shard
items = st.dictionaries(sku, st.integers(1, 4), min_size=1, max_size=3)
deadline = st.one_of(st.none(), st.integers(0, 100))


def state_of(ledger: Ledger) -> tuple[Any, Any]:
    stock = {s: v.as_dict() for s, v in ledger.stock.items()}
    records = {
        k: (r.kind, dict(r.items), r.state, r.result, r.expires_ms)
        for k, r in ledger.records.items()
    }
    return stock, records


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()
        for s in SKUS:
            self.ledger.load_stock(s, Stock(threshold=2))
        self.db_stock = {s: (0, 0, 0, 0) for s in SKUS}
        self.db_records: dict[str, tuple[str, dict[int, int], str]] = {}
        self.history: list[tuple[tuple[Any, ...], str]] = []
        self.committed_history: list[tuple[tuple[Any, ...], str]] = []
        self.first: dict[str, str] = {}
        self.before_batch: tuple[Any, Any] | None = None

    # ---- batches ----------------------------------------------------------------------
    @precondition(lambda self: not self.ledger.in_batch)
    @rule()
    def begin(self) -> None:
        self.before_batch = state_of(self.ledger)
        self.first_before = dict(self.first)
        self.ledger.begin()

    @precondition(lambda self: self.ledger.in_batch)
    @rule()
    def commit(self) -> None:
        self.persist(self.ledger.changes())
        self.ledger.commit()
        self.committed_history.extend(self.history)
        self.history = []
        self.assert_database_equals_memory()

    @precondition(lambda self: self.ledger.in_batch)
    @rule()
    def rollback(self) -> None:
        self.ledger.rollback()
        assert state_of(self.ledger) == self.before_batch
        self.first = self.first_before
        self.history = []

    def persist(self, ch: Changes) -> None:
        for s, v in ch.stock:
            self.db_stock[s] = (v.total, v.available, v.reserved, v.sold)
        for key, rec in ch.created:
            assert key not in self.db_records, f"{key} inserted twice"
            self.db_records[key] = (rec.kind, dict(rec.items), rec.state)
        for key, rec, _ in ch.updated:
            assert key in self.db_records, f"{key} updated before it was inserted"
            self.db_records[key] = (rec.kind, dict(rec.items), rec.state)

    def assert_database_equals_memory(self) -> None:
        mem_stock = {
            s: (v.total, v.available, v.reserved, v.sold) for s, v in self.ledger.stock.items()
        }
        assert mem_stock == self.db_stock
        mem_records = {k: (r.kind, dict(r.items), r.state) for k, r in self.ledger.records.items()}
        assert mem_records == self.db_records

    # ---- operations (always inside a batch) -------------------------------------------
    def do(self, op: tuple[Any, ...]) -> str:
        created = type(op) in (Reserve, Adjust) and op[0] not in self.ledger.records
        result = self.ledger.apply(op)
        self.history.append((op, result))
        if created and result != R_INVALID:
            self.first[op[0]] = result  # the answer of the op that created the record
        return result

    @precondition(lambda self: self.ledger.in_batch)
    @rule(key=keys, items=items, expires=deadline)
    def reserve(self, key: str, items: dict[int, int], expires: int | None) -> None:
        self.do(Reserve(key, items, expires))

    @precondition(lambda self: self.ledger.in_batch)
    @rule(key=keys)
    def release(self, key: str) -> None:
        self.do(Release(key))

    @precondition(lambda self: self.ledger.in_batch)
    @rule(key=keys)
    def confirm(self, key: str) -> None:
        self.do(Confirm(key))

    @precondition(lambda self: self.ledger.in_batch)
    @rule(key=st.sampled_from([f"a{i}" for i in range(4)]) | keys, s=sku, delta=st.integers(-6, 12))
    def adjust(self, key: str, s: int, delta: int) -> None:
        self.do(Adjust(key, s, delta, "test", None))

    @precondition(lambda self: self.ledger.in_batch)
    @rule(now=st.integers(0, 120))
    def sweep(self, now: int) -> None:
        for key in self.ledger.due(now):
            assert self.ledger.apply(Expire(key, now)) == R_OK

    @precondition(lambda self: self.ledger.in_batch and (self.history or self.committed_history))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        past = self.committed_history + self.history
        op, first_result = data.draw(st.sampled_from(past))
        if first_result == R_INVALID or (type(op) is Confirm and first_result == R_NOT_FOUND):
            return  # nothing was recorded under this key: not a replay
        before = state_of(self.ledger)
        result = self.ledger.apply(op)
        assert state_of(self.ledger) == before, f"replay of {op} changed state"
        if type(op) is Reserve:
            first = self.first.get(op.key, "released")  # else a release left a tombstone
            rec = self.ledger.records[op.key]
            if rec.kind != "reserve" or (rec.items and rec.items != op.items):
                assert result == "key_reused"
            elif first == R_OK and rec.state == RELEASED:
                assert result == "released"
            else:
                assert result == first
        elif type(op) is Adjust:
            rec = self.ledger.records[op.key]
            if rec.kind == "adjust" and rec.items == {op.sku_id: op.delta}:
                assert result == self.first[op.key]
            else:
                assert result == "key_reused"
        elif type(op) in (Release, Confirm):
            assert result == first_result

    # ---- invariants -------------------------------------------------------------------
    @invariant()
    def conservation_and_sums_hold(self) -> None:
        assert self.ledger.violations() == []


LedgerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerProperties = LedgerMachine.TestCase
