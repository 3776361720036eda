"""The Milvus adapter: one product collection behind an alias, on Milvus Lite or a server.

The URI decides the backend and nothing else does: a file path (``var/milvus.db``) runs
Milvus Lite inside this process, ``http://host:19530`` talks to a server. The code path
is the same for both.

Layout: the alias (``settings.recommender_collection``) points at a physical collection
``<alias>_<ms>``. A rebuild fills a fresh physical collection and then moves the alias,
so readers never see a half-built index, and a schema change needs no migration. The
outbox cursor is stored as a property of the physical collection, so the cursor always
describes the data it sits beside (a rebuilt collection carries its own).

Fields: ``id`` (product id, primary key), ``vector`` (384 floats, COSINE, HNSW), and
scalars for filtering: ``category_id``, ``brand_id`` (0 for none), ``price_cents`` (the
lowest SKU price), ``published``, plus ``doc_hash`` (see ``recommend.text``). Stock is
*not* stored: it changes with every order, so it is checked against the database at
query time instead of going stale here.

Only the ``Recommender`` actor (or ``raymall reindex`` with the app stopped) writes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recommend.embedder import DIM
from recommend.text import ProductDoc

CURSOR_PROPERTY = "raymall.outbox_cursor"
HNSW_BUILD = {"M": 16, "efConstruction": 200}
MIN_EF = 64
OUTPUT_BATCH = 512


@dataclass(frozen=True)
class Hit:
    id: int
    score: float  # cosine similarity, higher is closer


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://"))


class IndexLocked(RuntimeError):
    """Milvus Lite's data file is held by another process (the running app)."""


