"""Rank arithmetic: reciprocal rank fusion, and the recency-weighted user profile.

Pure functions on ids, numbers and numpy arrays, so they are tested without Milvus.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

RRF_K = 60
# how much one interaction says about taste, before recency decay
SIGNAL_WEIGHTS = {"ordered": 1.0, "carted": 0.8, "viewed": 0.4}


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = RRF_K
) -> list[tuple[int, float]]:
    """Fuse ranked id lists: score(id) = sum over lists of 1 / (k + rank), rank from 1.

    Ids missing from a list simply get nothing from it. Ties keep the order in which the
    ids were first met (earlier lists first), so the result is deterministic.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        seen: set[int] = set()
        for rank, pid in enumerate(ranking, start=1):
            if pid in seen:  # a list ranks an id once, at its best place
                continue
            seen.add(pid)
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (k + rank)
    order = {pid: n for n, pid in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))


@dataclass(frozen=True)
class Signal:
    """One thing a user did with a product, and when (epoch ms)."""

    product_id: int
    kind: str  # a key of SIGNAL_WEIGHTS
    at_ms: int


def signal_weights(signals: Iterable[Signal], now_ms: int, half_life_ms: float) -> dict[int, float]:
    """Per product: the sum of its signals' weights, each halved every ``half_life_ms``."""
    if half_life_ms <= 0:
        raise ValueError("half_life_ms must be positive")
    out: dict[int, float] = {}
    for s in signals:
        base = SIGNAL_WEIGHTS.get(s.kind)
        if base is None:
            raise ValueError(f"unknown signal kind {s.kind!r}")
        age = max(0, now_ms - s.at_ms)
        out[s.product_id] = out.get(s.product_id, 0.0) + base * 0.5 ** (age / half_life_ms)
    return out


def weighted_mean(vectors: dict[int, np.ndarray], weights: dict[int, float]) -> np.ndarray | None:
    """The unit-length weighted mean of the vectors that have a positive weight, or None
    when nothing is left (no vectors, zero weights, or vectors that cancel out)."""
    ids = [pid for pid in vectors if weights.get(pid, 0.0) > 0]
    if not ids:
        return None
    mat = np.stack([np.asarray(vectors[p], dtype=np.float32) for p in ids])
    w = np.asarray([weights[p] for p in ids], dtype=np.float32)
    mean = (mat * w[:, None]).sum(axis=0) / w.sum()
    norm = float(np.linalg.norm(mean))
    if norm < 1e-6:
        return None
    return (mean / norm).astype(np.float32)
