"""What the flash area needs of the inventory shards (``actors.inventory_client``'s
``InventoryClient`` is the implementation; tests pass in-process stand-ins).

Operations and answers are the shard protocol's types (``raymall.domain.shard_ops``):
a ``FlashBuy`` is answered by a ``BuyResult`` (or a bare code if it could not be read),
every other operation by a code. Keys are per shard: ``f"{key}@{shard}"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from raymall.domain.shard_ops import Op, Result


class FlashShards(Protocol):
    def shard_of(self, sku_id: int) -> int:
        """The shard that owns ``sku_id`` (and the flash sales of it)."""
        ...

    async def send_batch(self, shard: int, ops: list[Op]) -> Sequence[Result]:
        """``ops`` to ``shard`` as one call, decided and committed together (retried with
        the same keys on faults; ``Unavailable`` at last): one result per operation."""
        ...

    async def submit(self, shard: int, op: Op) -> Result:
        """One operation through the shard's batcher (coalesced with others)."""
        ...

    async def release(self, key: str, sku_ids: Iterable[int]) -> None:
        """Return the stock held under ``key`` (see ``InventoryClient.release``)."""
        ...
