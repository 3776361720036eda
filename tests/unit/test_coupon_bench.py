"""bench/coupon_bench.py's pieces: a round's attempts (every user twice under two keys,
plus repeats of those very attempts), the per-round check of what was stored, and the
verdict against the issue's targets."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from coupon_bench import checks, verdict, write_attempts  # noqa: E402


def test_every_user_tries_twice_and_repeats_reuse_a_first_attempt() -> None:
    path = write_attempts([f"t{i}" for i in range(50)], repeats=10, seed=3)
    try:
        lines = [tuple(line.split()) for line in path.read_text().splitlines()]
    finally:
        path.unlink()
    counts = Counter(lines)
    assert len(lines) == 110 and len(counts) == 100
    assert sorted(counts.values()).count(2) == 10  # the repeats: same token, same key
    per_user = Counter(token for token, _ in counts)
    assert set(per_user.values()) == {2}


def test_a_round_must_store_exactly_the_total_to_as_many_users() -> None:
    good = {"stored": {"coupons": 5, "users": 5, "claimed": 5}}
    short = {"stored": {"coupons": 4, "users": 4, "claimed": 4}}
    twice = {"stored": {"coupons": 5, "users": 4}}
    assert checks([good], 5) == []
    assert len(checks([good, short, twice], 5)) == 2


def test_the_verdict_names_what_is_missed() -> None:
    def row(rps: float, p99: float = 10.0, errors: int = 0) -> dict[str, float]:
        return {"rps": rps, "p99_ms": p99, "errors": errors}

    assert verdict({"raymall": row(300), "mysql": row(100), "redis": row(250)}).startswith("MEETS")
    missed = verdict({"raymall": row(150, p99=120), "mysql": row(100), "redis": row(200)})
    assert ">= 2x (a)" in missed and ">= 1x (b)" in missed and "p99" in missed
