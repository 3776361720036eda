"""The Recommender while Milvus is unavailable, in-process (no Ray), on SQLite and Milvus
Lite with the real model: it starts without Milvus and keeps embedding queries, reads
that need the index answer 503 with Retry-After, readiness says so quickly, and products
changed during the outage are indexed once Milvus is back (retried, not dropped)."""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymilvus.exceptions import MilvusException

from raymall.errors import Unavailable
from raymall.settings import Settings
from recommend.actor import Recommender
from recommend.index import ProductIndex
from tests.recommend_helpers import add_product, set_status


class FlakyIndex:
    """A ``ProductIndex`` whose calls fail while their name is in ``failing``."""

    def __init__(self, real: ProductIndex) -> None:
        self.real = real
        self.failing: set[str] = set()
        self.frozen = threading.Event()  # set: every call waits until it is cleared

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.real, name)
        if not callable(value):
            return value

        def call(*args: Any, **kw: Any) -> Any:
            while self.frozen.is_set():
                time.sleep(0.01)
            if name in self.failing or "*" in self.failing:
                raise MilvusException(message=f"injected: Milvus is down ({name})")
            return value(*args, **kw)

        return call


def settings_for(db_url: str, tmp_path: Path, milvus_uri: str | None = None) -> Settings:
    return Settings(
        env="test",
        database_url=db_url,
        redis_url="redis://127.0.0.1:1/0",  # the actor never uses Redis
        milvus_uri=milvus_uri or str(tmp_path / "milvus.db"),
        recommender_poll_interval_s=0.05,
        recommender_outbox_grace_s=5,
        var_dir=tmp_path,
    )


async def until(check: Callable[[], Any], timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.05)


async def stop(rec: Recommender) -> None:
    rec._stopping = True
    for task in rec._tasks:
        task.cancel()
    await asyncio.gather(*rec._tasks, return_exceptions=True)


async def ready(rec: Recommender) -> bool:
    return bool((await rec.ping())["ok"])


async def test_products_changed_while_milvus_is_away_are_indexed_when_it_is_back(
    sqlite_url: str, tmp_path: Path
) -> None:
    from raymall.db import make_engine, session_factory

    sessions = session_factory(make_engine(sqlite_url, pool_size=2))
    kept = add_product(sessions, "Insulated coffee thermos", category="Thermoses")
    dropped = add_product(sessions, "Vacuum tea flask", category="Thermoses")
    rec = Recommender(settings_for(sqlite_url, tmp_path), 0)
    try:
        await until(lambda: ready(rec), 120)
        assert rec.engine is not None
        flaky = FlakyIndex(rec.engine.index)
        rec.engine.index = flaky  # type: ignore[assignment]

        # writes fail: the products read from the outbox stay pending
        flaky.failing = {"upsert", "delete", "hashes", "flush"}
        added = add_product(sessions, "Trail running shoes", category="Running Shoes")
        set_status(sessions, dropped, "unpublished")
        await until(lambda: rec._pending >= {added, dropped})
        state = await rec.ping()
        assert state["ok"] is False and "down" in state["error"] and state["pending"] >= 2
        # then Milvus is away altogether, and another product changes meanwhile
        flaky.failing = {"*"}
        late = add_product(sessions, "Cushioned road running shoes", category="Running Shoes")
        await asyncio.sleep(0.3)
        started = time.monotonic()
        assert (await rec.ping())["ok"] is False
        assert time.monotonic() - started < 0.5  # readiness does not wait on Milvus
        # the in-memory table still answers reads, and queries are still embedded
        vector = (await rec.embed(["shoes for running"]))[0]
        assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3
        assert kept in [pid for pid, _ in await rec.search_vector(vector, 5)]

        flaky.failing = set()  # Milvus is back
        await until(lambda: ready(rec), 30)
        await rec.sync_now()
        assert rec._pending == set()
        stored = flaky.real.hashes([kept, dropped, added, late])
        assert set(stored) == {kept, added, late}  # applied once back, none dropped
        table = rec.engine.table
        assert table is not None and table.row(added) is not None and table.row(late) is not None
        assert table.row(dropped) is None
        hits = await rec.search("running shoes", 2)
        assert {pid for pid, _ in hits} == {added, late}
    finally:
        await stop(rec)


async def test_readiness_reports_a_milvus_that_stops_answering(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recommend.actor as actor_module

    monkeypatch.setattr(actor_module, "POLL_STUCK_S", 0.5)
    rec = Recommender(settings_for(sqlite_url, tmp_path), 0)
    try:
        await until(lambda: ready(rec), 120)
        assert rec.engine is not None
        flaky = FlakyIndex(rec.engine.index)
        rec.engine.index = flaky  # type: ignore[assignment]
        flaky.frozen.set()  # calls hang, as with a frozen server
        await asyncio.sleep(1.0)
        state = await rec.ping()
        assert state["ok"] is False and "waited" in state["error"]
        flaky.frozen.clear()
        await until(lambda: ready(rec), 10)
    finally:
        if rec.engine is not None and isinstance(rec.engine.index, FlakyIndex):
            rec.engine.index.frozen.clear()
        await stop(rec)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_recommender_starts_without_milvus_and_refuses_index_reads_with_503(
    sqlite_url: str, tmp_path: Path
) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    rec = Recommender(settings_for(sqlite_url, tmp_path, milvus_uri=uri), 0)
    try:
        state = await rec.ping()
        assert state["ok"] is False and state["backend"] == "server" and state["error"]
        vectors = await rec.embed(["a warm jacket", "a cold drink"])
        assert vectors.shape == (2, 384)
        with pytest.raises(Unavailable) as refused:
            await rec.search_vector(vectors[0], 5)
        assert refused.value.retry_after == 5
        with pytest.raises(Unavailable):
            await rec.similar(1, 5)
        assert (await rec.table_version())["version"] is None
    finally:
        await stop(rec)
