"""A flash sale: the one model of it, for the shard's desk and the replicas alike.

The desk (``raymall.domain.flash_desk``) changes ``sold``, ``ended`` and ``ends_ms`` as it
decides; a replica caches a copy to refuse locally before the start and after the end.
The product fields (``product_id``, ``product_title``, ``specs``: what a flash order's item
row repeats) are loaded where orders are made, by the shard; a replica leaves them empty.
``require_token``: a purchase needs a flash token (the replica checks it; the desk need not
know). ``status`` in views is computed: ``scheduled`` before the start, ``active``, ``sold_out``
while running with nothing left, ``ended`` after the end or an early end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Sale:
    id: int
    sku_id: int
    price_cents: int
    quantity: int
    per_user_limit: int
    starts_ms: int
    ends_ms: int
    ended: bool
    sold: int
    product_id: int = 0
    product_title: str = ""
    specs: dict[str, Any] = field(default_factory=dict)
    payment_timeout_ms: int | None = None  # None: the shard's default
    title: str = ""  # the sale's own title (``product_title`` names the item)
    require_token: bool = False  # purchases need a flash token (``raymall.flash.tokens``)

    def status(self, now_ms: int) -> str:
        if self.ended or now_ms >= self.ends_ms:
            return "ended"
        if now_ms < self.starts_ms:
            return "scheduled"
        return "sold_out" if self.remaining(now_ms) == 0 else "active"

    def remaining(self, now_ms: int) -> int:
        if self.ended or now_ms >= self.ends_ms:
            return 0
        return max(0, self.quantity - self.sold)

    def view(self, now_ms: int) -> dict[str, Any]:
        timeout_ms = self.payment_timeout_ms
        return {
            "id": self.id,
            "sku_id": self.sku_id,
            "title": self.title,
            "price_cents": self.price_cents,
            "quantity": self.quantity,
            "per_user_limit": self.per_user_limit,
            "starts_at_ms": self.starts_ms,
            "ends_at_ms": self.ends_ms,
            "sold": self.sold,
            "payment_timeout_s": None if timeout_ms is None else timeout_ms // 1000,
            "remaining": self.remaining(now_ms),
            "status": self.status(now_ms),
            "require_token": self.require_token,
        }
