"""Pure parts of the recommender: the outbox tail, rank fusion, user profiles, text."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from raymall.errors import NotFound
from raymall.settings import Settings
from recommend.engine import SimilarCache
from recommend.history import parse_views, signals
from recommend.index import Hit
from recommend.ranking import Signal, reciprocal_rank_fusion, signal_weights, weighted_mean
from recommend.tail import OutboxTail
from recommend.text import ProductDoc, doc_hash, product_text

# ---- outbox tail ------------------------------------------------------------------------


def test_tail_returns_each_row_once_and_moves_the_cursor_over_contiguous_ids() -> None:
    tail = OutboxTail(cursor=0, grace_ms=1_000)
    assert tail.observe([1, 2, 3], now_ms=0) == [1, 2, 3]
    assert tail.observe([2, 3], now_ms=0) == []
    assert tail.advance(now_ms=0) == 3
    assert tail.gaps == []


def test_a_row_that_commits_late_into_a_gap_is_still_delivered() -> None:
    tail = OutboxTail(cursor=0, grace_ms=1_000)
    assert tail.observe([1, 2, 5], now_ms=100) == [1, 2, 5]
    assert tail.advance(now_ms=100) == 2  # 3 and 4 may still commit
    assert tail.gaps_to_check(10) == [(3, 4)]
    assert tail.observe([4], now_ms=200) == [4]
    assert tail.advance(now_ms=200) == 2
    assert tail.gaps_to_check(10) == [(3, 3)]
    assert tail.observe([3], now_ms=300) == [3]
    assert tail.advance(now_ms=300) == 5


def test_a_gap_that_never_fills_is_given_up_after_the_grace_period() -> None:
    tail = OutboxTail(cursor=10, grace_ms=1_000)
    tail.observe([11, 14, 20], now_ms=0)
    assert tail.advance(now_ms=999) == 11
    assert tail.advance(now_ms=1_000) == 20
    assert tail.observe([12], now_ms=1_001) == []  # below the cursor: too late


def test_rows_at_or_below_the_starting_cursor_are_ignored() -> None:
    tail = OutboxTail(cursor=7, grace_ms=0)
    assert tail.observe([5, 7, 8], now_ms=0) == [8]


def test_gaps_to_check_rotates_through_every_open_gap() -> None:
    tail = OutboxTail(cursor=0, grace_ms=10_000)
    tail.observe(list(range(2, 40, 2)), now_ms=0)  # gaps at every odd id
    gaps = {g for g in [(g.lo, g.hi) for g in tail.gaps]}
    seen: set[tuple[int, int]] = set()
    for _ in range(5):
        seen.update(tail.gaps_to_check(4))
    assert seen == gaps


def test_tail_rejects_negative_arguments() -> None:
    with pytest.raises(ValueError):
        OutboxTail(cursor=-1, grace_ms=0)


# ---- ranking ----------------------------------------------------------------------------


def test_rrf_rewards_ids_ranked_by_both_lists() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 4, 1]], k=60)
    ids = [pid for pid, _ in fused]
    assert ids[:2] == [1, 3]  # both lists rank them
    assert set(ids) == {1, 2, 3, 4}
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)


def test_rrf_counts_a_duplicate_in_one_list_once() -> None:
    fused = dict(reciprocal_rank_fusion([[5, 5, 6]], k=60))
    assert fused[5] == pytest.approx(1 / 61)
    assert fused[6] == pytest.approx(1 / 63)


def test_rrf_of_one_list_keeps_its_order() -> None:
    assert [p for p, _ in reciprocal_rank_fusion([[9, 8, 7]])] == [9, 8, 7]


def test_recent_signals_weigh_more_and_kinds_differ() -> None:
    day = 86_400_000
    now = 100 * day
    w = signal_weights(
        [Signal(1, "ordered", now), Signal(2, "ordered", now - 14 * day), Signal(3, "viewed", now)],
        now,
        half_life_ms=14 * day,
    )
    assert w[1] == pytest.approx(1.0)
    assert w[2] == pytest.approx(0.5)
    assert w[3] == pytest.approx(0.4)


def test_unknown_signal_kind_is_an_error() -> None:
    with pytest.raises(ValueError):
        signal_weights([Signal(1, "liked", 0)], 0, 1.0)


def test_weighted_mean_is_unit_length_and_leans_to_the_heavier_vector() -> None:
    a = np.array([1.0, 0.0], dtype=np.float32)
    b = np.array([0.0, 1.0], dtype=np.float32)
    mean = weighted_mean({1: a, 2: b}, {1: 3.0, 2: 1.0})
    assert mean is not None
    assert float(np.linalg.norm(mean)) == pytest.approx(1.0, abs=1e-5)
    assert mean[0] > mean[1] > 0


def test_weighted_mean_without_usable_vectors_is_none() -> None:
    a = np.array([1.0, 0.0], dtype=np.float32)
    assert weighted_mean({}, {1: 1.0}) is None
    assert weighted_mean({1: a}, {1: 0.0}) is None
    assert weighted_mean({1: a, 2: -a}, {1: 1.0, 2: 1.0}) is None


def test_history_signals_cover_orders_cart_and_views() -> None:
    out = signals([(1, 10)], [2], [(3, 30)], now_ms=99)
    assert out == [Signal(1, "ordered", 10), Signal(2, "carted", 99), Signal(3, "viewed", 30)]


def test_malformed_view_entries_are_skipped() -> None:
    assert parse_views(["12:345", "x:1", "7", "8:", "9:10"]) == [(12, 345), (9, 10)]


# ---- text -------------------------------------------------------------------------------


def _doc(**kw: object) -> ProductDoc:
    base: dict[str, object] = {
        "id": 1,
        "title": "Steel Thermos",
        "description": "Keeps drinks hot.",
        "category_id": 3,
        "category_path": ("Kitchen", "Thermoses"),
        "brand_id": 4,
        "brand_name": "Nordhaven",
        "price_cents": 1999,
        "published": True,
        "attributes": {"material": "steel", "features": ["Leak-Proof"], "nested": {"a": 1}},
    }
    base.update(kw)
    return ProductDoc(**base)  # type: ignore[arg-type]


def test_product_text_has_title_path_brand_attributes_and_description() -> None:
    text = product_text(_doc())
    assert text.startswith("Steel Thermos. Category: Kitchen > Thermoses. Brand: Nordhaven.")
    assert "features: Leak-Proof" in text and "material: steel" in text
    assert "nested" not in text
    assert text.endswith("Keeps drinks hot.")


def test_long_descriptions_are_cut_at_a_word() -> None:
    text = product_text(_doc(description="word " * 500))
    assert len(text) < 600 and not text.endswith("wor.")


def test_doc_hash_changes_with_anything_stored() -> None:
    base = doc_hash(_doc())
    assert doc_hash(_doc()) == base
    for change in (
        {"title": "Other"},
        {"category_id": 9},
        {"brand_id": None},
        {"price_cents": 1},
        {"published": False},
    ):
        assert doc_hash(_doc(**change)) != base, change
    assert 0 <= base < 2**63


# ---- similar cache ----------------------------------------------------------------------


def _hits(*ids: int) -> list[Hit]:
    return [Hit(i, 1.0 - i / 100) for i in ids]


def test_similar_cache_serves_smaller_k_and_misses_larger_k() -> None:
    cache = SimilarCache(capacity=10)
    cache.put(1, 3, _hits(2, 3, 4), cache.generation)
    assert cache.get(1, 2) == _hits(2, 3)
    assert cache.get(1, 3) == _hits(2, 3, 4)
    assert cache.get(1, 4) is None
    assert cache.stats() == {"entries": 1, "hits": 2, "misses": 1}


def test_a_write_drops_the_cache_and_stale_results_are_not_stored() -> None:
    cache = SimilarCache(capacity=10)
    cache.put(1, 2, _hits(2, 3), cache.generation)
    started_under = cache.generation
    cache.invalidate()  # a write lands while a read is computing
    assert cache.get(1, 2) is None
    cache.put(5, 2, _hits(6, 7), started_under)
    assert cache.get(5, 2) is None


def test_the_cache_is_lru_bounded_and_can_be_off() -> None:
    cache = SimilarCache(capacity=2)
    for pid in (1, 2):
        cache.put(pid, 1, _hits(9), cache.generation)
    assert cache.get(1, 1) is not None  # 1 is now the most recent
    cache.put(3, 1, _hits(9), cache.generation)
    assert cache.get(2, 1) is None and cache.get(1, 1) is not None
    off = SimilarCache(capacity=0)
    off.put(1, 1, _hits(9), off.generation)
    assert off.get(1, 1) is None


async def test_similar_json_is_the_similar_list_byte_for_byte() -> None:
    """The similar read's JSON, made from each card's kept text, is exactly
    ``json.dumps(similar)``; a card replaced in the cache (a stock flag flips) gets new
    text."""
    import json as _json

    from recommend.service import RecommendService

    svc = RecommendService(Settings(recommender=False), sessions=None, redis=None)  # type: ignore[arg-type]
    cards: dict[int, dict[str, Any]] = {
        1: {"id": 1, "status": "published", "in_stock": True, "title": "anchor"},
        2: {"id": 2, "status": "published", "in_stock": True, "title": 'Th\u00e9 \u4e2d "q"'},
        3: {"id": 3, "status": "draft", "in_stock": True, "title": "hidden"},
        4: {"id": 4, "status": "published", "in_stock": False, "price": {"min": 1.5}},
        5: {"id": 5, "status": "published", "in_stock": True, "tags": ["a", None, 2]},
    }
    hits = [(2, 0.91234567), (3, 0.9), (4, 0.5), (5, 1e-7), (9, 0.1)]

    async def neighbours(product_id: int, k: int) -> list[tuple[int, float]]:
        return hits[:k]

    async def get(ids: list[int]) -> dict[int, dict[str, Any]]:
        return {pid: cards[pid] for pid in ids if pid in cards}

    svc._neighbours = neighbours  # type: ignore[method-assign]
    svc.card_cache.get = get  # type: ignore[method-assign]
    for _ in range(2):  # the second time from the kept text
        for k, in_stock_only in ((10, False), (2, False), (10, True)):
            expected = _json.dumps(await svc.similar(1, k, in_stock_only), separators=(",", ":"))
            assert await svc.similar_json(1, k, in_stock_only) == expected
    cards[4] = {**cards[4], "in_stock": True}
    assert '"id":4' in await svc.similar_json(1, 10, True)
    with pytest.raises(NotFound):
        await svc.similar_json(3, 10, False)  # not published
