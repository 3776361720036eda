"""Observability against the running app: a flame graph of a live shard and of a replica
(``raymall profile``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from raymall.launcher.profile import find_target, live_actors, record

pytestmark = pytest.mark.e2e


def _load(url: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        while not stop.is_set():
            c.get("/products?limit=5")


def test_profile_writes_a_flame_graph_of_a_live_shard_and_a_replica(
    app: Any, tmp_path: Path
) -> None:
    actors = live_actors()
    shard = find_target(actors, actor="inventory-0")
    replica = find_target(actors, replica=0)
    assert shard.pid > 0 and replica.pid > 0 and shard.pid != replica.pid
    stop = threading.Event()
    loader = threading.Thread(target=_load, args=(app.url, stop), daemon=True)
    loader.start()
    try:
        started = time.monotonic()
        svg = record(shard, 2, tmp_path / "shard.svg")
        assert time.monotonic() - started < 30
        replica_svg = record(replica, 2, tmp_path / "replica.svg")
    finally:
        stop.set()
        loader.join(10)
    for path in (svg, replica_svg):
        text = path.read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        assert "py-spy" in text or "flamegraph" in text.lower()
    # the replica was serving requests while sampled: its stacks show the app's code
    assert "raymall" in replica_svg.read_text() or "deployments" in replica_svg.read_text()


def test_the_profile_command_joins_the_cluster_and_writes_the_svg(
    app: Any, ray_session: Any, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    import ray

    out = tmp_path / "cli.svg"
    env = {
        **os.environ,
        "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "RAYMALL_NAMESPACE": ray_session.namespace,
        "RAYMALL_VAR_DIR": str(tmp_path),
    }
    cmd = [sys.executable, "-m", "raymall", "profile", "--actor", "order-0", "--seconds", "1"]
    done = subprocess.run(
        [*cmd, "--out", str(out)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "profiled order-0" in done.stdout
    assert "<svg" in out.read_text()
    missing = subprocess.run(
        [*cmd[:-4], "--actor", "no-such-actor", "--seconds", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1 and "no live actor named 'no-such-actor'" in missing.stderr
