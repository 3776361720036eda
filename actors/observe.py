"""What an owner actor reports about itself beyond its operations: restarts and low stock.

- ``count_restart(name)``: called from an actor's constructor; counts
  ``raymall_actor_restarts_total{actor}`` when Ray is running it again after a crash
  (``max_restarts=-1``), not on its first start. Outside an actor it does nothing.
- ``LowStock``: keeps the set of a shard's SKUs whose committed availability is at or
  below a threshold, from what each commit touched, and exports its size as
  ``raymall_inventory_low_stock_skus{shard}``. O(SKUs touched) per commit.
"""

from __future__ import annotations

from collections.abc import Mapping

from raymall import metrics
from raymall.logs import get_logger

log = get_logger("observe")


def count_restart(name: str) -> bool:
    """True (and counted) when the calling actor is a restart of a crashed one."""
    try:
        import ray

        if not ray.is_initialized():
            return False
        restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # not in an actor: nothing to count
        return False
    if restarted:
        metrics.ACTOR_RESTARTS.labels(name).inc()
        log.warning("%s restarted after a crash: state rebuilt from the database", name)
    return restarted


class LowStock:
    """The SKUs at or below ``units`` available, kept from committed values."""

    def __init__(self, shard: str, units: int) -> None:
        self.units = units
        self.low: set[int] = set()
        self._gauge = metrics.LOW_STOCK_SKUS.labels(shard)

    def reset(self, available: Mapping[int, int]) -> None:
        """The whole ledger (at start and after a reload)."""
        self.low = {sku for sku, n in available.items() if n <= self.units}
        self._gauge.set(len(self.low))

    def update(self, available: Mapping[int, int]) -> None:
        """The committed availability of the SKUs one batch touched."""
        before = len(self.low)
        for sku, n in available.items():
            if n <= self.units:
                self.low.add(sku)
            else:
                self.low.discard(sku)
        if len(self.low) != before:
            self._gauge.set(len(self.low))
