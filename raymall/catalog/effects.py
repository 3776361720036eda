"""What every catalog write does besides its own rows, in the right order:

1. inside the transaction: the outbox event (same commit as the change) and, for a new
   product, its id in the shared Bloom filter *before* the commit, so no reader can see
   the row while the filter still says "absent";
2. after the commit: invalidate the cached documents of every product the write touched
   (so the next read on any replica sees the change);
3. ``products.search_text`` is recomputed whenever title, description, brand name or any
   category on the product's path changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import Brand, OutboxEvent, Product
from raymall.catalog import bloom
from raymall.catalog.bloom import BloomSpec
from raymall.catalog.cache import CacheKeys, invalidate_sync
from raymall.catalog.repository import category_path
from raymall.catalog.text import build_search_text
from raymall.db import transaction
from raymall.errors import AlreadyExists, Unavailable
from raymall.ids import now_ms
from raymall.logs import get_logger

log = get_logger("catalog.writes")


class CacheHooks(Protocol):
    def announce(self, product_ids: Sequence[int]) -> None:
        """Make new ids visible to the Bloom filter (called before commit; may raise)."""

    def invalidate(self, product_ids: Sequence[int]) -> None:
        """Drop cached documents and mark cached listing pages stale (called after
        every commit, with the products the write touched, possibly none)."""


class NoCache:
    """Hooks for writers with no Redis (unit tests, offline tools)."""

    def announce(self, product_ids: Sequence[int]) -> None:
        return None

    def invalidate(self, product_ids: Sequence[int]) -> None:
        return None


class RedisCacheHooks:
    """The hooks the app uses: a synchronous redis client, since writes run in threads."""

    def __init__(
        self,
        client: Any,
        spec: BloomSpec | None,
        keys: CacheKeys,
        gen_ttl_s: int,
        channel: str | None = None,
    ):
        self.client, self.spec, self.keys, self.gen_ttl_s = client, spec, keys, gen_ttl_s
        self.channel = channel  # the replicas' in-process copies listen here
        # called after every invalidation (from the writer's thread): the writing
        # replica's own in-process copy, dropped before the write answers
        self.after: Callable[[list[int]], None] | None = None

    def announce(self, product_ids: Sequence[int]) -> None:
        if self.spec is None or not product_ids:
            return
        try:
            bloom.add_sync(self.client, self.spec, list(product_ids))
        except Exception as exc:  # without the filter entry the product could read as absent
            raise Unavailable("the catalog cache is unavailable; retry the request") from exc

    def invalidate(self, product_ids: Sequence[int]) -> None:
        ids = list(product_ids)
        try:
            for attempt in (1, 2):
                try:
                    invalidate_sync(self.client, self.keys, ids, self.gen_ttl_s, self.channel)
                    return
                except Exception:  # committed already: log, the TTL bounds staleness
                    log.warning("cache invalidation failed (attempt %d)", attempt, exc_info=True)
        finally:
            if self.after is not None:
                self.after(ids)


class WriterBase:
    """Shared state of the catalog writers; see the module docstring."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        inventory_shards: int,
        hooks: CacheHooks | None = None,
    ) -> None:
        self.sessions = sessions
        self.inventory_shards = inventory_shards
        self.hooks: CacheHooks = hooks or NoCache()

    @contextmanager
    def write(self, touched: list[int]) -> Iterator[Session]:
        """A transaction; afterwards the products listed in ``touched`` (filled in by the
        body) are invalidated. Constraint races (two admins taking one slug, a delete
        racing an insert that references the row) surface as 409 already_exists."""
        try:
            with transaction(self.sessions) as session:
                yield session
        except IntegrityError as exc:
            raise AlreadyExists(
                "the change conflicts with existing data (a duplicate unique value or a "
                "concurrent change); reload and retry"
            ) from exc
        self.hooks.invalidate(sorted(set(touched)))  # also marks listing pages stale


def emit(session: Session, topic: str, aggregate_id: int, payload: dict[str, Any]) -> None:
    session.add(
        OutboxEvent(
            event_id=uuid.uuid4().hex,
            topic=topic,
            aggregate_id=str(aggregate_id),
            payload=payload,
            created_ms=now_ms(),
        )
    )


def refresh_search_text(session: Session, products: Sequence[Product]) -> None:
    """Recompute ``search_text`` for loaded products (brand names and category paths are
    read once per distinct brand/category)."""
    paths: dict[int, list[str]] = {}
    brands: dict[int, str] = {}
    brand_ids = {p.brand_id for p in products if p.brand_id is not None}
    if brand_ids:
        rows = session.execute(select(Brand.id, Brand.name).where(Brand.id.in_(brand_ids)))
        brands = {int(r.id): r.name for r in rows}
    for p in products:
        if p.category_id not in paths:
            paths[p.category_id] = [c["name"] for c in category_path(session, p.category_id)]
        brand = brands.get(p.brand_id) if p.brand_id is not None else None
        p.search_text = build_search_text(p.title, brand, paths[p.category_id], p.description)


def product_events(session: Session, product_ids: Sequence[int], reason: str) -> None:
    for pid in product_ids:
        emit(session, "product.upserted", pid, {"product_id": pid, "reason": reason})
