"""Hot-SKU reservations: the inventory engine against the seeds' approaches, in one run.

Same MariaDB server (a fresh database), same Redis server, same client machine, one hot
SKU per system (the engine's shard owns its row; the peers must not write it):

- engine: ``InventoryClient.reserve`` from N asyncio callers in this process -> batched
  actor calls -> InventoryShard group commit (durable before ack);
- (a) ``peers.mysql_conditional``: conditional UPDATE + operation row, one transaction per
  attempt, N threads (connections capped by ``--mysql-max-conns``);
- (b) ``peers.redis_lua``: Lua pre-decrement + LPUSH onto a queue, N threads.

For every concurrency level, systems take turns for ``--rounds`` rounds of ``--seconds``.
Reported: median ops/s over the rounds, p50/p99 latency (all rounds pooled), and the
engine's ratios to (a) and (b) (target: >= 10x (a) and >= 2x (b)). At the end every
system's acknowledged reservations are checked against what it stored.

    .venv/bin/python bench/inventory_bench.py --seconds 5 --rounds 3 --levels 64,256,1024
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import redis
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import mysql_conditional, redis_lua  # noqa: E402
from peers.common import RoundResult, percentile  # noqa: E402

from actors.inventory_client import InventoryClient, shard_name  # noqa: E402
from actors.inventory_shard import InventoryShard  # noqa: E402
from actors.registry import actor_options  # noqa: E402
from raymall.errors import OutOfStock  # noqa: E402
from raymall.hashing import shard_for  # noqa: E402
from raymall.launcher.app import ray_env  # noqa: E402
from raymall.launcher.scratch import make_mysql_database  # noqa: E402
from raymall.launcher.shop import SkuSpec, add_category, add_product  # noqa: E402
from raymall.settings import Settings  # noqa: E402

STOCK = 1_000_000_000


def create_skus(url: str, count: int, shards: int) -> list[int]:
    """``count`` SKUs holding STOCK units each (written offline, before the shards start)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        cat = add_category(conn, "bench", "bench")
        specs = [SkuSpec(f"bench-{i}", 100, STOCK) for i in range(count)]
        ids = add_product(conn, cat, "bench", specs, shards=shards)[1]
    engine.dispose()
    return ids


