"""What the recommendation routes do, per Serve replica: call the ``Recommender`` actor,
merge in the database's view of each result, and fall back where the index cannot help.

Every product returned is re-checked against the catalog at answer time, so an item the
index has not caught up with (just unpublished, say) is never shown; stock is read there
too (the index does not store it). The cards come from the replica's ``CardCache``, valid
for the current catalog generation (a catalog write drops them all on every replica), and
from the database for the rest; requests that arrive together share that read: their ids
go into one query, started after each of them arrived.

Similar-product lists are ranked in the replica from its copy of the actor's in-memory
index (``recommend.replica``) when it has one that holds the product, and by the actor
otherwise; personal picks always go to the actor.

Search (``search``): the query's vector comes from the replica's ``QueryVectors`` (cached,
single-flight, concurrent misses embedded in one actor call) and is ranked against the
replica's copy of the index when it has one (else by the actor). Keyword and semantic
rankings are cached by the catalog generation (``raymall.catalog.search_cache``; a
semantic ranking also by the index version it was ranked on); the cards come from the
card cache, so stock flags are as fresh as in similar lists.

**Semantic search unavailable** (the actor down or restarting, the index unreachable, a
call slower than ``SEMANTIC_TIMEOUT_S``): search answers by keyword and says so (the
page's ``mode`` is ``keyword``); for ``SEMANTIC_RETRY_S`` after such a failure, searches
do not wait on the actor again. Similar-product reads the replica's copy cannot answer
get 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Counter
from sqlalchemy.orm import Session, sessionmaker

from actors.caller import ActorCaller
from raymall import metrics
from raymall.batching import Batcher
from raymall.catalog import repository
from raymall.catalog.cache import CacheKeys
from raymall.catalog.runtime import KEY_PREFIX
from raymall.catalog.search import KeywordHits, keyword_search
from raymall.catalog.search_cache import SearchCache
from raymall.catalog.text import query_terms
from raymall.errors import NotFound, Unavailable, ValidationFailed
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.settings import Settings
from recommend import history, source
from recommend.cards import CardCache
from recommend.query_vectors import QueryVectors, normal_form
from recommend.ranking import reciprocal_rank_fusion, signal_weights
from recommend.replica import SIMILAR_READS, ReplicaTable

ACTOR_NAME = "recommender-0"
CALL_TIMEOUT_S = 15.0
MAX_FETCH = 200  # similar candidates fetched at most when filtering out-of-stock ones
SEARCH_WINDOW = 1_000  # results reachable by paging in semantic and hybrid modes
ORDERS_CONSIDERED = 100
SEMANTIC_TIMEOUT_S = 3.0  # a semantic ranking slower than this: answer by keyword
SEMANTIC_RETRY_S = 5.0  # after a failure, search by keyword only for this long
RETRY_AFTER_S = 5
log = get_logger("recommend.service")
SEARCH_FALLBACKS = Counter(
    "raymall_search_keyword_fallbacks_total",
    "Semantic or hybrid searches answered by keyword because semantic search was unavailable",
)


@dataclass
class SearchPage:
    items: list[dict[str, Any]]
    has_more: bool
    total: int | None
    modes: list[str]
    mode: str  # the mode answered: "keyword" when semantic search was unavailable


def _items(picks: list[tuple[int, dict[str, Any], float]]) -> list[dict[str, Any]]:
    """Result items: each picked card with its score (``RecommendService._item_json`` is
    the same item as text)."""
    return [{**card, "score": round(score, 6)} for _, card, score in picks]


class RecommendService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis: Any,
        hot_redis: Any = None,
    ) -> None:
        """``redis``: a redis-py asyncio client; ``hot_redis``, if given, serves the card
        cache's per-request generation read (a ``raymall.resp.RespClient``)."""
        self.settings = settings
        self.sessions = sessions
        self.redis = redis
        # reads only, so no retry: a page does not wait out a restart
        self.caller = ActorCaller(
            settings.namespace, lambda _: ACTOR_NAME, timeout_s=CALL_TIMEOUT_S, retry_s=0.0
        )
        # concurrent requests' card reads share one database round (see _load_summaries)
        self._summaries: Batcher[list[int], dict[int, dict[str, Any]]] = Batcher.in_thread(
            self._load_summaries
        )
        # ... and cards read once are kept for the catalog generation they were read under
        self.card_cache = CardCache(
            hot_redis if hot_redis is not None else redis,
            self._summaries.submit,
            ttl_s=settings.listing_cache_ttl_s,
            keys=CacheKeys(KEY_PREFIX),
            load_sold_out=self._sold_out,
        )
        self._card_json: dict[int, tuple[dict[str, Any], str]] = {}  # see _item_json
        self.vectors = QueryVectors(self._embed)
        cache_args: dict[str, Any] = {
            "ttl_s": settings.listing_cache_ttl_s,
            "keys": CacheKeys(KEY_PREFIX),
            "enabled": settings.cache_enabled,
        }
        # rankings, kept parsed (read only)
        self.keyword_cache: SearchCache[Any] = SearchCache(
            redis, name="search_keyword", decode=json.loads, **cache_args
        )
        self.semantic_cache: SearchCache[Any] = SearchCache(
            redis, name="search_semantic", decode=json.loads, **cache_args
        )
        self._semantic_down_until = 0.0
        self._similar_latency = metrics.RECOMMENDER_LATENCY.labels("similar")
        self._replica_reads = SIMILAR_READS.labels("replica")
        self.replica: ReplicaTable | None = None
        if settings.recommender and settings.recommender_table_max_rows > 0:
            self.replica = ReplicaTable(self.call, settings.recommender_replica_refresh_s)

    def start(self) -> None:
        """Start following the actor's in-memory index (on the replica's event loop)."""
        if self.replica is not None:
            self.replica.start()

    # ---- the actor -------------------------------------------------------------------
    async def call(self, method: str, *args: Any) -> Any:
        """One actor call. A domain error raised in the actor comes back as itself; the
        actor being down, restarting or slow, or its index unavailable, is ``Unavailable``
        (503 with ``Retry-After``)."""
        if not self.settings.recommender:
            raise Unavailable("recommendations are turned off (RAYMALL_RECOMMENDER=0)")
        from ray.exceptions import RayError, RayTaskError

        try:
            return await self.caller.call(0, method, *args)
        except Unavailable as exc:
            if exc.retry_after is not None:
                raise
            details = {**exc.details, "retry_after": RETRY_AFTER_S}
            raise Unavailable(exc.message, details=details) from exc
        except RayError as exc:  # any other Ray fault of a read: 503 as well
            if isinstance(exc, RayTaskError):
                raise
            raise Unavailable(
                f"the recommender is unavailable ({type(exc).__name__})",
                details={"retry_after": RETRY_AFTER_S},
            ) from exc

    async def ping(self) -> dict[str, Any]:
        """Readiness of the recommender and its index (Milvus): ``ok`` False, with the
        reason, when the actor does not answer within a few seconds or its index is
        unavailable (search then answers by keyword)."""
        try:
            return dict(await asyncio.wait_for(self.call("ping"), SEMANTIC_TIMEOUT_S))
        except (TimeoutError, Unavailable) as exc:
            return {"ok": False, "error": str(exc) or type(exc).__name__}

    # ---- database helpers ------------------------------------------------------------
    def _load_summaries(self, asks: list[list[int]]) -> list[dict[int, dict[str, Any]]]:
        """Listing cards (any status) for several requests' ids with one set of queries;
        each request gets the cards of its own ids, by id."""
        wanted = sorted({pid for ids in asks for pid in ids})
        with self.sessions() as s:
            found = source.cards(s, wanted)
        return [{pid: found[pid] for pid in ids if pid in found} for ids in asks]

    async def _sold_out(self, product_ids: list[int]) -> set[int]:
        """Which of these products have no SKU in stock (the cards' ``in_stock`` flag)."""

        def read() -> set[int]:
            with self.sessions() as s:
                return repository.sold_out_products(s, product_ids)

        return await asyncio.to_thread(read)

    async def _cards(
        self, scored: list[tuple[int, float]], in_stock_only: bool = False, anchor: int = 0
    ) -> list[dict[str, Any]]:
        """Listing cards for published products, in the given order, with their score.
        With an ``anchor`` product (similar's subject), NotFound unless it is published."""
        return _items(await self._picks(scored, in_stock_only, anchor))

    async def _picks(
        self, scored: list[tuple[int, float]], in_stock_only: bool, anchor: int
    ) -> list[tuple[int, dict[str, Any], float]]:
        """(id, card, score) of ``_cards``, the cards as the cache holds them."""
        ids = [pid for pid, _ in scored] + ([anchor] if anchor else [])
        cards = await self.card_cache.get(ids)
        if anchor and cards.get(anchor, {}).get("status") != "published":
            raise NotFound(f"product {anchor} not found")
        out = []
        for pid, score in scored:
            card = cards.get(pid)
            if card is None or card["status"] != "published":
                continue
            if in_stock_only and not card["in_stock"]:
                continue
            out.append((pid, card, score))
        return out

    def _item_json(self, pid: int, card: dict[str, Any], score: float) -> str:
        """``json.dumps({**card, "score": round(score, 6)})`` (compact), from the card's
        JSON kept while the cache holds that same card object (a renewed or re-read card
        is a new object, so its text is made again)."""
        held = self._card_json.get(pid)
        if held is None or held[0] is not card:
            if len(self._card_json) >= self.card_cache.max_cards:
                self._card_json.clear()
            text = json.dumps(card, separators=(",", ":"))
            held = self._card_json[pid] = (card, text[:-1] + "," if card else "{")
        rounded = round(score, 6)
        number = repr(rounded) if math.isfinite(rounded) else json.dumps(rounded)
        return f'{held[1]}"score":{number}}}'

    # ---- endpoints -------------------------------------------------------------------
    async def similar(self, product_id: int, k: int, in_stock_only: bool) -> list[dict[str, Any]]:
        return _items(await self._similar_picks(product_id, k, in_stock_only))

    async def similar_json(self, product_id: int, k: int, in_stock_only: bool) -> str:
        """``similar`` as its compact JSON array, byte for byte, with each card's text
        made once per card rather than once per request (the hot read's largest cost
        after the HTTP stack)."""
        picks = await self._similar_picks(product_id, k, in_stock_only)
        return "[" + ",".join([self._item_json(*pick) for pick in picks]) + "]"

    async def _similar_picks(
        self, product_id: int, k: int, in_stock_only: bool
    ) -> list[tuple[int, dict[str, Any], float]]:
        fetch = k if not in_stock_only else min(MAX_FETCH, 3 * k + 10)
        while True:
            hits = await self._neighbours(product_id, fetch)
            if hits is None:
                raise NotFound(f"product {product_id} not found")
            picks = await self._picks(hits, in_stock_only, anchor=product_id)
            if len(picks) >= k or len(hits) < fetch or fetch >= MAX_FETCH:
                return picks[:k]
            fetch = min(MAX_FETCH, fetch * 3)

    async def _neighbours(self, product_id: int, k: int) -> list[tuple[int, float]] | None:
        """From this replica's copy of the index when it holds the product, else from the
        actor (None: the product is not published)."""
        if self.replica is not None:
            started = time.perf_counter()
            found = await self.replica.neighbours(product_id, k)
            if found is not None:
                self._similar_latency.observe(time.perf_counter() - started)
                self._replica_reads.inc()
                return found
        SIMILAR_READS.labels("actor").inc()
        hits = await self.call("similar", product_id, k)
        return None if hits is None else [(int(p), float(s)) for p, s in hits]

    async def record_view(self, user_id: int, product_id: int) -> None:
        keep = self.settings.recommender_views_kept
        await history.record_view(self.redis, user_id, product_id, now_ms(), keep)

    async def for_user(self, user_id: int, k: int) -> dict[str, Any]:
        """Personal picks from the user's recent orders, cart and views; best sellers when
        there is no usable history. Products already bought or in the cart are left out."""
        now = now_ms()
        viewed = await history.read_views(self.redis, user_id, self.settings.recommender_views_kept)
        cart_skus = await history.read_cart(self.redis, user_id)

        def load() -> tuple[list[tuple[int, int]], list[int]]:
            with self.sessions() as s:
                ordered = source.ordered_products(s, user_id, ORDERS_CONSIDERED)
                carted = sorted(set(source.products_for_skus(s, cart_skus).values()))
            return ordered, carted

        ordered, carted = await asyncio.to_thread(load)
        half_life_ms = self.settings.recommender_half_life_days * 86_400_000
        weights = signal_weights(history.signals(ordered, carted, viewed, now), now, half_life_ms)
        exclude = sorted({pid for pid, _ in ordered} | set(carted))
        hits = None
        if weights and self.settings.recommender:
            try:
                hits = await self.call("recommend", weights, exclude, k + 5)
            except Unavailable:  # degrade to best sellers while the recommender restarts
                hits = None
        if hits:
            items = (await self._cards([(int(p), float(s)) for p, s in hits]))[:k]
            if items:
                return {"strategy": "personal", "items": items}

        def best() -> list[int]:
            with self.sessions() as s:
                return source.best_sellers(s, k, exclude)

        ids = await asyncio.to_thread(best)
        return {"strategy": "best_sellers", "items": await self._cards([(i, 0.0) for i in ids])}

    async def search(self, query: str, mode: str, page: int, size: int) -> SearchPage:
        offset = (page - 1) * size
        if offset + size > SEARCH_WINDOW:
            raise ValidationFailed(
                f"semantic and hybrid results reach {SEARCH_WINDOW} items at most",
                details={"field": "page"},
            )
        # ranked ids are filtered against the database (a product may have just been
        # unpublished), so fetch a margin and page over what survives the filter
        window = offset + size + 1
        fetch = min(SEARCH_WINDOW + 1, window + window // 10 + 5)
        semantic = None if mode == "keyword" else await self._semantic_or_none(query, fetch)
        if semantic is None:  # keyword mode, or semantic search unavailable
            if mode != "keyword" and self.settings.recommender:
                SEARCH_FALLBACKS.inc()
            hits = await self._keyword(query, offset, size)
            items = await self._cards(list(zip(hits.ids, hits.scores, strict=True)))
            more = offset + len(hits.ids) < hits.total
            return SearchPage(items, more, hits.total, ["keyword"], "keyword")
        if mode == "semantic":
            return self._page(await self._cards(semantic), offset, size, ["semantic"], mode)
        keyword = await self._keyword(query, 0, fetch)
        fused = reciprocal_rank_fusion([keyword.ids, [pid for pid, _ in semantic]])[:fetch]
        return self._page(await self._cards(fused), offset, size, ["keyword", "semantic"], mode)

    async def _keyword(self, query: str, offset: int, limit: int) -> KeywordHits:
        """Keyword ranking (ids, scores, total), cached by the catalog generation."""
        terms = query_terms(query)
        key = {"terms": terms, "offset": offset, "limit": limit}

        async def load() -> str:
            hits = await keyword_search(self.sessions, query, offset=offset, limit=limit)
            return json.dumps([hits.ids, hits.scores, hits.total], separators=(",", ":"))

        ids, scores, total = await self.keyword_cache.get(key, load)
        return KeywordHits(ids, scores, total, terms)

    async def _semantic_or_none(self, query: str, fetch: int) -> list[tuple[int, float]] | None:
        """The semantic ranking, or None while semantic search is unavailable (or off)."""
        if not self.settings.recommender or time.monotonic() < self._semantic_down_until:
            return None
        try:
            return await asyncio.wait_for(self._semantic(query, fetch), SEMANTIC_TIMEOUT_S)
        except (Unavailable, TimeoutError) as exc:
            if time.monotonic() >= self._semantic_down_until:
                log.warning("semantic search unavailable, searching by keyword: %s", exc)
            self._semantic_down_until = time.monotonic() + SEMANTIC_RETRY_S
            return None

    async def _semantic(self, query: str, fetch: int) -> list[tuple[int, float]]:
        """Semantic ranking, cached by the catalog generation and the index version."""
        table = self.replica.table if self.replica is not None else None
        version = list(table.version) if table is not None else "actor"
        key = {"q": normal_form(query), "k": fetch, "index": version}

        async def load() -> str:
            vector = await self.vectors.get(query)
            found = None
            if table is not None and self.replica is not None:
                found = await self.replica.search(vector, fetch)
            if found is None:
                found = await self.call("search_vector", vector, fetch)
            ranked = [[int(p), round(float(score), 6)] for p, score in found]
            return json.dumps(ranked, separators=(",", ":"))

        ranked = await self.semantic_cache.get(key, load)
        return [(int(p), float(score)) for p, score in ranked]

    async def _embed(self, texts: list[str]) -> np.ndarray:
        """Query vectors from the actor's model (one call for the batch)."""
        return np.asarray(await self.call("embed", texts), dtype=np.float32)

    @staticmethod
    def _page(
        cards: list[dict[str, Any]], offset: int, size: int, modes: list[str], mode: str
    ) -> SearchPage:
        page = cards[offset : offset + size]
        return SearchPage(page, len(cards) > offset + size, None, modes, mode)
