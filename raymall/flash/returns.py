"""Giving a cancelled flash order's units back: to the sale's hold while the sale runs
(the next buyer can take them), else to normal stock. Used by the order workflow's cancel
path (user cancel and payment timeout) for orders of kind ``flash``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raymall.domain import outcomes
from raymall.domain.shard_ops import FlashReturn
from raymall.flash.ports import FlashShards


def hold_key(sale_id: int) -> str:
    """The key of a sale's hold, as the inventory client names it (before ``@shard``)."""
    return f"flash:{sale_id}"


async def return_flash_units(stock: Any, order: Any, sku_ids: Sequence[int]) -> None:
    """Like ``stock.release`` for a flash order (same errors: InvalidTransition with
    ``state = confirmed`` when the order was paid). ``stock`` has what ``FlashShards``
    names (the order workflow's stock port is the InventoryClient)."""
    shards: FlashShards = stock
    if order.flash_sale_id is None or len(sku_ids) != 1:
        await shards.release(order.reservation_key, sku_ids)
        return
    sale_id = int(order.flash_sale_id)
    shard = shards.shard_of(int(sku_ids[0]))
    op = FlashReturn(
        f"{order.reservation_key}@{shard}", f"{hold_key(sale_id)}@{shard}", sale_id, int(order.id)
    )
    code = await shards.submit(shard, op)
    if code == "ok":
        return
    if code == "confirmed":
        outcomes.raise_for("confirmed", key=order.reservation_key)
    # no purchase record for this order (not a desk order): an ordinary release
    await shards.release(order.reservation_key, sku_ids)