class ProductIndex:
    def __init__(self, uri: str, alias: str, token: str | None = None) -> None:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import ConnectionConfigException

        self.uri, self.alias = uri, alias
        try:
            self.client = MilvusClient(uri=uri, token=token or "")
        except ConnectionConfigException as exc:
            if is_server_uri(uri):
                raise
            raise IndexLocked(
                f"cannot open the Milvus Lite data at {uri}: another process (a running "
                "raymall app) holds it; stop the app, or reindex through the app"
            ) from exc

    # ---- collections ---------------------------------------------------------------
    def _schema(self) -> Any:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
        schema.add_field("category_id", DataType.INT64)
        schema.add_field("brand_id", DataType.INT64)
        schema.add_field("price_cents", DataType.INT64)
        schema.add_field("published", DataType.BOOL)
        schema.add_field("doc_hash", DataType.INT64)
        return schema

    def create_physical(self) -> str:
        """A new, empty, loaded collection (not yet behind the alias)."""
        name = f"{self.alias}_{time.time_ns() // 1_000_000}"
        params = self.client.prepare_index_params()
        params.add_index(
            field_name="vector", index_type="HNSW", metric_type="COSINE", params=HNSW_BUILD
        )
        self.client.create_collection(name, schema=self._schema(), index_params=params)
        self.client.load_collection(name)
        return name

    def physical(self) -> str | None:
        """The collection behind the alias, or None before the first build."""
        aliases = self.client.list_aliases()
        if isinstance(aliases, dict):
            names = aliases.get("aliases", [])
        else:
            names = list(aliases)
        if self.alias not in names:
            return None
        return str(self.client.describe_alias(self.alias)["collection_name"])

    def ensure(self) -> bool:
        """Make the alias exist and its collection loaded; True when it was just created
        (empty, with no cursor: the caller should build it from the database)."""
        current = self.physical()
        if current is None:
            name = self.create_physical()
            self.client.create_alias(name, self.alias)
            return True
        self.client.load_collection(current)
        return False

    def swap(self, new_physical: str) -> str | None:
        """Point the alias at ``new_physical`` and drop what it pointed at before."""
        old = self.physical()
        if old is None:
            self.client.create_alias(new_physical, self.alias)
        else:
            self.client.alter_alias(new_physical, self.alias)
            self.client.drop_collection(old)
        return old

    def drop_orphans(self) -> list[str]:
        """Drop physical collections of this alias that nothing points at (a rebuild that
        died half-way)."""
        keep = self.physical()
        dropped = []
        for name in self.client.list_collections():
            if name.startswith(f"{self.alias}_") and name != keep:
                self.client.drop_collection(name)
                dropped.append(name)
        return dropped

    # ---- writes (single writer) ----------------------------------------------------
    def upsert(
        self,
        docs: Sequence[ProductDoc],
        vectors: np.ndarray,
        hashes: Sequence[int],
        collection: str | None = None,
    ) -> None:
        rows = [
            {
                "id": d.id,
                "vector": vectors[n].tolist(),
                "category_id": d.category_id,
                "brand_id": d.brand_id or 0,
                "price_cents": d.price_cents,
                "published": d.published,
                "doc_hash": hashes[n],
            }
            for n, d in enumerate(docs)
        ]
        if rows:
            self.client.upsert(collection or self.alias, rows)

    def delete(self, ids: Sequence[int], collection: str | None = None) -> None:
        if ids:
            self.client.delete(collection or self.alias, ids=[int(i) for i in ids])

    def flush(self, collection: str | None = None) -> None:
        self.client.flush(collection or self.alias)

    def cursor(self) -> int | None:
        props = self.client.describe_collection(self.alias).get("properties") or {}
        value = props.get(CURSOR_PROPERTY)
        return int(value) if value is not None else None

    def set_cursor(self, cursor: int, collection: str | None = None) -> None:
        name = collection or self.physical()
        if name is None:
            raise RuntimeError("no collection behind the alias")
        self.client.alter_collection_properties(name, properties={CURSOR_PROPERTY: str(cursor)})

    # ---- reads ---------------------------------------------------------------------
    def hashes(self, ids: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for start in range(0, len(ids), OUTPUT_BATCH):
            chunk = [int(i) for i in ids[start : start + OUTPUT_BATCH]]
            rows = self.client.get(
                self.alias, ids=chunk, output_fields=["doc_hash"], consistency_level="Strong"
            )
            out.update({int(r["id"]): int(r["doc_hash"]) for r in rows})
        return out

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), OUTPUT_BATCH):
            chunk = [int(i) for i in ids[start : start + OUTPUT_BATCH]]
            rows = self.client.get(self.alias, ids=chunk, output_fields=["vector", "published"])
            for r in rows:
                if r.get("published", True):
                    out[int(r["id"])] = np.asarray(r["vector"], dtype=np.float32)
        return out

    def all_vectors(self, page: int = 1_000) -> tuple[np.ndarray, np.ndarray]:
        """Every published row as (ids, vectors), read page by page (Strong consistency:
        everything written and flushed before is there)."""
        ids: list[int] = []
        rows: list[list[float]] = []
        iterator = self.client.query_iterator(
            self.alias,
            batch_size=page,
            filter="published == true",
            output_fields=["vector"],
            consistency_level="Strong",
        )
        try:
            while batch := iterator.next():
                ids.extend(int(r["id"]) for r in batch)
                rows.extend(r["vector"] for r in batch)
        finally:
            iterator.close()
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(ids), DIM)
        return np.asarray(ids, dtype=np.int64), vectors

    def search(
        self, vectors: np.ndarray, limit: int, exclude_ids: Sequence[int] = ()
    ) -> list[list[Hit]]:
        """Nearest published products for each query vector (one call for the batch)."""
        if len(vectors) == 0:
            return []
        expr = "published == true"
        if exclude_ids:
            expr += f" and id not in [{', '.join(str(int(i)) for i in exclude_ids)}]"
        result = self.client.search(
            self.alias,
            data=[v.tolist() for v in vectors],
            limit=limit,
            filter=expr,
            anns_field="vector",
            search_params={"metric_type": "COSINE", "params": {"ef": max(MIN_EF, limit)}},
        )
        return [[Hit(int(h["id"]), float(h["distance"])) for h in hits] for hits in result]

    def count(self) -> int:
        rows = self.client.query(
            self.alias, filter="", output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def ping(self) -> dict[str, Any]:
        return {"ok": True, "backend": "server" if is_server_uri(self.uri) else "lite"}

    def close(self) -> None:
        self.client.close()
