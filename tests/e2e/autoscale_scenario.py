"""The ingress autoscaling on a 2-node local Ray cluster: load drives Serve to add replicas
above the minimum, and when the load stops they are removed again, while a trickle of
requests keeps going through the removal. The ingress replicas stay on the head node (its
``ingress`` resource, as in multinode_scenario.py: HAProxy there reaches them); the shards
spread over both nodes. Run by tests/e2e/test_autoscaling.py in its own
process (a test session has one Ray instance; this needs a cluster of its own).

    python -m tests.e2e.autoscale_scenario OUT.json [DATABASE_URL REDIS_URL]

It writes what it measured to OUT.json; the test asserts on it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import ray
from ray import serve
from ray.cluster_utils import Cluster

from raymall.launcher import app as app_mod
from raymall.settings import Settings
from tests.conftest import free_port_block

MIN, MAX = 1, 3
LOAD_CONCURRENCY = 48
SCALE_UP_WITHIN_S = 45
SCALE_DOWN_WITHIN_S = 45


def running_replicas() -> int:
    app = serve.status().applications.get(app_mod.APP_NAME)
    if app is None or "Ingress" not in app.deployments:
        return 0
    return int(app.deployments["Ingress"].replica_states.get("RUNNING", 0))


class Load:
    """``concurrency`` clients asking GET /readyz in a loop (``pause_s`` between a client's
    requests); every answer is counted. A readiness check waits on the database, Redis
    and every actor, so requests stay in flight in the replica, which is what Serve's
    autoscaler counts (a cached listing page is answered before one is sampled)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: Counter[str] = Counter()
        self.refusals: list[str] = []  # the first answers other than 200, for the report
        self.concurrency = 0
        self.pause_s = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _client(self, c: httpx.AsyncClient, n: int) -> None:
        while not self.stop.is_set():
            if n >= self.concurrency:
                await asyncio.sleep(0.05)
                continue
            try:
                resp = await c.get("/readyz")
                self.statuses[str(resp.status_code)] += 1
                if resp.status_code != 200 and len(self.refusals) < 5:
                    self.refusals.append(resp.text[:2000])
            except httpx.HTTPError as exc:
                self.statuses[f"conn:{type(exc).__name__}"] += 1
            if self.pause_s:
                await asyncio.sleep(self.pause_s)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=LOAD_CONCURRENCY)
        async with httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits) as c:
            await asyncio.gather(*(self._client(c, n) for n in range(LOAD_CONCURRENCY)))


def wait_for(predicate: Any, timeout: float, samples: list[tuple[float, int]], t0: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = running_replicas()
        samples.append((round(time.monotonic() - t0, 1), n))
        if predicate(n):
            return True
        time.sleep(0.5)
    return False


def main(out: Path, database_url: str | None, redis_url: str | None) -> None:
    var = Path(tempfile.mkdtemp(prefix="raymall-autoscale-"))
    settings = Settings(
        env="test",
        var_dir=var,
        namespace=f"raymall-as-{secrets.token_hex(3)}",
        http_port=free_port_block(),
        database_url=database_url,
        redis_url=redis_url,
        inventory_shards=2,
        order_shards=1,
        recommender=False,
        proxy_location="HeadOnly",
        ingress_resources={"ingress": 0.01},
        ingress_autoscaling=True,
        ingress_replicas=MIN,
        ingress_min_replicas=MIN,
        ingress_max_replicas=MAX,
        ingress_target_ongoing_requests=2,
        ingress_upscale_delay_s=1,
        ingress_downscale_delay_s=2,
        # replicas report every 10 s (Serve's metrics_interval_s); the window must be longer
        ingress_autoscaling_look_back_s=11,
        # the load is GET /readyz from 48 clients on two cores: probes wait their turn
        # with each other, and a failure here must be the routing's, not a slow check's
        readiness_timeout_s=10,
    )
    env = app_mod.prepare_environment(settings)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"ingress": 1}, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(
        address=cluster.address,
        namespace=settings.namespace,
        runtime_env={"env_vars": env},
        log_to_driver=False,
    )
    result: dict[str, Any] = {"nodes": len(ray.nodes())}
    running = app_mod.start(settings)
    try:
        run(running, result)
    finally:
        out.write_text(json.dumps(result, indent=2, default=str))
        app_mod.stop(running)
        ray.shutdown()
        cluster.shutdown()
        app_mod.remove_haproxy_dir(settings)


def run(running: Any, result: dict[str, Any]) -> None:
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    result["samples"] = samples
    result["replicas_at_start"] = running_replicas()
    load = Load(running.url)
    load.concurrency = LOAD_CONCURRENCY
    load.thread.start()
    result["scaled_up"] = wait_for(lambda n: n > MIN, SCALE_UP_WITHIN_S, samples, t0)
    time.sleep(3)  # let it reach what the load asks for
    result["peak_replicas"] = max([n for _, n in samples] + [running_replicas()])
    result["up_after_s"] = next((t for t, n in samples if n > MIN), None)
    load.concurrency, load.pause_s = 1, 0.1  # the load stops; one client keeps asking
    stopped, before = time.monotonic() - t0, sum(load.statuses.values())
    result["scaled_down"] = wait_for(lambda n: n == MIN, SCALE_DOWN_WITHIN_S, samples, t0)
    result["down_after_s"] = round(time.monotonic() - t0 - stopped, 1)
    time.sleep(2)  # requests to the removed replicas' last moments are counted too
    result["requests_while_scaling_down"] = sum(load.statuses.values()) - before
    load.stop.set()
    load.thread.join(timeout=30)
    result["replicas_at_end"] = running_replicas()
    result["statuses"] = dict(load.statuses)
    result["refusals"] = load.refusals
    result["requests"] = sum(load.statuses.values())


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]), args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else None)
