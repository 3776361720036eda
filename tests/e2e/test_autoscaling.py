"""The ingress autoscales on a local multi-node Ray cluster (tests/e2e/autoscale_scenario.py):
load adds replicas above the minimum, they are removed once it stops, and no request fails,
including those sent while replicas are being removed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SERVER_DB, SERVER_REDIS, make_mysql_database, private_redis_db

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_ingress_replicas_follow_the_load_up_and_down_with_no_failed_request(
    tmp_path: Path,
) -> None:
    out = tmp_path / "result.json"
    args, drop = [str(out)], None
    if SERVER_DB and SERVER_REDIS:
        url, drop = make_mysql_database(SERVER_DB)
        args += [url, private_redis_db(SERVER_REDIS)]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.e2e.autoscale_scenario", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        if drop:
            drop()
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(out.read_text())
    assert proc.returncode == 0, (result, proc.stderr[-5000:])
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    assert result["nodes"] == 2
    assert result["replicas_at_start"] == 1
    assert result["scaled_up"] and result["peak_replicas"] > 1, result["samples"]
    assert result["scaled_down"] and result["replicas_at_end"] == 1, result["samples"]
    assert result["requests"] > 0 and result["requests_while_scaling_down"] > 0
    assert set(result["statuses"]) == {"200"}, result["statuses"]
