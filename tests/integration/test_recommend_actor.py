"""The Recommender actor on MariaDB and Milvus Lite: it follows the catalog through the
outbox (freshness, unpublish, late commits), survives being killed, and reindexes.

The actor runs in its own namespace so it never meets the app's ``recommender-0``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from actors.registry import actor_options
from raymall.db import make_engine, session_factory, transaction
from raymall.settings import Settings
from tests.conftest import SERVER_DB, make_mysql_database
from tests.recommend_helpers import add_product, product_event, set_status

pytestmark = pytest.mark.integration
FRESHNESS_S = 5.0  # the acceptance bound: a new product is in similar results within 5 s


def wait_for(check: Callable[[], Any], timeout_s: float, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(every_s)


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    if not SERVER_DB:
        pytest.skip("RAYMALL_TEST_DATABASE_URL not set")
    url, drop = make_mysql_database(SERVER_DB)
    yield url
    drop()


@pytest.fixture(scope="module")
def rec(
    ray_session: Settings, db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    import ray

    from recommend.actor import Recommender

    sessions = session_factory(make_engine(db_url, pool_size=2))
    seed = [
        add_product(sessions, "Insulated stainless coffee thermos", category="Thermoses"),
        add_product(sessions, "Vacuum flask keeps tea hot", category="Thermoses"),
        add_product(sessions, "Trail running shoes with grippy soles", category="Running Shoes"),
        add_product(sessions, "Cushioned road running shoes", category="Running Shoes"),
    ]
    settings = Settings(
        env="test",
        database_url=db_url,
        redis_url="redis://127.0.0.1:1/0",  # the actor never uses Redis
        milvus_uri=str(tmp_path_factory.mktemp("milvus") / "milvus.db"),
        namespace=f"rec-it-{secrets.token_hex(3)}",
        recommender_poll_interval_s=0.2,
        recommender_outbox_grace_s=5,
        var_dir=Path(tmp_path_factory.mktemp("var")),
    )
    cls = ray.remote(Recommender)
    actor = cls.options(**actor_options(settings, "recommender-0")).remote(settings, 0)
    ray.get(actor.check_alive.remote(), timeout=300)
    wait_for(lambda: ray.get(actor.ping.remote())["ok"], 120, 0.5)
    yield {"actor": actor, "sessions": sessions, "seed": seed, "settings": settings}
    ray.kill(actor, no_restart=True)


def similar_ids(actor: Any, product_id: int, k: int = 10) -> list[int]:
    """Neighbour ids; [] while the actor is restarting or its index is not open yet (it
    answers ``unavailable`` then; callers wait for a condition)."""
    import ray
    from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

    from raymall.errors import Unavailable

    try:
        hits = ray.get(actor.similar.remote(product_id, k), timeout=60)
    except (ActorUnavailableError, RayActorError):
        return []
    except RayTaskError as exc:
        if isinstance(exc, Unavailable) or isinstance(getattr(exc, "cause", None), Unavailable):
            return []
        raise
    return [] if hits is None else [pid for pid, _ in hits]


def test_the_first_start_builds_the_index_from_the_database(rec: dict[str, Any]) -> None:
    import ray

    stats = ray.get(rec["actor"].stats.remote())
    assert stats["rows"] >= 4 and stats["synced"]
    thermos, flask = rec["seed"][0], rec["seed"][1]
    assert similar_ids(rec["actor"], thermos, 1) == [flask]


def test_a_new_product_appears_in_similar_results_within_5s(rec: dict[str, Any]) -> None:
    actor, sessions = rec["actor"], rec["sessions"]
    created = time.monotonic()
    new = add_product(sessions, "Double wall thermos bottle for hot coffee", category="Thermoses")
    wait_for(lambda: new in similar_ids(actor, rec["seed"][0]), FRESHNESS_S)
    print(f"visible after {time.monotonic() - created:.2f}s")


def test_an_unpublished_product_disappears(rec: dict[str, Any]) -> None:
    actor, sessions = rec["actor"], rec["sessions"]
    gone = add_product(sessions, "Leak-proof insulated thermos flask", category="Thermoses")
    wait_for(lambda: gone in similar_ids(actor, rec["seed"][0]), FRESHNESS_S)
    set_status(sessions, gone, "unpublished")
    wait_for(lambda: gone not in similar_ids(actor, rec["seed"][0]), FRESHNESS_S)
    assert similar_ids(actor, gone) == []  # and asking about it finds nothing


def test_a_row_committing_late_into_an_outbox_gap_is_applied(rec: dict[str, Any]) -> None:
    """Ids are allocated at insert but committed in any order: a lower id showing up after
    a higher one was read must still be applied."""
    import ray

    actor, sessions = rec["actor"], rec["sessions"]
    with sessions() as s:
        top = int(s.execute(text("SELECT COALESCE(MAX(id), 0) FROM outbox")).scalar_one())
    with transaction(sessions) as s:  # a later event, committed first, leaving a gap below
        later = product_event(rec["seed"][2], "product.upserted")
        later.id = top + 10
        s.add(later)
    wait_for(lambda: ray.get(actor.stats.remote())["high"] >= top + 10, FRESHNESS_S)
    late = add_product(
        sessions, "Running shoe for marathons", category="Running Shoes", outbox=False
    )
    with transaction(sessions) as s:
        event = product_event(late, "product.upserted")
        event.id = top + 5
        s.add(event)
    wait_for(lambda: late in similar_ids(actor, rec["seed"][3]), FRESHNESS_S)


def test_a_replica_copy_of_the_index_sees_new_and_unpublished_products_within_5s(
    rec: dict[str, Any],
) -> None:
    """What a Serve replica does for similar products: rank from its copy of the actor's
    in-memory index, refreshed by version; the database check hides unpublished ones."""
    import asyncio

    from raymall.errors import NotFound
    from recommend.service import RecommendService

    sessions, anchor = rec["sessions"], rec["seed"][0]
    # no Redis: no card cache, so the direct status change below (which, unlike the
    # catalog service, bumps no catalog generation) is seen by the database check
    svc = RecommendService(rec["settings"], sessions, redis=None)
    assert svc.replica is not None

    async def until(check: Callable[[], Any], timeout_s: float) -> float:
        started = time.monotonic()
        while not await check():
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"condition not met within {timeout_s}s")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def from_copy(pid: int) -> bool:
        table = svc.replica.table  # type: ignore[union-attr]
        return table is not None and table.row(pid) is not None

    async def listed(pid: int) -> bool:
        cards = await svc.similar(anchor, 10, False)
        return pid in [c["id"] for c in cards] and await from_copy(pid)

    async def scenario() -> None:
        svc.start()
        await until(lambda: from_copy(anchor), 30)
        new = add_product(sessions, "Insulated thermos mug for hot coffee", category="Thermoses")
        seen = await until(lambda: listed(new), FRESHNESS_S)
        print(f"in the replica's similar list after {seen:.2f}s")
        set_status(sessions, new, "unpublished")
        assert new not in [c["id"] for c in await svc.similar(anchor, 10, False)]
        with pytest.raises(NotFound):
            await svc.similar(new, 5, False)

        async def dropped() -> bool:
            return not await from_copy(new)

        await until(dropped, FRESHNESS_S)
        svc.replica.stop()  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_killing_the_actor_loses_nothing(rec: dict[str, Any]) -> None:
    import ray

    actor, sessions = rec["actor"], rec["sessions"]
    ray.get(actor.sync_now.remote())
    before = ray.get(actor.stats.remote())["rows"]
    ray.kill(actor, no_restart=False)
    # written while the actor is down: picked up from the persisted cursor on restart
    during = add_product(sessions, "Ultralight thermos for hikers", category="Thermoses")
    wait_for(lambda: _answers(actor), 180, 0.5)
    wait_for(lambda: during in similar_ids(actor, rec["seed"][0]), 60)
    stats = ray.get(actor.stats.remote())
    assert stats["rows"] == before + 1
    assert ray.get(actor.ping.remote())["ok"]


def _answers(actor: Any) -> bool:
    import ray

    try:
        return bool(ray.get(actor.check_alive.remote(), timeout=5)["ok"])
    except Exception:
        return False


def test_reindex_through_the_actor_matches_the_database(rec: dict[str, Any]) -> None:
    import ray

    actor, sessions = rec["actor"], rec["sessions"]
    with sessions() as s:
        published = int(
            s.execute(text("SELECT COUNT(*) FROM products WHERE status='published'")).scalar_one()
        )
    summary = ray.get(actor.reindex.remote(2), timeout=300)
    assert summary["products"] == published
    assert ray.get(actor.stats.remote())["rows"] == published
    after = add_product(sessions, "Thermos with a cup lid", category="Thermoses")
    wait_for(lambda: after in similar_ids(actor, rec["seed"][0]), FRESHNESS_S)


def test_raymall_reindex_goes_through_the_running_actor(rec: dict[str, Any]) -> None:
    """The app's actor holds the Milvus Lite data, so the command hands the rebuild to it."""
    from recommend.reindex import reindex

    summary = reindex(rec["settings"], batch_size=50)
    assert summary["via"] == "actor"
    assert summary["products"] == summary["rows"] >= 4
