"""``raymall reindex`` in-process: a full rebuild from the database into a fresh Milvus
Lite collection, swapped in behind the alias, with the outbox cursor stored beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from raymall.db import make_engine, session_factory
from raymall.settings import Settings
from recommend.index import ProductIndex
from recommend.reindex import reindex
from tests.recommend_helpers import add_product


def _release(uri: str) -> None:
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(uri)


def test_reindex_rebuilds_every_published_product(sqlite_url: str, tmp_path: Path) -> None:
    sessions = session_factory(make_engine(sqlite_url, pool_size=1))
    published = [
        add_product(sessions, f"Thermos model {n}", category="Thermoses") for n in range(3)
    ]
    add_product(sessions, "Draft kettle", category="Kettles", status="draft")
    settings = Settings(
        var_dir=tmp_path,
        database_url=sqlite_url,
        milvus_uri=str(tmp_path / "milvus.db"),
        recommender_outbox_grace_s=0,
    )
    first = reindex(settings, batch_size=2)
    assert first["products"] == len(published) == first["rows"]
    assert first["via"] == "local"
    assert first["cursor"] >= 1  # grace 0: every outbox row so far counts as settled
    second = reindex(settings, batch_size=50)
    assert second["collection"] != first["collection"]
    _release(settings.resolved_milvus_uri)
    index = ProductIndex(settings.resolved_milvus_uri, settings.recommender_collection)
    assert index.ensure() is False  # present; loaded again after the reopen
    assert index.physical() == second["collection"]
    assert first["collection"] not in index.client.list_collections()
    assert index.count() == 3 and index.cursor() == second["cursor"]
    assert set(index.hashes(published)) == set(published)
    index.close()
    _release(settings.resolved_milvus_uri)


def test_reindex_rejects_a_batch_size_below_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        reindex(Settings(var_dir=tmp_path), batch_size=0)
