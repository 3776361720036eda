"""Live flash-sale viewers: many idle server-sent event streams on ONE ingress replica.

Starts ``raymall serve`` with one ingress replica, makes a product, its stock and a running
flash sale through the API, opens ``--clients`` streams of ``GET /flash-sales/{id}/events``
(raw HTTP/1.1 from this process, to 127.0.0.1 only), waits until each has read its first
event, then buys the sale's last units in one purchase and measures when each stream
reads ``sold_out``. It reports:

- delivery: the time from sending the purchase (and from its 201) to each client's
  ``sold_out``: p50, p99, max, and how many arrived within 1 s;
- the shard's work while the clients connect and idle: the change of
  ``raymall_inventory_ops_total`` and of the group-commit batch count (``/metrics``);
  ``0`` means no per-client work;
- the replica's memory: its resident set before the streams, with them all connected, and
  after the sale sold out.

Target (issue #29): 2,000 clients get ``sold_out`` within 1 s, no per-client shard work,
the replica grows by less than 200 MB. Needs a quiet machine: it waits while
/tmp/raymall-quiet exists, then holds it while it measures (removed at exit).

    .venv/bin/python bench/sse_bench.py --clients 2000 \\
        --mysql-server mysql+pymysql://root@127.0.0.1:3306/ --redis-url redis://127.0.0.1:6379/
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import raymall_env, raymall_server  # noqa: E402

QUIET = Path("/tmp/raymall-quiet")
MAX_RUN_S = 11 * 60


def hold_quiet() -> None:
    while QUIET.exists():
        print("another benchmark is running (/tmp/raymall-quiet); waiting", flush=True)
        time.sleep(15)
    QUIET.touch()
    atexit.register(lambda: QUIET.unlink(missing_ok=True))


# ---- the server's processes -----------------------------------------------------------
def children(pid: int) -> list[int]:
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def replica_pid(server_pid: int) -> int:
    for pid in descendants(server_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "ServeReplica" in cmd and "Ingress" in cmd:
            return pid
    raise RuntimeError("no ingress replica process found")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def metric_sum(base: str, name: str) -> float:
    text = httpx.get(base + "/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---- setup through the API ------------------------------------------------------------
def setup(base: str, var: Path, env: dict[str, str], units: int) -> dict[str, Any]:
    password = f"Pw-{secrets.token_hex(8)}-x9!"
    name = f"sse{secrets.token_hex(3)}"
    subprocess.run(
        [sys.executable, "-m", "raymall", "create-admin", "--email", f"{name}@example.com"]
        + ["--username", name, "--password", password],
        env=raymall_env(var, env),
        check=True,
        capture_output=True,
    )
    c = httpx.Client(base_url=base, timeout=60)
    admin = c.post("/auth/login", json={"username": name, "password": password}).json()
    h = {"Authorization": f"Bearer {admin['access_token']}"}
    cat = c.post("/admin/categories", json={"name": f"Cat {name}"}, headers=h).json()
    body = {
        "title": f"Bench kettle {name}",
        "category_id": cat["id"],
        "skus": [{"code": f"B-{name}", "price_cents": 5000}],
    }
    product = c.post("/admin/products", json=body, headers=h).json()
    sku = product["skus"][0]["id"]
    r = c.post(
        f"/admin/inventory/{sku}/adjust", json={"delta": units * 2, "reason": "bench"}, headers=h
    )
    r.raise_for_status()
    c.post(f"/admin/products/{product['id']}/publish", headers=h).raise_for_status()
    now = int(time.time() * 1000)
    sale = c.post(
        "/admin/flash-sales",
        json={
            "sku_id": sku,
            "price_cents": 999,
            "quantity": units,
            "per_user_limit": units,
            "starts_at_ms": now - 1000,
            "ends_at_ms": now + 3_600_000,
            "title": "SSE bench",
        },
        headers=h,
    )
    sale.raise_for_status()
    buyer = {"email": f"b{name}@example.com", "username": f"b{name}", "password": password}
    c.post("/auth/register", json=buyer).raise_for_status()
    token = c.post("/auth/login", json={"username": buyer["username"], "password": password})
    return {"sale": sale.json()["id"], "buyer": token.json()["access_token"], "units": units}


# ---- the clients ----------------------------------------------------------------------
class Client:
    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.sold_out_at: float | None = None
        self.buf = b""


async def run_client(c: Client, port: int, sale: int, gate: asyncio.Semaphore) -> None:
    async with gate:
        c.reader, c.writer = await asyncio.open_connection("127.0.0.1", port)
        c.writer.write(
            f"GET /flash-sales/{sale}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await c.writer.drain()
        while b"event: sale" not in c.buf:
            chunk = await c.reader.read(4096)
            if not chunk:
                raise RuntimeError(f"stream closed early: {c.buf[:200]!r}")
            c.buf += chunk
    c.connected.set()
    while b"event: sold_out" not in c.buf:
        chunk = await c.reader.read(4096)
        if not chunk:
            return
        c.buf = c.buf[-64:] + chunk
    c.sold_out_at = time.perf_counter()


async def measure(base: str, server_pid: int, ctx: dict[str, Any], n: int) -> dict[str, Any]:
    port = int(base.rsplit(":", 1)[1])
    replica = replica_pid(server_pid)
    await asyncio.sleep(2)
    ops0 = metric_sum(base, "raymall_inventory_ops_total")
    batches0 = metric_sum(base, "raymall_inventory_batch_ops_count")
    rss0 = rss_mb(replica)
    clients = [Client() for _ in range(n)]
    gate = asyncio.Semaphore(200)
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(run_client(c, port, ctx["sale"], gate)) for c in clients]
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 300)
    connect_s = time.perf_counter() - t0
    await asyncio.sleep(5)  # idle
    rss1 = rss_mb(replica)
    ops1 = metric_sum(base, "raymall_inventory_ops_total")
    batches1 = metric_sum(base, "raymall_inventory_batch_ops_count")
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        sent = time.perf_counter()
        r = await http.post(
            f"/flash-sales/{ctx['sale']}/purchase",
            json={"quantity": ctx["units"]},
            headers={"Authorization": f"Bearer {ctx['buyer']}"},
        )
        acked = time.perf_counter()
    assert r.status_code == 201, r.text
    done, _ = await asyncio.wait(tasks, timeout=30)
    rss2 = rss_mb(replica)
    for t in tasks:
        t.cancel()
    for c in clients:
        if c.writer is not None:
            c.writer.close()
    got = [c.sold_out_at for c in clients if c.sold_out_at is not None]
    from_send = sorted((t - sent) * 1000 for t in got)
    from_ack = sorted((t - acked) * 1000 for t in got)

    def pct(xs: list[float], q: float) -> float:
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else float("nan")

    return {
        "clients": n,
        "connect_all_s": round(connect_s, 2),
        "sold_out_received": len(got),
        "within_1s_of_send": sum(1 for x in from_send if x <= 1000),
        "ms_from_send": {
            "p50": pct(from_send, 0.5),
            "p99": pct(from_send, 0.99),
            "max": round(from_send[-1], 1) if from_send else None,
            "mean": round(statistics.fmean(from_send), 1) if from_send else None,
        },
        "ms_from_ack": {"p50": pct(from_ack, 0.5), "max": round(from_ack[-1], 1) if got else None},
        "purchase_ms": round((acked - sent) * 1000, 1),
        "shard_ops_while_connecting": ops1 - ops0,
        "shard_batches_while_connecting": batches1 - batches0,
        "replica_rss_mb": {
            "before": round(rss0, 1),
            "connected": round(rss1, 1),
            "after_sold_out": round(rss2, 1),
            "growth": round(max(rss1, rss2) - rss0, 1),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--units", type=int, default=50)
    ap.add_argument("--mysql-server", help="a MySQL/MariaDB server URL (default: embedded)")
    ap.add_argument("--redis-url", help="a Redis server URL (default: embedded)")
    ap.add_argument("--out", type=Path, help="write the JSON report here too")
    ap.add_argument("--quiet-held", action="store_true", help="the caller holds " + str(QUIET))
    a = ap.parse_args()
    if not a.quiet_held:
        hold_quiet()
    started = time.monotonic()
    env = {"RAYMALL_INGRESS_REPLICAS": "1", "RAYMALL_RECOMMENDER": "0"}
    drop = None
    if a.mysql_server:
        from raymall.launcher.scratch import make_mysql_database, private_redis_db

        db, drop = make_mysql_database(a.mysql_server, prefix="rm_sse")
        env["RAYMALL_DATABASE_URL"] = db
        if a.redis_url:
            env["RAYMALL_REDIS_URL"] = private_redis_db(a.redis_url)
    var = Path(tempfile.mkdtemp(prefix="raymall-sse-"))
    try:
        with raymall_server(env=env, var=var) as base:
            server_pid = json.loads((var / "runtime.json").read_text())["pid"]
            ctx = setup(base, var, env, a.units)
            report = asyncio.run(measure(base, server_pid, ctx, a.clients))
    finally:
        if drop is not None:
            drop()
    report["run_s"] = round(time.monotonic() - started, 1)
    report["target_met"] = (
        report["within_1s_of_send"] == a.clients
        and report["shard_ops_while_connecting"] == 0
        and report["replica_rss_mb"]["growth"] < 200
    )
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    if time.monotonic() - started > MAX_RUN_S:
        print("warning: the run took longer than its bound", file=sys.stderr)
    os._exit(0)


if __name__ == "__main__":
    main()
