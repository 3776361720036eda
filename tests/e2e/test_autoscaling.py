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
# the instance's ports are checked free when chosen, and a process of another run on this
# machine may bind one before HAProxy does: then the scenario is run once more
PORT_RACE = "cannot bind socket (Address already in use)"


def run_scenario(out: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    for attempt in (1, 2):
        proc = subprocess.run(
            [sys.executable, "-m", "tests.e2e.autoscale_scenario", str(out), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if attempt == 2 or out.exists() or PORT_RACE not in proc.stderr:
            return proc
    raise AssertionError("unreachable")


def test_ingress_replicas_follow_the_load_up_and_down_with_no_failed_request(
    tmp_path: Path,
) -> None:
    out = tmp_path / "result.json"
    args: list[str] = []
    drop = None
    if SERVER_DB and SERVER_REDIS:
        url, drop = make_mysql_database(SERVER_DB)
        args += [url, private_redis_db(SERVER_REDIS)]
    try:
        proc = run_scenario(out, args)
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
    assert set(result["statuses"]) == {"200"}, (result["statuses"], result["refusals"])
