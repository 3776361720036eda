"""Three Ray nodes on this machine, the flash-sale scenario (10,000 users + 1,000 duplicate
attempts against 1,000 units), and the node that hosts the sale's shard removed mid-run:
shards restart on the surviving nodes from the database and the outcome is exact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SERVER_DB, SERVER_REDIS, make_mysql_database, private_redis_db

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (SERVER_DB and SERVER_REDIS),
        reason="needs RAYMALL_TEST_DATABASE_URL and RAYMALL_TEST_REDIS_URL",
    ),
]
ROOT = Path(__file__).resolve().parents[2]


def test_flash_sale_is_exact_when_a_node_hosting_shards_is_removed(tmp_path: Path) -> None:
    assert SERVER_DB and SERVER_REDIS
    url, drop = make_mysql_database(SERVER_DB)
    out = tmp_path / "result.json"
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.e2e.multinode_scenario",
                str(out),
                url,
                private_redis_db(SERVER_REDIS),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        drop()
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(out.read_text())
    assert proc.returncode == 0, (result, proc.stderr[-5000:])
    assert result["nodes"] == 3
    assert result["shard_nodes"] >= 2, "shards should be spread across nodes"
    assert result["node_removed"] and result["removed_node_hosted"]
    assert result["restarted_on_survivors"]
    assert result["orders_acked"] == 1_000
    assert result["keys_with_two_orders"] == 0
    assert result["db"]["orders"] == result["db"]["purchases"] == result["db"]["sold"] == 1_000
    assert result["db"]["max_per_user"] <= 1
    assert result["requests"] == 11_000
    bad = {k: v for k, v in result["statuses"].items() if not (k == "201" or k.startswith("409:"))}
    assert not bad, result["statuses"]
