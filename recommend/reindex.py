"""``raymall reindex``: rebuild the product index from the database.

Every published product is embedded in batches (with a progress bar) into a fresh
collection, which then replaces the live one in a single alias switch; readers never see
a half-built index. The outbox cursor stored with the new collection is the last outbox
row that had settled before the rebuild began, so the running ``Recommender`` replays
only what may have changed since (idempotently).

Milvus Lite's data can be open in one process only. When the app is running, it holds the
data, so the rebuild is handed to its ``Recommender`` actor instead (same result, no
progress bar).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from raymall.db import make_engine, session_factory
from raymall.ids import now_ms
from raymall.settings import Settings
from recommend import source
from recommend.index import IndexLocked, ProductIndex

ACTOR_NAME = "recommender-0"


def reindex(settings: Settings, batch_size: int = 256) -> dict[str, Any]:
    """Rebuild in this process, or through the running app's actor if it holds the data."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
    try:
        index = ProductIndex(settings.resolved_milvus_uri, settings.recommender_collection, token)
    except IndexLocked:
        return _through_actor(settings, batch_size)
    try:
        return _rebuild_here(settings, index, batch_size)
    finally:
        index.close()


def _rebuild_here(settings: Settings, index: ProductIndex, batch_size: int) -> dict[str, Any]:
    from tqdm import tqdm

    from recommend.embedder import Embedder
    from recommend.engine import RecommendEngine

    started = time.perf_counter()
    db = make_engine(settings.resolved_database_url, pool_size=2)
    try:
        sessions = session_factory(db)
        with sessions() as s:
            grace_ms = int(settings.recommender_outbox_grace_s * 1000)
            cursor = source.outbox_settled_cursor(s, now_ms() - grace_ms)
            total = source.count_published(s)
        embedder = Embedder(
            settings.recommender_torch_threads, precision=settings.recommender_embed_precision
        )
        engine = RecommendEngine(index, embedder, sessions)
        with tqdm(total=total, unit="product", desc="reindex") as bar:
            summary = engine.rebuild(cursor, batch_size, progress=bar.update)
        summary["rows"] = index.count()
    finally:
        db.dispose()
    summary["rebuild_seconds"] = summary.pop("seconds")  # embedding, writes and swap
    summary.update(
        via="local",
        uri=settings.resolved_milvus_uri,
        seconds=round(time.perf_counter() - started, 2),  # also model load and counting
    )
    return summary


def _through_actor(settings: Settings, batch_size: int) -> dict[str, Any]:
    import ray

    joined = not ray.is_initialized()  # a caller that already runs Ray keeps its session
    try:
        if joined:
            address = os.environ.get("RAY_ADDRESS") or "auto"
            ray.init(address=address, namespace=settings.namespace, logging_level=logging.ERROR)
        actor = ray.get_actor(ACTOR_NAME, namespace=settings.namespace)
    except Exception as exc:
        if joined and ray.is_initialized():
            ray.shutdown()
        raise IndexLocked(
            f"the Milvus Lite data at {settings.resolved_milvus_uri} is held by another "
            f"process, and no running raymall app was found to reindex through "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    try:
        summary: dict[str, Any] = dict(ray.get(actor.reindex.remote(batch_size)))
        summary["rows"] = ray.get(actor.stats.remote())["rows"]
    finally:
        if joined:
            ray.shutdown()
    summary["rebuild_seconds"] = summary["seconds"]
    summary.update(via="actor", uri=settings.resolved_milvus_uri)
    return summary
