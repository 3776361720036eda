"""The in-memory vector table and a replica's copy of it: exact search that ranks as Milvus
Lite does, immutable generations, batched replica reads that follow the actor's table."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recommend.index import ProductIndex
from recommend.replica import ReplicaTable
from recommend.text import ProductDoc
from recommend.vectors import VectorTable


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _brute(ids: np.ndarray, vectors: np.ndarray, q: np.ndarray, k: int, skip: int) -> list[int]:
    scores = vectors @ q
    order = sorted(range(len(ids)), key=lambda n: -scores[n])
    return [int(ids[n]) for n in order if int(ids[n]) != skip][:k]


def _vec(table: VectorTable, pid: int) -> np.ndarray:
    found = table.vector(pid)
    assert found is not None, pid
    return found


def test_build_sorts_by_id_and_finds_rows() -> None:
    rng = np.random.default_rng(3)
    vectors = _unit(rng, 4)
    table = VectorTable.build([30, 10, 40, 20], vectors)
    assert table.ids.tolist() == [10, 20, 30, 40] and table.generation == 0 and len(table) == 4
    assert table.row(30) == 2 and table.row(25) is None and table.row(99) is None
    assert np.array_equal(_vec(table, 10), vectors[1])
    with pytest.raises(ValueError):
        table.vectors[0, 0] = 1.0  # read-only: a table never changes under a reader
    with pytest.raises(ValueError):
        VectorTable.build([1, 1], _unit(rng, 2))


def test_with_changes_is_a_new_generation_and_leaves_the_old_one_alone() -> None:
    rng = np.random.default_rng(4)
    first = VectorTable.build([1, 2, 3], _unit(rng, 3))
    replaced, added = _unit(rng, 2)
    second = first.with_changes([2, 7], np.stack([replaced, added]), delete_ids=[3, 99])
    assert second.version == (first.epoch, 1)
    assert second.ids.tolist() == [1, 2, 7]
    assert np.array_equal(_vec(second, 2), replaced) and np.array_equal(_vec(second, 7), added)
    assert first.ids.tolist() == [1, 2, 3] and not np.array_equal(_vec(first, 2), replaced)
    assert VectorTable.build([1], _unit(rng, 1)).epoch != first.epoch  # a new lineage


def test_nearest_is_exact_and_leaves_out_excluded_ids() -> None:
    rng = np.random.default_rng(5)
    ids = np.arange(100, 400, dtype=np.int64)
    vectors = _unit(rng, len(ids))
    table = VectorTable.build(ids, vectors)
    queries = vectors[[0, 17, 250]]
    found = table.nearest(queries, 10, [[100], [117], [350]])
    for q, skip, pairs in zip(queries, (100, 117, 350), found, strict=True):
        assert [pid for pid, _ in pairs] == _brute(ids, vectors, q, 10, skip)
        scores = [s for _, s in pairs]
        assert scores == sorted(scores, reverse=True)
    everything = table.nearest(queries[:1], 1_000)[0]
    assert len(everything) == len(ids) and everything[0] == (100, pytest.approx(1.0, abs=1e-5))
    assert VectorTable.empty().nearest(queries, 5) == [[], [], []]


def test_nearest_agrees_with_milvus_lite(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    n = 500
    vectors = _unit(rng, n)
    docs = [
        ProductDoc(
            id=i + 1,
            title=f"p{i}",
            description="",
            category_id=1,
            category_path=("c",),
            brand_id=None,
            brand_name=None,
            price_cents=100,
            published=True,
        )
        for i in range(n)
    ]
    index = ProductIndex(str(tmp_path / "milvus.db"), "products")
    try:
        index.ensure()
        index.upsert(docs, vectors, [0] * n)
        index.flush()
        ids, stored = index.all_vectors()
        assert sorted(ids.tolist()) == list(range(1, n + 1))
        table = VectorTable.build(ids, stored)
        queries = _unit(rng, 8)
        milvus = index.search(queries, 10)
        mine = table.nearest(queries, 10)
        overlap = 0
        for theirs, ours in zip(milvus, mine, strict=True):
            exact = dict(ours)
            overlap += len(exact.keys() & {h.id for h in theirs})
            for h in theirs:  # same cosine for the products both return
                assert h.id not in exact or abs(exact[h.id] - h.score) < 1e-4
            # exact search never ranks below the index: its k-th score is the best possible
            assert ours[-1][1] >= theirs[-1].score - 1e-4
        print(f"overlap with Milvus Lite's top 10: {overlap / 80:.2f}")
        assert overlap >= 0.9 * 80
    finally:
        index.close()


class _Actor:
    """The two actor methods a replica calls, over a table that tests replace."""

    def __init__(self, table: VectorTable | None) -> None:
        self.table: VectorTable | None = table
        self.fetches = 0
        self.down = False
        self.loading = False

    async def __call__(self, method: str, *args: Any) -> Any:
        if self.down:
            raise ConnectionError("actor restarting")
        if method == "table_version":
            version = None if self.table is None else list(self.table.version)
            return {"version": version, "loading": self.table is None and self.loading}
        if method == "table":
            self.fetches += 1
            return self.table
        raise AssertionError(method)


def test_a_replica_follows_the_actor_table_and_ranks_in_batches() -> None:
    rng = np.random.default_rng(7)
    vectors = _unit(rng, 50)
    actor = _Actor(VectorTable.build(range(1, 51), vectors))

    async def scenario() -> None:
        replica = ReplicaTable(actor, refresh_s=0.01)
        assert await replica.neighbours(1, 5) is None  # no copy yet: the caller asks the actor
        assert await replica.refresh() is True and actor.fetches == 1
        assert await replica.refresh() is False and actor.fetches == 1  # same version
        asks = [replica.neighbours(pid, 5) for pid in range(1, 21)]
        answers = await asyncio.gather(*asks)
        for pid, pairs in zip(range(1, 21), answers, strict=True):
            assert pairs is not None
            ids = np.arange(1, 51)
            assert [p for p, _ in pairs] == _brute(ids, vectors, vectors[pid - 1], 5, pid)
        assert await replica.neighbours(77, 5) is None  # not in the copy
        assert await replica.neighbours(1, 5) == answers[0]  # again: the list kept
        before = await replica.neighbours(1, 1)
        assert before is not None and before[0][0] != 77
        # a write on the actor: the replica's follower picks it up, and the lists kept
        # for the old table are not served from the new one
        new = vectors[0] * 0.9 + _unit(rng, 1)[0] * 0.1
        new /= np.linalg.norm(new)
        assert actor.table is not None
        actor.table = actor.table.with_changes([77], new[None, :])
        replica.start()
        for _ in range(200):
            if replica.table is not None and replica.table.version == actor.table.version:
                break
            await asyncio.sleep(0.01)
        first = await replica.neighbours(1, 1)
        assert first is not None and first[0][0] == 77
        # the actor going away keeps the copy; the actor dropping its table drops it
        actor.down = True
        await asyncio.sleep(0.05)
        assert replica.table is not None and await replica.neighbours(77, 1) is not None
        actor.down = False
        actor.table, actor.loading = None, True  # restarted, still loading: keep the copy
        await asyncio.sleep(0.05)
        assert replica.table is not None and await replica.neighbours(77, 1) is not None
        actor.loading = False  # no table at all (off, or too large)
        await asyncio.sleep(0.1)
        assert replica.table is None and await replica.neighbours(1, 1) is None
        replica.stop()

    asyncio.run(scenario())


def _same_ranking(listed: list[tuple[int, float]], ranked: list[tuple[int, float]]) -> bool:
    """The same scores place by place; products whose cosines agree to float32 rounding
    may swap places, or swap in and out at the end (the lists come from matrix products,
    ``nearest`` from matrix-vector products)."""
    if len(listed) != len(ranked):
        return False
    if any(abs(a - b) > 1e-5 for (_, a), (_, b) in zip(listed, ranked, strict=True)):
        return False
    boundary = ranked[-1][1] if ranked else 0.0
    differ = {i for i, _ in listed} ^ {i for i, _ in ranked}
    return all(abs(score - boundary) < 1e-5 for i, score in listed + ranked if i in differ)


def _lists_match_search(table: VectorTable, rng: np.random.Generator, samples: int = 60) -> None:
    from recommend.vectors import KNN

    for pid in rng.choice(table.ids, min(samples, len(table))):
        listed = table.neighbours(int(pid), KNN)
        assert listed is not None
        ranked = table.nearest(_vec(table, int(pid))[None, :], KNN, [[int(pid)]])[0]
        assert int(pid) not in [i for i, _ in listed]
        assert _same_ranking(listed, ranked), (pid, listed[:5], ranked[:5])


def test_neighbour_lists_are_the_search_results_and_follow_every_change() -> None:
    from recommend.vectors import KNN

    rng = np.random.default_rng(11)
    table = VectorTable.build(np.arange(1, 601), _unit(rng, 600))
    _lists_match_search(table, rng)
    assert table.neighbours(1, KNN + 1) is None  # longer lists are searched
    assert table.neighbours(99_999, 5) is None  # not in the table
    next_id = 601
    for step in range(25):  # small changes: lists are updated, not rebuilt
        upsert = [int(i) for i in rng.choice(table.ids, 2, replace=False)] + [next_id]
        next_id += 1
        delete = [int(rng.choice(table.ids))] if step % 3 == 0 else []
        delete = [d for d in delete if d not in upsert]
        table = table.with_changes(upsert, _unit(rng, len(upsert)), delete_ids=delete)
        for gone in delete:
            assert table.neighbours(gone, 5) is None
            assert table.knn_ids is not None and gone not in table.knn_ids
        _lists_match_search(table, rng, samples=20)
    rebuilt = VectorTable.build(table.ids, table.vectors)
    assert rebuilt.knn_ids is not None and table.knn_ids is not None
    differs = np.flatnonzero((rebuilt.knn_ids != table.knn_ids).any(axis=1))
    for row in differs:  # only near-ties may be ordered differently
        pid = int(table.ids[row])
        assert _same_ranking(table.neighbours(pid, KNN) or [], rebuilt.neighbours(pid, KNN) or [])


def test_a_small_table_lists_every_other_product() -> None:
    rng = np.random.default_rng(5)
    table = VectorTable.build([10, 20, 30], _unit(rng, 3))
    listed = table.neighbours(20, 10)
    assert listed is not None and sorted(i for i, _ in listed) == [10, 30]
    grown = table.with_changes([40], _unit(rng, 1))
    assert sorted(i for i, _ in grown.neighbours(20, 10) or []) == [10, 30, 40]
    assert VectorTable.build([1], _unit(rng, 1)).neighbours(1, 5) == []
