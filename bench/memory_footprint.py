"""Resident memory of ``raymall serve`` at idle, per process kind, in two configurations.

- **default**: what ``make run`` runs: the embedded stores (SQLite file, embedded
  redis-server, Milvus Lite under the var dir), ``raymall seed --demo``, every setting
  at its default (2 ingress replicas, 4 inventory and 2 order shards, the recommender on);
- **small**: the small-machine configuration of the README ("Small machines"): the same
  embedded stores and demo shop with ``SMALL_MACHINE`` below (one ingress replica, one
  inventory and one order shard, no recommender, Serve's own proxy instead of HAProxy, a
  small Ray object store, no Ray worker kept idle).

Per configuration: a fresh var dir, ``raymall seed --demo``, ``raymall serve --num-cpus 2``
until ready, then the demo journey (browse, detail, sign up, address, cart, order, pay, the
order paid: the small configuration must still serve the shop), ``--idle`` seconds of rest,
and then RSS and PSS (/proc/<pid>/smaps_rollup) of every process of the server's tree,
summed per kind (``bench/capacity_procs.py``), and how far the machine's MemAvailable
(/proc/meminfo) fell from just before the start (a whole-machine figure: it holds on a
quiet machine). The line ``SMALL-MACHINE total`` checks the
small configuration's total PSS against ``--limit-mb`` (2,048): the bench exits 1 above it.
PSS is the total resident memory of the processes: a page mapped by n of them counts 1/n in
each, so the sum counts every resident page once. The sum of RSS, also printed, counts a
shared page (libpython, Ray's core library, the wheels every worker imports) once per
process that maps it, which overstates what the machine must hold.

    .venv/bin/python bench/memory_footprint.py [--configs default,small] [--json out.json]

Bounded: two server starts of about a minute each, ``--idle`` seconds each.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
from _harness import raymall_env, raymall_server  # noqa: E402
from capacity_procs import memory_by_kind, serve_pid, tree  # noqa: E402
from capacity_report import write_doc  # noqa: E402

# The small-machine configuration (README "Small machines"); every name is a setting or a
# Ray variable that `raymall serve` passes on
SMALL_MACHINE = {
    "RAYMALL_INGRESS_REPLICAS": "1",
    "RAYMALL_INVENTORY_SHARDS": "1",
    "RAYMALL_ORDER_SHARDS": "1",
    "RAYMALL_RECOMMENDER": "false",
    "RAYMALL_HA_PROXY": "false",
    "RAYMALL_RAY_OBJECT_STORE_MB": "100",
    "RAYMALL_DB_POOL_SIZE": "4",
    # no Ray worker waits idle for tasks (Ray keeps up to one per CPU, 80 MiB each)
    "RAY_prestart_worker_first_driver": "0",
    "RAY_enable_worker_prestart": "0",
    "RAY_num_workers_soft_limit": "0",
}
CONFIGS = {"default": {}, "small": SMALL_MACHINE}


def ok(resp: httpx.Response, *codes: int) -> Any:
    if resp.status_code not in (codes or (200, 201)):
        raise RuntimeError(
            f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text[:300]}"
        )
    return resp.json() if resp.content else {}


def demo_journey(base: str) -> dict[str, Any]:
    """Browse, detail, sign up, address, cart, order from the cart, pay; wait until paid."""
    with httpx.Client(base_url=base, timeout=30) as c:
        page = ok(c.get("/products", params={"size": 20}))
        items = page["items"]
        detail = ok(c.get(f"/products/{items[0]['id']}"))
        sku = next(s for s in detail["skus"] if s.get("available", 1) > 0)
        name = f"mem{secrets.token_hex(4)}"
        password = f"Pw-{secrets.token_hex(6)}-xY9!"
        ok(
            c.post(
                "/auth/register",
                json={"email": f"{name}@example.com", "username": name, "password": password},
            )
        )
        tok = ok(c.post("/auth/login", json={"username": name, "password": password}))
        auth = {"Authorization": f"Bearer {tok['access_token']}"}
        addr = ok(
            c.post(
                "/me/addresses",
                headers=auth,
                json={
                    "recipient": "Small Machine",
                    "phone": "+15550001111",
                    "line1": "1 Bench Rd",
                    "city": "Testville",
                    "postal_code": "10001",
                    "country": "US",
                    "is_default": True,
                },
            )
        )
        ok(c.post("/cart/items", headers=auth, json={"sku_id": sku["id"], "quantity": 1}))
        cart = ok(c.get("/cart", headers=auth))
        key = {"Idempotency-Key": secrets.token_hex(8), **auth}
        order = ok(c.post("/orders", headers=key, json={"address_id": addr["id"]}))
        ok(c.post(f"/orders/{order['id']}/pay", headers=auth, json={}), 200, 201, 202)
        deadline = time.monotonic() + 30
        while True:
            status = ok(c.get(f"/orders/{order['id']}", headers=auth))["status"]
            if status == "paid" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if status != "paid":
            raise RuntimeError(f"order {order['id']} is {status}, not paid, 30 s after paying")
    return {
        "products_listed": len(items),
        "cart_lines": len(cart.get("items", cart.get("lines", []))),
        "order_id": order["id"],
        "order_total_cents": order.get("total_cents"),
        "order_status": status,
    }


def seed_demo(var: Path, env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "raymall", "seed", "--demo"],
        env=raymall_env(var, env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode:
        raise RuntimeError(f"raymall seed failed:\n{out.stdout}\n{out.stderr}")


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return out.stdout.strip()


def measure(config: str, env: dict[str, str], idle_s: float) -> dict[str, Any]:
    var = Path(tempfile.mkdtemp(prefix=f"raymall-mem-{config}-"))
    started = time.monotonic()
    seed_demo(var, env)
    available_before = mem_available_mb()
    with raymall_server(env, var=var) as base:
        ready_s = time.monotonic() - started
        journey = demo_journey(base)
        time.sleep(idle_s)
        pid = serve_pid(var)
        # the embedded redis-server daemonizes: not below the server, named in runtime.json
        embedded = json.loads((var / "runtime.json").read_text()).get("embedded_pids", {})
        samples = []
        for _ in range(3):  # three looks, 2 s apart: the median total
            procs = tree(pid) + [p for q in embedded.values() for p in tree(int(q))]
            samples.append(memory_by_kind(procs))
            time.sleep(2)
        # what the machine gave up: MemAvailable (free memory plus the page cache and slabs
        # the kernel can reclaim) before the start and now; other work on the machine
        # moves it too, so it holds on a quiet machine
        machine_mb = available_before - mem_available_mb()
    totals = [sum(r["rss_mb"] for r in s.values()) for s in samples]
    kinds = samples[sorted(range(3), key=lambda i: totals[i])[1]]
    return {
        "config": config,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "idle_s": idle_s,
        "env": env,
        "ready_after_s": round(ready_s, 1),
        "journey": journey,
        "kinds": {
            k: {kk: round(vv, 1) for kk, vv in v.items()}
            for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]["rss_mb"])
        },
        "processes": sum(int(v["processes"]) for v in kinds.values()),
        "rss_mb": round(sum(v["rss_mb"] for v in kinds.values()), 1),
        "pss_mb": round(sum(v["pss_mb"] for v in kinds.values()), 1),
        "machine_mb": round(machine_mb, 1),
    }


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['config']}: {result['processes']} processes, RSS {result['rss_mb']:.0f} MiB, "
        f"PSS {result['pss_mb']:.0f} MiB; the machine's MemAvailable fell by "
        f"{result['machine_mb']:.0f} MiB",
        f"  {'kind':34} {'procs':>5} {'RSS MiB':>8} {'PSS MiB':>8}",
    ]
    for k, v in result["kinds"].items():
        lines.append(f"  {k:34} {int(v['processes']):5} {v['rss_mb']:8.0f} {v['pss_mb']:8.0f}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--configs", default="default,small")
    p.add_argument("--idle", type=float, default=20.0, help="seconds of rest before measuring")
    p.add_argument("--limit-mb", type=float, default=2048.0)
    p.add_argument("--json", type=Path, default=HERE / "report" / "memory_footprint.json")
    a = p.parse_args()
    # a SIGTERM (timeout, kill) unwinds like Ctrl-C, so the server started here is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    for config in a.configs.split(","):
        result = measure(config, CONFIGS[config], a.idle)
        results.append(result)
        print(table(result), flush=True)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(results, indent=2))
    write_doc()  # docs/capacity.md, with the CPU figures of bench/capacity.py if any
    small = next((r for r in results if r["config"] == "small"), None)
    if small is not None:
        verdict = "OK" if small["pss_mb"] < a.limit_mb else "OVER"
        print(
            f"SMALL-MACHINE total PSS {small['pss_mb']:.0f} MiB (sum of RSS "
            f"{small['rss_mb']:.0f} MiB; MemAvailable fell by {small['machine_mb']:.0f} MiB) "
            f"< {a.limit_mb:.0f} MiB: {verdict}; "
            f"demo journey: order {small['journey']['order_status']}"
        )
        if verdict != "OK":
            sys.exit(1)


if __name__ == "__main__":
    main()
