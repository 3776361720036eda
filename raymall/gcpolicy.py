"""Garbage-collector settings for long-lived serving processes."""

from __future__ import annotations

import gc
import os


def settle() -> None:
    gc.collect()
    gc.freeze()
    t = os.environ.get("XGC_THRESH")
    if t:
        gc.set_threshold(*map(int, t.split(",")))
