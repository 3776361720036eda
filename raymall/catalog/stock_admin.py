"""Stock as an admin sees and changes it: the owning shard's in-memory counters next to
the committed database row and its latest adjustments, and adjustments (restock or
write-off) through the owner.

The owner is reached through the ``StockOwner`` port (``InventoryClient``); this module
only reads the database, it never writes stock (DESIGN invariant 1).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import Inventory, InventoryAdjustment
from raymall.errors import NotFound

COUNTERS = ("total", "available", "reserved", "sold", "version")


class StockOwner(Protocol):
    def shard_of(self, sku_id: int) -> int: ...
    async def snapshot(self, sku_ids: list[int]) -> Mapping[int, dict[str, int]]: ...
    async def adjust(
        self, key: str, sku_id: int, delta: int, reason: str, actor_id: int | None = None
    ) -> None: ...


def database_view(session: Session, sku_id: int) -> dict[str, Any] | None:
    """The committed inventory row of a SKU and its ten latest adjustments (None if none)."""
    row = session.get(Inventory, sku_id)
    if row is None:
        return None
    recent = session.scalars(
        select(InventoryAdjustment)
        .where(InventoryAdjustment.sku_id == sku_id)
        .order_by(InventoryAdjustment.id.desc())
        .limit(10)
    ).all()
    return {
        "shard": row.shard,
        "total": row.total,
        "available": row.available,
        "reserved": row.reserved,
        "sold": row.sold,
        "version": row.version,
        "updated_ms": row.updated_ms,
        "recent_adjustments": [
            {
                "delta": a.delta,
                "reason": a.reason,
                "actor_id": a.actor_id,
                "created_ms": a.created_ms,
            }
            for a in recent
        ],
    }


class StockAdmin:
    def __init__(self, sessions: sessionmaker[Session], owner: StockOwner) -> None:
        self.sessions = sessions
        self.owner = owner

    def _database_view(self, sku_id: int) -> dict[str, Any] | None:
        with self.sessions() as session:
            return database_view(session, sku_id)

    async def view(self, sku_id: int) -> dict[str, Any]:
        """Memory and database side by side, and whether they agree; 404 if neither
        knows the SKU."""
        memory = (await self.owner.snapshot([sku_id])).get(sku_id)
        database = await asyncio.to_thread(self._database_view, sku_id)
        if memory is None and database is None:
            raise NotFound(f"SKU {sku_id} has no inventory")
        in_sync = (
            memory is not None
            and database is not None
            and all(memory[c] == database[c] for c in COUNTERS)
        )
        return {
            "sku_id": sku_id,
            "shard": self.owner.shard_of(sku_id),
            "memory": memory,
            "database": database,
            "in_sync": in_sync,
        }

    async def adjust(
        self, sku_id: int, delta: int, reason: str, actor_id: int, idempotency_key: str | None
    ) -> dict[str, Any]:
        """Adjust through the owner under ``adj:{sku}:{Idempotency-Key}`` (a fresh key
        without one), then answer the view."""
        key = f"adj:{sku_id}:{idempotency_key or uuid.uuid4().hex}"
        await self.owner.adjust(key, sku_id, delta, reason, actor_id)
        view = await self.view(sku_id)
        return {"key": key, "delta": delta, **view}
