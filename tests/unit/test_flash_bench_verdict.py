"""bench/flash_sale.py's verdict line: the flash-sale target checked on one run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from flash_sale import verdict  # noqa: E402


def row(rps: float, p99_ms: float = 50.0, errors: int = 0) -> dict[str, Any]:
    return {"rps": rps, "p99_ms": p99_ms, "errors": errors}


def test_the_target_needs_every_part() -> None:
    peers = {"mysql": row(1000), "redis": row(2500)}
    assert verdict({"raymall": row(2500), **peers}).startswith("MEETS")
    assert verdict({"raymall": row(2499), **peers}) == "misses >= 1x (b)"
    assert verdict({"raymall": row(1999), **peers}) == "misses >= 2x (a), >= 1x (b)"
    assert verdict({"raymall": row(3000, p99_ms=100.5), **peers}) == "misses p99 <= 100 ms"
    assert verdict({"raymall": row(3000, errors=1), **peers}) == "misses no errors"