async def engine_round(
    client: InventoryClient, sku: int, level: int, seconds: float
) -> RoundResult:
    result = RoundResult("engine", level, seconds, note=f"{level} asyncio callers, 1 process")
    tag = secrets.token_hex(3)
    stop_at = 0.0
    start_gate = asyncio.Event()

    async def caller(index: int) -> None:
        await start_gate.wait()
        n = 0
        lat = result.latencies_ms
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                await client.reserve(f"e-{tag}-{index}-{n}", {sku: 1}, ttl_s=3600)
                result.ok += 1
            except OutOfStock:
                result.refused += 1
            except Exception:
                result.errors += 1
                continue
            finally:
                n += 1
            lat.append((time.perf_counter() - t0) * 1000)

    tasks = [asyncio.create_task(caller(i)) for i in range(level)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    stop_at = start + seconds
    start_gate.set()
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - start
    return result


def summarize(rounds: list[RoundResult]) -> dict[str, Any]:
    lat = [x for r in rounds for x in r.latencies_ms]
    return {
        "name": rounds[0].name,
        "level": rounds[0].level,
        "median": statistics.median(r.ops_per_s for r in rounds),
        "all": [round(r.ops_per_s) for r in rounds],
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "errors": sum(r.errors for r in rounds),
        "note": rounds[0].note,
    }


def conditions(
    args: argparse.Namespace, url: str, redis_url: str, nice: str, ray_metrics: str
) -> list[str]:
    with create_engine(url).connect() as conn:
        mariadb = conn.execute(text("SELECT VERSION()")).scalar()
        flush = conn.execute(text("SELECT @@innodb_flush_log_at_trx_commit")).scalar()
    r = redis.Redis.from_url(redis_url)
    redis_version = r.info("server").get("redis_version")
    r.close()
    return [
        f"machine: {os.cpu_count()} CPUs, {platform.platform()}, load {os.getloadavg()}",
        f"python {platform.python_version()}, ray {ray.__version__}",
        f"mariadb {mariadb} (innodb_flush_log_at_trx_commit={flush}), redis {redis_version}",
        f"engine: {args.shards} shards, group_commit_window_ms={args.window_ms}, "
        f"group_commit_max_ops={args.max_ops}, client window {args.client_window_ms} ms, "
        f"client max batch {args.client_max_batch}",
        f"rounds: {args.rounds} x {args.seconds}s per system and level, systems interleaved",
        f"shard processes at nice {nice}, this client and the peers' threads at nice 0",
        f"Ray's metrics collection (RAY_enable_metrics_collection): {ray_metrics}",
    ]


def verify(
    url: str, skus: dict[str, int], ok: dict[str, int], redis_url: str, prefix: str
) -> list[str]:
    """Every system's acks against what it stored."""
    lines = []
    engine = create_engine(url)
    with engine.connect() as conn:
        for name in ("engine", "mysql_conditional"):
            row = conn.execute(
                text("SELECT total, available, reserved, sold FROM inventory WHERE sku_id = :s"),
                {"s": skus[name]},
            ).one()
            prefix_key = "e-%" if name == "engine" else "pa-%"
            stored = conn.execute(
                text(
                    "SELECT COUNT(*) FROM inventory_ops WHERE `key` LIKE :k AND state = 'reserved'"
                ),
                {"k": prefix_key},
            ).scalar()
            good = (
                row.reserved == ok[name] == stored
                and row.total == row.available + row.reserved + row.sold
            )
            lines.append(
                f"{name}: acked {ok[name]}, inventory.reserved {row.reserved}, "
                f"ledger rows {stored} -> {'OK' if good else 'MISMATCH'}"
            )
    engine.dispose()
    r = redis.Redis.from_url(redis_url)
    left = int(r.get(f"{prefix}:stock") or 0)
    r.close()
    good = STOCK - left == ok["redis_lua"]
    lines.append(
        f"redis_lua: acked {ok['redis_lua']}, counter decremented by {STOCK - left} "
        f"-> {'OK' if good else 'MISMATCH'} (queue not persisted: not durable at ack)"
    )
    return lines


async def main_async(args: argparse.Namespace) -> int:
    url, drop = make_mysql_database(args.database_url, "rm_bench")
    prefix = f"raymall:bench:{secrets.token_hex(3)}"
    namespace = f"inv-bench-{secrets.token_hex(3)}"
    try:
        engine_sku, peer_sku = create_skus(url, 2, args.shards)
        redis_lua.setup(args.redis_url, prefix, STOCK)
        settings = Settings(
            env="test",
            var_dir=Path(tempfile.mkdtemp(prefix="inv-bench-")),
            database_url=url,
            redis_url=args.redis_url,
            namespace=namespace,
            inventory_shards=args.shards,
            group_commit_window_ms=args.window_ms,
            group_commit_max_ops=args.max_ops,
            inventory_client_window_ms=args.client_window_ms,
            inventory_client_max_batch=args.client_max_batch,
            actor_num_cpus=0.05,
        )
        # the shards run as under raymall serve (raymall.launcher.app): its worker niceness,
        # and Ray's own metrics collection as it sets it (read by the raylet too, so exported
        # here)
        served = ray_env(settings)
        nice = served["RAY_worker_niceness"]
        ray_metrics = served["RAY_enable_metrics_collection"]
        os.environ["RAY_enable_metrics_collection"] = ray_metrics
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            namespace=namespace,
            log_to_driver=False,
            runtime_env={
                "env_vars": {
                    "RAY_worker_niceness": nice,
                    "RAY_enable_metrics_collection": ray_metrics,
                }
            },
        )
        cls = ray.remote(InventoryShard)
        handles = [
            cls.options(**actor_options(settings, shard_name(i))).remote(settings, i)
            for i in range(args.shards)
        ]
        ray.get([h.check_alive.remote() for h in handles], timeout=120)
        client = InventoryClient(settings)
        for i in range(200):  # warm up: handles, connections, code paths
            await client.reserve(f"e-warm-{i}", {engine_sku: 1}, ttl_s=3600)
        ok = {"engine": 200, "mysql_conditional": 0, "redis_lua": 0}
        print("\n".join(conditions(args, url, args.redis_url, nice, ray_metrics)), flush=True)
        summaries = []
        for level in args.levels:
            by_system: dict[str, list[RoundResult]] = {}
            for rnd in range(args.rounds):
                a = await asyncio.to_thread(
                    mysql_conditional.run,
                    url,
                    peer_sku,
                    shard_for(peer_sku, args.shards),
                    level,
                    args.seconds,
                    args.mysql_max_conns,
                )
                b = await asyncio.to_thread(
                    redis_lua.run, args.redis_url, prefix, peer_sku, level, args.seconds
                )
                hot = handles[shard_for(engine_sku, args.shards)]
                before = await hot.stats.remote()
                e = await engine_round(client, engine_sku, level, args.seconds)
                after = await hot.stats.remote()
                batches = max(1, after["batches"] - before["batches"])
                e.note += (
                    f", {e.ok / batches:.0f} ops per commit, "
                    f"{1000 * (after['commit_s'] - before['commit_s']) / batches:.2f} ms per commit"
                )
                for res in (a, b, e):
                    by_system.setdefault(res.name, []).append(res)
                    ok[res.name] += res.ok
                    print(
                        f"  level {level} round {rnd + 1}: {res.name:18s} "
                        f"{res.ops_per_s:9.0f} ops/s  errors {res.errors}",
                        flush=True,
                    )
            summaries.append({name: summarize(rs) for name, rs in by_system.items()})
        await asyncio.gather(*(h.drain.remote() for h in handles))
        print()
        header = f"{'level':>5}  {'system':18s} {'median ops/s':>12} {'p50 ms':>8} {'p99 ms':>8}"
        print(header + "  rounds / conditions")
        met = []
        for s in summaries:
            for name in ("mysql_conditional", "redis_lua", "engine"):
                x = s[name]
                print(
                    f"{x['level']:>5}  {name:18s} {x['median']:12.0f} {x['p50']:8.2f} "
                    f"{x['p99']:8.2f}  {x['all']} {x['note']}, errors {x['errors']}"
                )
            eng = s["engine"]["median"]
            ra = eng / s["mysql_conditional"]["median"]
            rb = eng / s["redis_lua"]["median"]
            hit = ra >= 10 and rb >= 2
            if hit:
                met.append(s["engine"]["level"])
            print(
                f"{'':>5}  ratios: engine/(a) {ra:.1f}x (target 10x), engine/(b) {rb:.1f}x "
                f"(target 2x) -> {'MEETS' if hit else 'misses'} the target"
            )
        print()
        print(f"target met at levels: {met or 'none'}")
        print(f"load average at the end: {os.getloadavg()}")
        skus = {"engine": engine_sku, "mysql_conditional": peer_sku}
        lines = verify(url, skus, ok, args.redis_url, prefix)
        print("\n".join(lines))
        for h in handles:
            ray.kill(h, no_restart=True)
        return 0 if all(line.endswith("OK") or "-> OK" in line for line in lines) else 1
    finally:
        if ray.is_initialized():
            ray.shutdown()
        redis_lua.cleanup(args.redis_url, prefix)
        if not args.keep:
            drop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--database-url",
        default=os.environ.get("RAYMALL_TEST_DATABASE_URL", "mysql+pymysql://root@127.0.0.1:3306/"),
        help="MariaDB/MySQL server URL (a fresh database is created and dropped)",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("RAYMALL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    p.add_argument("--seconds", type=float, default=5.0, help="length of one round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--levels",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[64, 256, 1024],
        help="concurrency levels (callers / threads)",
    )
    p.add_argument(
        "--mysql-max-conns",
        type=int,
        default=64,
        help="peer (a) connections at most (max_connections is shared; a hot row serializes)",
    )
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--window-ms", type=float, default=2.0)
    p.add_argument("--max-ops", type=int, default=500)
    p.add_argument("--client-window-ms", type=float, default=1.0)
    p.add_argument("--client-max-batch", type=int, default=512)
    p.add_argument("--keep", action="store_true", help="keep the bench database")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main_async(parse_args())))
