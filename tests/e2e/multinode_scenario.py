"""The flash-sale correctness scenario on a 3-node local Ray cluster, with the node that
hosts the sale's inventory shard removed mid-run. Run by tests/e2e/test_multinode.py in its
own process (a test session has one Ray instance; this needs a cluster of its own).

    python -m tests.e2e.multinode_scenario OUT.json DATABASE_URL REDIS_URL

It writes what it measured to OUT.json; the test asserts on it.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import ray
from ray.cluster_utils import Cluster

from raymall.hashing import shard_for
from raymall.launcher import app as app_mod
from raymall.settings import Settings
from tests.auth_helpers import new_admin
from tests.conftest import free_port_block
from tests.flash_helpers import Job, bulk_users, check_sale, create_sale, drive
from tests.order_helpers import Shop, restock

USERS, DUPLICATES, QUANTITY, CONCURRENCY = 10_000, 1_000, 1_000, 64
REMOVE_AFTER = 3_000  # completed requests before the node goes away


def _node_of(_actor: Any) -> str:
    return str(ray.get_runtime_context().get_node_id())


def actor_nodes(settings: Settings, names: list[str]) -> dict[str, str]:
    """Where each named actor runs now (asked of the actor itself)."""
    handles = {n: ray.get_actor(n, namespace=settings.namespace) for n in names}
    refs = {n: h.__ray_call__.remote(_node_of) for n, h in handles.items()}
    return {n: ray.get(ref, timeout=120) for n, ref in refs.items()}


def main(out: Path, database_url: str, redis_url: str) -> None:
    var = Path(tempfile.mkdtemp(prefix="raymall-multinode-"))
    settings = Settings(
        env="test",
        var_dir=var,
        namespace=f"raymall-mn-{secrets.token_hex(3)}",
        http_port=free_port_block(),
        database_url=database_url,
        redis_url=redis_url,
        inventory_shards=6,
        order_shards=3,
        recommender=False,
        proxy_location="HeadOnly",
        ingress_resources={"ingress": 0.01},
        ingress_replicas=2,
        flash_order_timeout_s=600,
        order_timeout_s=600,
    )
    env = app_mod.prepare_environment(settings)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "resources": {"ingress": 1}, "include_dashboard": False},
    )
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
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
        run(running, cluster, workers, result)
    finally:
        out.write_text(json.dumps(result, indent=2, default=str))
        app_mod.stop(running)
        ray.shutdown()
        cluster.shutdown()
        app_mod.remove_haproxy_dir(settings)


def run(running: Any, cluster: Cluster, workers: list[Any], result: dict[str, Any]) -> None:
    settings = running.settings
    shop = Shop(settings)
    client = httpx.Client(base_url=running.url, timeout=60)
    admin = new_admin(running, client)
    shard_names = [f"inventory-{i}" for i in range(settings.inventory_shards)]
    shard_nodes = actor_nodes(settings, shard_names)
    result["shard_nodes"] = len(set(shard_nodes.values()))
    worker_ids = {w.node_id for w in workers}
    # a SKU whose owning shard lives on a worker node, so that node can be removed
    for _ in range(200):
        sku = shop.sku(price_cents=5000)
        victim = shard_nodes[f"inventory-{shard_for(sku, settings.inventory_shards)}"]
        if victim in worker_ids:
            break
    else:
        raise AssertionError(f"no inventory shard on a worker node: {shard_nodes}")
    restock(client, admin.headers, sku, QUANTITY)
    sale = create_sale(client, admin.headers, sku, quantity=QUANTITY)
    users = bulk_users(shop, USERS)
    jobs = [Job(uid, token, f"mn-{uid}") for uid, token in users]
    jobs += random.Random(7).sample(jobs, DUPLICATES)
    random.Random(8).shuffle(jobs)
    removed = threading.Event()
    victim_node = next(w for w in workers if w.node_id == victim)
    on_victim = sorted(n for n, node in shard_nodes.items() if node == victim)
    result["removed_node_hosted"] = on_victim

    def remove() -> None:
        cluster.remove_node(victim_node, allow_graceful=False)
        removed.set()

    async def progress(done: int) -> None:
        if done == REMOVE_AFTER:
            threading.Thread(target=remove, daemon=True).start()

    started = time.monotonic()
    outcomes = asyncio.run(
        drive(
            running.url,
            sale["id"],
            jobs,
            concurrency=CONCURRENCY,
            on_progress=progress,
            max_tries=200,
        )
    )
    result["seconds"] = round(time.monotonic() - started, 1)
    assert removed.wait(60), "the node was not removed"
    result["node_removed"] = True
    by_key: dict[tuple[int, str], set[int]] = {}
    statuses: dict[str, int] = {}
    for o in outcomes:
        code = o.body.get("error", {}).get("code", "") if o.status >= 400 else ""
        statuses[f"{o.status}{':' + code if code else ''}"] = (
            statuses.get(f"{o.status}{':' + code if code else ''}", 0) + 1
        )
        if o.status == 201:
            by_key.setdefault((o.job.user_id, o.job.key), set()).add(int(o.body["order_id"]))
    result["statuses"] = statuses
    result["requests"] = len(outcomes)
    result["retries"] = sum(o.tries - 1 for o in outcomes)
    result["orders_acked"] = len({i for ids in by_key.values() for i in ids})
    result["keys_with_two_orders"] = sum(1 for ids in by_key.values() if len(ids) > 1)
    result["check"] = check_sale(shop, sale["id"], sku)
    after = actor_nodes(settings, on_victim)
    result["restarted_on_survivors"] = all(after.get(n) not in (None, victim) for n in on_victim)
    result["db"] = db_counts(shop, sale["id"])
    client.close()
    shop.dispose()


def db_counts(shop: Shop, sale_id: int) -> dict[str, int]:
    from sqlalchemy import text

    with shop.engine.connect() as conn:
        one = lambda sql: int(conn.execute(text(sql), {"s": sale_id}).scalar_one())  # noqa: E731
        return {
            "orders": one("SELECT COUNT(*) FROM orders WHERE flash_sale_id = :s"),
            "purchases": one("SELECT COUNT(*) FROM flash_purchases WHERE sale_id = :s"),
            "sold": one("SELECT sold FROM flash_sales WHERE id = :s"),
            "quantity": one("SELECT quantity FROM flash_sales WHERE id = :s"),
            "max_per_user": one(
                "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM "
                "flash_purchases WHERE sale_id = :s GROUP BY user_id) t"
            ),
        }


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
