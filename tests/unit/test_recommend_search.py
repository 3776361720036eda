"""The replica's search path without Ray: query vectors are cached, single-flight and
batched; semantic search that cannot be reached falls back to keyword search and says so;
a semantic ranking is computed once per catalog generation and index version."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from raymall.errors import Unavailable
from raymall.settings import Settings
from recommend.embedder import DIM
from recommend.query_vectors import QueryVectors, normal_form
from recommend.service import SEARCH_FALLBACKS, RecommendService
from tests.recommend_helpers import add_product


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeModel:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        await asyncio.sleep(0.01)
        if self.fail:
            raise Unavailable("model away")
        return np.stack([unit(sum(map(ord, t))) for t in texts])


async def test_identical_queries_are_embedded_once_and_kept() -> None:
    model = FakeModel()
    vectors = QueryVectors(model.embed)
    got = await asyncio.gather(*(vectors.get("Trail  Shoes") for _ in range(20)))
    assert model.calls == [["trail shoes"]]
    assert all(v is got[0] for v in got)
    assert await vectors.get("trail shoes") is got[0]  # the normal form is shared
    assert len(model.calls) == 1
    assert np.allclose(got[0], unit(sum(map(ord, "trail shoes"))))


async def test_different_queries_arriving_together_share_one_model_call() -> None:
    model = FakeModel()
    vectors = QueryVectors(model.embed)
    first = asyncio.ensure_future(vectors.get("q0"))
    await asyncio.sleep(0)  # q0 is in flight; the next ones queue behind it
    rest = await asyncio.gather(*(vectors.get(f"q{n}") for n in range(1, 30)))
    await first
    assert len(model.calls) == 2 and sorted(model.calls[1]) == sorted(f"q{n}" for n in range(1, 30))
    assert {round(float(v[0]), 6) for v in rest} == {
        round(float(unit(sum(map(ord, f"q{n}")))[0]), 6) for n in range(1, 30)
    }


async def test_the_vector_cache_is_bounded_and_failures_are_not_kept() -> None:
    model = FakeModel()
    vectors = QueryVectors(model.embed, capacity=3)
    for n in range(5):
        await vectors.get(f"q{n}")
    assert len(vectors) == 3
    await vectors.get("q0")  # evicted: embedded again
    assert model.calls[-1] == ["q0"]
    model.fail = True
    with pytest.raises(Unavailable):
        await vectors.get("new")
    model.fail = False
    await vectors.get("new")
    assert model.calls[-1] == ["new"]


def test_normal_form_is_lower_case_with_single_spaces() -> None:
    assert normal_form("  Coffee\tTHERMOS  for hiking ") == "coffee thermos for hiking"


@pytest.fixture()
def svc(sqlite_url: str) -> tuple[RecommendService, dict[str, int]]:
    from raymall.db import make_engine, session_factory

    sessions = session_factory(make_engine(sqlite_url, pool_size=2))
    made = {
        "boot": add_product(sessions, "Waterproof hiking boots", category="Boots"),
        "trail": add_product(sessions, "Trail hiking shoes", category="Boots"),
        "mug": add_product(sessions, "Enamel camp mug", category="Mugs"),
    }
    settings = Settings(env="test", recommender=True, recommender_table_max_rows=0)
    return RecommendService(settings, sessions, redis=None), made


async def test_search_falls_back_to_keyword_while_the_recommender_is_away(
    svc: tuple[RecommendService, dict[str, int]],
) -> None:
    service, made = svc
    calls: list[str] = []

    async def call(method: str, *args: Any) -> Any:
        calls.append(method)
        raise Unavailable("the recommender is unavailable")

    service.call = call  # type: ignore[method-assign]
    fallbacks = SEARCH_FALLBACKS._value.get()  # type: ignore[attr-defined]
    for mode in ("hybrid", "semantic"):
        page = await service.search("hiking", mode, 1, 10)
        assert page.mode == "keyword" and page.modes == ["keyword"]
        assert {item["id"] for item in page.items} == {made["boot"], made["trail"]}
        assert page.total == 2
    assert calls == ["embed"]  # then searches do not wait on the actor for a while
    assert SEARCH_FALLBACKS._value.get() == fallbacks + 2  # type: ignore[attr-defined]
    keyword = await service.search("hiking", "keyword", 1, 10)
    assert keyword.mode == "keyword" and keyword.total == 2


async def test_a_slow_recommender_does_not_hold_search_up(
    svc: tuple[RecommendService, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import recommend.service as service_module

    service, made = svc
    monkeypatch.setattr(service_module, "SEMANTIC_TIMEOUT_S", 0.2)

    async def call(method: str, *args: Any) -> Any:
        await asyncio.sleep(30)

    service.call = call  # type: ignore[method-assign]
    started = asyncio.get_running_loop().time()
    page = await service.search("camp mug", "hybrid", 1, 10)
    assert asyncio.get_running_loop().time() - started < 2
    assert page.mode == "keyword" and [item["id"] for item in page.items] == [made["mug"]]


async def test_hybrid_search_ranks_with_the_embedded_query(
    svc: tuple[RecommendService, dict[str, int]],
) -> None:
    service, made = svc
    calls: list[tuple[str, Any]] = []

    async def call(method: str, *args: Any) -> Any:
        calls.append((method, args[0]))
        if method == "embed":
            return np.stack([unit(1) for _ in args[0]])
        assert method == "search_vector"
        return [(made["mug"], 0.9), (made["boot"], 0.5)]

    service.call = call  # type: ignore[method-assign]
    page = await service.search("Hiking", "hybrid", 1, 10)
    assert page.mode == "hybrid" and page.modes == ["keyword", "semantic"]
    ids = [item["id"] for item in page.items]
    assert ids[0] == made["boot"]  # ranked first by both
    assert set(ids) == set(made.values())
    again = await service.search("hiking ", "semantic", 1, 10)
    assert [item["id"] for item in again.items] == [made["mug"], made["boot"]]
    assert [m for m, _ in calls].count("embed") == 1  # the vector was kept


async def test_with_the_recommender_off_every_search_is_keyword_without_an_actor_call(
    sqlite_url: str,
) -> None:
    from raymall.db import make_engine, session_factory

    sessions = session_factory(make_engine(sqlite_url, pool_size=2))
    boot = add_product(sessions, "Waterproof hiking boots", category="Boots")
    service = RecommendService(Settings(env="test", recommender=False), sessions, redis=None)

    async def call(method: str, *args: Any) -> Any:
        raise AssertionError(f"no actor call expected ({method})")

    service.call = call  # type: ignore[method-assign]
    for mode in ("hybrid", "semantic"):
        page = await service.search("hiking boots", mode, 1, 10)
        assert page.mode == "keyword" and [item["id"] for item in page.items] == [boot]


async def test_similar_reads_the_recommender_cannot_answer_are_503_with_retry_after(
    svc: tuple[RecommendService, dict[str, int]],
) -> None:
    service, made = svc

    class DownCaller:
        async def call(self, *args: Any, **kw: Any) -> Any:
            raise Unavailable("recommender-0 is unavailable (GetTimeoutError)")

    service.caller = DownCaller()  # type: ignore[assignment]
    with pytest.raises(Unavailable) as refused:
        await service.similar(made["boot"], 5, False)
    assert refused.value.retry_after == 5
    assert (await service.search("hiking", "hybrid", 1, 10)).mode == "keyword"
