"""A replica's in-process copy of product documents and listing pages, kept by the feed.

Every catalog write, after its commit, bumps the Redis generations and drops the cached
documents (``raymall.catalog.cache.invalidate_sync``) and then publishes the ids it
touched on the channel ``catalog:inval``, in the same pipeline. Each replica listens
(``raymall.feed``) and drops its own copies of those products and every listing page it
holds. Guarantees:

- **used only while the feed is connected**: a replica that may have missed a message
  reads through to Redis (``DetailCache``, ``ListingCache``) as before; every
  (re)subscription empties the copy;
- **a fill never stores what a write replaced**: a fill takes a token (the copy's epoch
  and the product's count of invalidations) before it reads, and stores its result only
  if the token is unchanged when it lands; a write's message processed in between makes
  the token stale, and one processed after it drops the copy;
- **bounded**: at most ``max_docs`` documents and ``max_pages`` pages (oldest out), a
  document for at most ``doc_ttl_s`` and a page for at most ``page_ttl_s`` and never
  longer than the shared copy it came from has left (so what the listing cache's TTL
  bounds, the ``in_stock`` filter, stays bounded by it).

Freshness is the feed's: another replica's write shows here once its message arrives
(well under a millisecond on one host), while the writer's own replica drops its copy
before it answers.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from raymall.logs import get_logger

log = get_logger("catalog.local")

CHANNEL = "catalog:inval"
V = TypeVar("V")


def encode_ids(product_ids: Sequence[int]) -> bytes:
    return json.dumps([int(i) for i in product_ids], separators=(",", ":")).encode()


class _Bounded(Generic[V]):
    """Insertion-ordered entries with an age limit and a size limit."""

    def __init__(self, max_items: int, ttl_s: float, clock: Callable[[], float]) -> None:
        self.max_items = max_items
        self.ttl_s = ttl_s
        self.clock = clock
        self.items: OrderedDict[Any, tuple[float, V]] = OrderedDict()  # key -> (expiry, value)

    def get(self, key: Any) -> V | None:
        found = self.items.get(key)
        if found is None:
            return None
        if self.clock() > found[0]:
            del self.items[key]
            return None
        return found[1]

    def put(self, key: Any, value: V, ttl_s: float | None = None) -> None:
        """Keep ``value`` for ``ttl_s`` (at most the limit) from now."""
        life = self.ttl_s if ttl_s is None else min(ttl_s, self.ttl_s)
        self.items[key] = (self.clock() + life, value)
        self.items.move_to_end(key)
        while len(self.items) > self.max_items:
            self.items.popitem(last=False)


class LocalCatalog:
    """See the module docstring. ``connected`` says whether the feed is subscribed now."""

    def __init__(
        self,
        connected: Callable[[], bool],
        *,
        max_docs: int = 20_000,
        doc_ttl_s: float = 60.0,
        max_pages: int = 2_000,
        page_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connected = connected
        self.epoch = 0
        self._drops: dict[int, int] = {}  # product id -> invalidations seen this epoch
        self.docs: _Bounded[dict[str, Any]] = _Bounded(max_docs, doc_ttl_s, clock)
        self.pages: _Bounded[Any] = _Bounded(max_pages, page_ttl_s, clock)
        self._page_epoch = 0

    # ---- the feed ---------------------------------------------------------------------
    def on_message(self, data: bytes) -> None:
        try:
            ids = [int(i) for i in json.loads(data)]
        except (ValueError, TypeError) as exc:
            log.warning("catalog invalidation not understood: %r", exc)
            self.clear()  # cannot tell what changed: assume everything did
            return
        self.drop(ids)

    async def resync(self) -> None:
        """After each (re)subscription: messages may have been missed."""
        self.clear()

    def clear(self) -> None:
        self.epoch += 1
        self._drops.clear()
        self.docs.items.clear()
        self.pages.items.clear()
        self._page_epoch += 1

    def drop(self, product_ids: Sequence[int]) -> None:
        """Products changed (and with them any listing page)."""
        for pid in product_ids:
            self._drops[pid] = self._drops.get(pid, 0) + 1
            self.docs.items.pop(pid, None)
        self.pages.items.clear()
        self._page_epoch += 1

    # ---- documents ----------------------------------------------------------------------
    def usable(self) -> bool:
        return self.connected()

    def doc(self, product_id: int) -> dict[str, Any] | None:
        return self.docs.get(product_id) if self.connected() else None

    def doc_token(self, product_id: int) -> tuple[int, int]:
        return self.epoch, self._drops.get(product_id, 0)

    def put_doc(self, product_id: int, token: tuple[int, int], doc: dict[str, Any]) -> None:
        if token == self.doc_token(product_id) and self.connected():
            self.docs.put(product_id, doc)

    # ---- listing pages ------------------------------------------------------------------
    def page(self, key: Any) -> Any:
        return self.pages.get(key) if self.connected() else None

    def page_token(self) -> int:
        return self._page_epoch

    def put_page(self, key: Any, token: int, page: Any, ttl_s: float | None = None) -> None:
        """Keep ``page`` for ``ttl_s`` (the time its shared copy has left; at most
        ``page_ttl_s``), unless a write was seen since ``token`` was taken."""
        if token == self._page_epoch and self.connected():
            self.pages.put(key, page, ttl_s)


class PageParts:
    """A listing page split so that its cards' ``in_stock`` can be set per request from the
    availability read model without parsing or serialising the page again. Built from the
    page's JSON text, whose ``_skus`` (one list of SKU ids per card) it consumes."""

    __slots__ = ("head", "cards", "tail")

    def __init__(self, text: str) -> None:
        page = json.loads(text)
        items = page.pop("items")
        skus = page.pop("_skus", None) or [[] for _ in items]
        cards: list[tuple[str, tuple[int, ...], bool]] = []
        for card, sku_ids in zip(items, skus, strict=True):
            flag = bool(card.pop("in_stock", False))
            body = json.dumps(card, separators=(",", ":"))[:-1]
            cards.append((body + (',"in_stock":' if card else '"in_stock":'), tuple(sku_ids), flag))
        self.head = '{"items":['
        self.cards = tuple(cards)
        rest = json.dumps(page, separators=(",", ":"))
        self.tail = "]}" if rest == "{}" else "]," + rest[1:]

    def render(self, in_stock: Callable[[tuple[int, ...]], bool | None]) -> str:
        """The page's JSON; ``in_stock(sku_ids)`` says whether a card is in stock now, or
        None to keep the value the page was filled with."""
        parts = []
        for body, sku_ids, flag in self.cards:
            now = in_stock(sku_ids) if sku_ids else None
            parts.append(body + ("true}" if (flag if now is None else now) else "false}"))
        return self.head + ",".join(parts) + self.tail
