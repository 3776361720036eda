"""bench/catalog_bench.py's pieces that decide what it reports: the comparison of the two
servers' answers, the ratios over interleaved rounds, the targets, and the peer's cursor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path[:0] = [str(BENCH), str(BENCH / "peers")]

from catalog_checks import CheckFailed, compare  # noqa: E402
from catalog_report import summarize, verdict  # noqa: E402
from plain_shop import first_image, next_cursor  # noqa: E402

from raymall.catalog.listing import decode_cursor, encode_cursor  # noqa: E402


def test_fields_only_raymall_has_are_named_once_and_fail_nothing() -> None:
    peer = {"id": 1, "skus": [{"id": 2, "available": 3}, {"id": 4, "available": 0}]}
    ours = {
        "id": 1,
        "as_of": 5,
        "skus": [{"id": 2, "available": 3, "v": 1}, {"id": 4, "available": 0, "v": 2}],
    }
    assert compare(peer, ours) == {"as_of", "skus[].v"}


@pytest.mark.parametrize(
    "ours",
    [
        {"id": 1, "skus": [{"id": 2, "available": 4}]},  # another value
        {"id": 1, "skus": [{"id": 2}]},  # a field missing
        {"id": 1, "skus": [{"id": 2, "available": 3}, {"id": 5, "available": 1}]},  # an extra SKU
        {"id": 1, "skus": [{"id": 2, "available": 3.0}]},  # another type
        {"id": True, "skus": [{"id": 2, "available": 3}]},
    ],
)
def test_any_difference_in_what_the_peer_answers_fails(ours: dict[str, Any]) -> None:
    with pytest.raises(CheckFailed):
        compare({"id": 1, "skus": [{"id": 2, "available": 3}]}, ours)


def test_the_peer_encodes_the_listing_cursor_as_raymall_does() -> None:
    cursor = next_cursor(1_765_000_000_123, 42)
    assert cursor == encode_cursor({"s": "newest", "v": 1_765_000_000_123, "i": 42})
    assert decode_cursor(cursor) == {"s": "newest", "v": 1_765_000_000_123, "i": 42}


def test_the_card_image_is_the_first_image_or_none() -> None:
    assert first_image('["a.webp","b.webp"]') == "a.webp"
    assert first_image("[]") is None
    assert first_image(None) is None


def run(rnd: int, endpoint: str, server: str, rps: float, p99: float = 20.0) -> dict[str, Any]:
    return {
        "round": rnd,
        "endpoint": endpoint,
        "server": server,
        "rps": rps,
        "p50_ms": p99 / 4,
        "p99_ms": p99,
        "non_2xx": 0,
        "socket_errors": 0,
        "requests": int(rps * 10),
        "cores": {"peer" if server == "peer" else "raymall ServeReplica": 0.5},
    }


def test_ratios_are_the_median_of_each_rounds_ratio() -> None:
    runs = []
    for rnd, (ours, peer) in enumerate([(1500, 1000), (900, 1000), (3000, 1000)], 1):
        runs += [run(rnd, "detail", "raymall", ours), run(rnd, "detail", "peer", peer)]
        runs += [run(rnd, "listing", "raymall", 950), run(rnd, "listing", "peer", 1000)]
    s = summarize(runs)
    assert s["detail"]["ratio"]["rps"] == pytest.approx(1.5)
    assert s["detail"]["raymall"]["rps"] == 1500
    assert verdict("detail", s["detail"]).endswith(": met")
    assert verdict("listing", s["listing"]) == ">= 0.9x req/s: met"


def test_the_detail_target_needs_the_ratio_the_p99_and_no_errors() -> None:
    slow = [run(1, "detail", "raymall", 2000, p99=51.0), run(1, "detail", "peer", 1000)]
    assert "p99 > 50 ms" in verdict("detail", summarize(slow)["detail"])
    few = [run(1, "detail", "raymall", 1400), run(1, "detail", "peer", 1000)]
    assert "req/s ratio < 1.5" in verdict("detail", summarize(few)["detail"])
    failing = [{**run(1, "detail", "raymall", 2000), "non_2xx": 3}, run(1, "detail", "peer", 1000)]
    assert "errors" in verdict("detail", summarize(failing)["detail"])
