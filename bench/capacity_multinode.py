"""The capacity model's check on a local multi-node Ray cluster with the same total CPUs.

The one-node model (``bench/capacity.py``) predicts what 2 cores serve. Here the same 2
cores are split into a head and a worker node of 1 CPU each (``ray.cluster_utils.Cluster``,
as tests/e2e/multinode_scenario.py runs one; Serve's proxy on the head, replicas and shards
wherever Ray places them), the app is started on it with the settings of
``bench/capacity.py`` (same database setup, same routes and wrk scripts), and each route gets
``--rounds`` saturated runs. Reported: the measured medians, the prediction of the model
from ``--model`` (bench/report/capacity.json: its fixed-load costs), the ratio, and the
CPU per request by kind on the cluster (a second raylet and more Ray daemons cost more).
The result is stored in the capacity JSON under ``multinode`` and docs/capacity.md is
rendered again.

    .venv/bin/python bench/capacity_multinode.py [--routes flash,detail,order]

Traffic goes to 127.0.0.1 only; bounded: one cluster start, per route ``--warmup`` +
``--rounds`` x ``--seconds`` of load.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
import capacity as cap  # noqa: E402
from capacity_report import write_doc  # noqa: E402
from catalog_bench import catalog_facts  # noqa: E402
from catalog_bench import seed as seed_catalog  # noqa: E402

from raymall.auth.tokens import TokenCodec  # noqa: E402
from raymall.launcher.scratch import make_mysql_database  # noqa: E402


def start_cluster(ctx: dict[str, Any], var: Path) -> tuple[Any, Any, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from raymall import ports
    from raymall.launcher import app as app_mod
    from raymall.settings import Settings

    settings = Settings(
        env="test",
        var_dir=var,
        namespace=f"raymall-cap-{secrets.token_hex(3)}",
        http_port=ports.find_free_block(),
        database_url=ctx["db"],
        redis_url=ctx["redis"],
        jwt_secret=ctx["secret"],
        recommender=False,
        inventory_shards=cap.SHARDS,
        proxy_location="HeadOnly",
        access_token_ttl_s=86_400,
        flash_order_timeout_s=7200,
        order_timeout_s=7200,
        flash_rate_user_per_s=100_000,
        flash_rate_user_burst=100_000,
        flash_rate_event_per_s=10_000_000,
        flash_rate_ip_per_s=10_000_000,
    )
    env = app_mod.prepare_environment(settings)
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(
        address=cluster.address,
        namespace=settings.namespace,
        runtime_env={"env_vars": env},
        log_to_driver=False,
    )
    running = app_mod.start(settings)
    return cluster, running, settings


def stop_cluster(cluster: Any, running: Any, settings: Any) -> None:
    import ray

    from raymall.launcher import app as app_mod

    try:
        app_mod.stop(running)
    finally:
        ray.shutdown()
        cluster.shutdown()
        app_mod.remove_haproxy_dir(settings)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--routes", default="flash,detail,order")
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument("--skus", type=int, default=9)
    p.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    p.add_argument("--model", type=Path, default=HERE / "report" / "capacity.json")
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    model = json.loads(a.model.read_text())
    db, drop = make_mysql_database(a.mysql, "rm_capacity")
    redis.Redis.from_url(a.redis).flushdb()
    secret = secrets.token_urlsafe(48)
    tmp = Path(tempfile.mkdtemp(prefix="capacity-mn-"))
    try:
        seed_catalog(db, a.redis, None, tmp / "seed")
        facts = catalog_facts(db)
        skus, users, admin = cap.seed_big(db, a.users, a.skus)
        codec = TokenCodec(secret, access_ttl_s=86_400, refresh_ttl_s=86_400)
        ctx: dict[str, Any] = {
            "db": db,
            "redis": a.redis,
            "secret": secret,
            "skus": skus,
            "facts": facts,
            "tokens": [codec.issue_access(u, "user", f"c{u}")[0] for u in users],
            "admin_token": codec.issue_access(admin, "admin", "cadmin")[0],
        }
        var = tmp / "var"
        var.mkdir()
        cluster, running, settings = start_cluster(ctx, var)
        out: dict[str, Any] = {"nodes": 2, "cpus_per_node": 1, "routes": {}}
        try:
            base = running.url
            cap.prepare(base, ctx)
            scripts = cap.route_scripts(ctx, tmp)
            time.sleep(3)
            cap.QUIET["cores"] = cap.busy_cores(3.0) + 0.2  # each run waits for idle
            me = os.getpid()
            for name in a.routes.split(","):
                cap.run_load(base, scripts[name], a.warmup, a.connections, 0, me)
                runs = []
                for rnd in range(a.rounds):
                    run = cap.run_load(base, scripts[name], a.seconds, a.connections, 0, me)
                    runs.append(run)
                    print(
                        f"multinode {name:8} round {rnd + 1}: {run['rps']:7.0f} req/s, p99 "
                        f"{run['p99_ms']:.1f} ms, {run['errors']} errors",
                        flush=True,
                    )
                measured = statistics.median(r["rps"] for r in runs)
                one = model["routes"].get(name, {})
                # the one-node model (its costs, idle CPU and process counts), with the other
                # work measured on the machine during these runs
                check = cap.model(
                    one["fixed"]["ms_per_request"],
                    model["idle_cores"],
                    model["process_counts"],
                    model["conditions"]["cores"],
                    measured,
                    hot=name == "flash",
                    foreign=statistics.median(r["foreign_cores"] for r in runs),
                )
                predicted = check["predicted_here_rps"]
                cpu = {
                    k: round(
                        statistics.median(
                            1000 * r["cpu_s"].get(k, 0.0) / r["requests"] for r in runs
                        ),
                        4,
                    )
                    for k in {k for r in runs for k in r["cpu_s"]}
                }
                out["routes"][name] = {
                    "measured_rps": round(measured, 0),
                    "runs_rps": [round(r["rps"], 1) for r in runs],
                    "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
                    "errors": sum(r["errors"] for r in runs),
                    "one_node_measured_rps": one["saturated"]["rps"],
                    "predicted_rps": predicted,
                    "foreign_cores": check["foreign_cores"],
                    "ratio": check["ratio"],
                    "ms_per_request": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
                }
                print(
                    f"multinode {name:8} measured {measured:.0f}, predicted {predicted}", flush=True
                )
        finally:
            stop_cluster(cluster, running, settings)
        out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        out["commit"] = cap.git_commit()
        model["multinode"] = out
        a.model.write_text(json.dumps(model, indent=2))
        write_doc(a.model)
        print(json.dumps({k: v for k, v in out["routes"].items()}, indent=2, default=str))
    finally:
        drop()
        redis.Redis.from_url(a.redis).flushdb()


if __name__ == "__main__":
    main()
