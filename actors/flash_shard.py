"""The flash-sale side of ``InventoryShard``: building its desk and loading what a batch of
flash operations needs before it is applied (sales, their purchases, hold and order
reservation records). Kept apart so the shard stays a thin shell over ledger + desk."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from actors import flash_store
from raymall.domain.ledger import Ledger, Op
from raymall.domain.flash_desk import FLASH_KINDS, FlashDesk
from raymall.hashing import shard_for
from raymall.ids import MAX_WORKER, Snowflake
from raymall.settings import Settings

if TYPE_CHECKING:
    from actors.inventory_shard import InventoryShard

INVENTORY_WORKER_BASE = 2048  # snowflake worker ids 2048..3071 belong to inventory shards


def worker_id(index: int) -> int:
    return INVENTORY_WORKER_BASE + index % 1024


_IDS: dict[int, Snowflake] = {}  # one generator per shard per process, kept across reloads


def new_desk(settings: Settings, index: int, ledger: Ledger) -> FlashDesk:
    ids = _IDS.get(index)
    if ids is None:
        ids = _IDS[index] = Snowflake(min(MAX_WORKER, worker_id(index)))
    shards = settings.order_shards
    return FlashDesk(
        ledger,
        index,
        next_id=ids.next_id,
        order_shard_of=lambda user_id: shard_for(user_id, shards),
        order_timeout_ms=int(settings.flash_order_timeout_s * 1000),
        lease_ms=int(settings.flash_sold_out_ttl_s * 1000),
    )


def is_flash(op: Op) -> bool:
    return bool(op) and op[0] in FLASH_KINDS


def result_code(result: Any) -> str:
    """The code of a result (flash purchases answer a tuple whose first item is it)."""
    return str(result[0]) if isinstance(result, tuple) else str(result)


async def prepare(shard: InventoryShard, ops: list[Op]) -> None:
    """Load the sales, hold records, order reservation records and SKUs that the flash ops
    of a batch touch and that memory does not hold yet."""
    desk: FlashDesk = shard.flash
    ledger = shard.ledger
    sales: set[int] = set()
    keys: set[str] = set()
    for op in ops:
        try:
            if not is_flash(op):
                continue
            hold = op[1] if op[0] != "flash_return" else op[2]
            sale = op[2] if op[0] != "flash_return" else op[3]
            if type(sale) is int and sale not in desk.books:
                sales.add(sale)
            for key in (op[1], hold):
                if isinstance(key, str) and key not in ledger.records:
                    keys.add(key)
        except (IndexError, TypeError):
            continue  # malformed: the desk answers "invalid"
    store = shard.store
    for sale_id in sorted(sales):
        found = await asyncio.to_thread(flash_store.load_sale, store.engine, store.ph, sale_id)
        if found is not None:
            desk.load(*found)
    if keys:
        for key, rec in (await asyncio.to_thread(store.lookup, sorted(keys))).items():
            ledger.load_record(key, rec)
    skus = {desk.books[s].info.sku_id for s in sales if s in desk.books}
    missing = sorted(s for s in skus if s not in ledger.stock)
    if missing:
        for sku_id, stock in (await asyncio.to_thread(store.load_stock, missing)).items():
            ledger.load_stock(sku_id, stock)
