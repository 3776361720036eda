"""The Milvus adapter on Milvus Lite (a directory under tmp): the same code a server uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recommend.index import ProductIndex
from recommend.text import ProductDoc


def _doc(pid: int, *, published: bool = True, category: int = 1) -> ProductDoc:
    return ProductDoc(
        id=pid,
        title=f"p{pid}",
        description="",
        category_id=category,
        category_path=("c",),
        brand_id=None,
        brand_name=None,
        price_cents=100 * pid,
        published=published,
    )


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture()
def index(tmp_path: Path) -> ProductIndex:
    idx = ProductIndex(str(tmp_path / "milvus.db"), "products")
    assert idx.ensure() is True
    yield idx
    idx.close()


def test_upsert_search_get_and_delete_round_trip(index: ProductIndex) -> None:
    rng = np.random.default_rng(1)
    vectors = _unit(rng, 20)
    docs = [_doc(i + 1) for i in range(20)]
    index.upsert(docs, vectors, [i + 100 for i in range(20)])
    index.flush()
    assert index.count() == 20
    assert index.hashes([1, 2, 999]) == {1: 100, 2: 101}
    got = index.vectors([3])
    assert np.allclose(got[3], vectors[2], atol=1e-5)
    hits = index.search(vectors[4:5], limit=3)[0]
    assert hits[0].id == 5 and hits[0].score == pytest.approx(1.0, abs=1e-4)
    index.delete([5])
    index.flush()
    assert index.count() == 19
    assert 5 not in {h.id for h in index.search(vectors[4:5], limit=10)[0]}


def test_search_skips_unpublished_rows_and_excluded_ids(index: ProductIndex) -> None:
    rng = np.random.default_rng(2)
    vectors = _unit(rng, 6)
    docs = [_doc(i + 1, published=i != 0) for i in range(6)]
    index.upsert(docs, vectors, [0] * 6)
    index.flush()
    ids = {h.id for h in index.search(vectors[0:1], limit=10)[0]}
    assert 1 not in ids and ids == {2, 3, 4, 5, 6}
    ids = {h.id for h in index.search(vectors[0:1], limit=10, exclude_ids=[2, 3])[0]}
    assert ids == {4, 5, 6}
    assert 1 not in index.vectors([1, 2])


def test_batched_search_answers_each_query(index: ProductIndex) -> None:
    rng = np.random.default_rng(3)
    vectors = _unit(rng, 30)
    index.upsert([_doc(i + 1) for i in range(30)], vectors, [0] * 30)
    index.flush()
    results = index.search(vectors[:8], limit=2)
    assert [r[0].id for r in results] == list(range(1, 9))


def test_upsert_of_an_existing_id_replaces_it(index: ProductIndex) -> None:
    rng = np.random.default_rng(4)
    v = _unit(rng, 2)
    index.upsert([_doc(1)], v[:1], [1])
    index.flush()
    index.upsert([_doc(1)], v[1:], [2])
    index.flush()
    assert index.count() == 1
    assert index.hashes([1]) == {1: 2}


def test_cursor_and_data_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "milvus.db")
    first = ProductIndex(path, "products")
    first.ensure()
    assert first.cursor() is None
    rng = np.random.default_rng(5)
    first.upsert([_doc(1), _doc(2)], _unit(rng, 2), [7, 8])
    first.flush()
    first.set_cursor(42)
    first.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)  # as if the process had ended
    again = ProductIndex(path, "products")
    assert again.ensure() is False  # found, and loaded again
    assert again.cursor() == 42
    assert again.count() == 2
    assert again.hashes([1, 2]) == {1: 7, 2: 8}
    again.close()


def test_swap_replaces_the_collection_behind_the_alias(index: ProductIndex) -> None:
    rng = np.random.default_rng(6)
    index.upsert([_doc(1)], _unit(rng, 1), [1])
    index.flush()
    old = index.physical()
    orphan = index.create_physical()  # a rebuild that died half-way
    assert index.drop_orphans() == [orphan]
    new = index.create_physical()
    index.upsert([_doc(2), _doc(3)], _unit(rng, 2), [2, 3], collection=new)
    index.flush(collection=new)
    index.set_cursor(9, collection=new)
    assert index.swap(new) == old
    assert index.physical() == new
    assert index.count() == 2 and index.cursor() == 9
    assert old not in index.client.list_collections()


def test_a_second_process_cannot_open_the_lite_data(index: ProductIndex) -> None:
    code = (
        "import sys\n"
        "from recommend.index import ProductIndex, IndexLocked\n"
        "try:\n"
        f"    ProductIndex({index.uri!r}, 'products')\n"
        "except IndexLocked as exc:\n"
        "    print('locked:', exc); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "another process" in proc.stdout
