"""Order placement over HTTP: throughput and p50/p99 of ``POST /orders`` at 32 connections.

Setup (not timed): an admin, ``--skus`` published SKUs with a large stock, and one buyer per
connection, each with a shipping address. Then wrk (``--tool wrk``, the default: a light
C client, which matters on a 2-core box that also runs the server) or an asyncio httpx
client (``--tool httpx``, exact per-status counts) sends ``POST /orders`` with one line of a
random SKU and a fresh ``Idempotency-Key`` per request, for ``--seconds``.

Afterwards the bench counts the orders the app stored during the run (through
``GET /admin/orders``) and checks the stock of every SKU: reserved units must equal the
orders placed (nothing is paid during the run).

    python bench/order_bench.py                        # starts raymall serve (RAYMALL_* env)
    python bench/order_bench.py --url http://127.0.0.1:8000 \\
        --admin-username admin --admin-password '...'  # a running app

Bounded: setup (a few seconds for 32 accounts) plus ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STOCK_PER_SKU = 10_000_000
ADDRESS = {
    "recipient": "Bench Buyer",
    "phone": "+1 555 0199",
    "line1": "1 Load Street",
    "city": "Springfield",
    "postal_code": "00001",
    "country": "US",
}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] * 1000, 1)


# ---- setup -------------------------------------------------------------------------------
def ok(resp: httpx.Response, *codes: int) -> dict[str, Any]:
    if resp.status_code not in (codes or (200, 201)):
        raise RuntimeError(
            f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text[:300]}"
        )
    return resp.json() if resp.content else {}


async def setup(base: str, admin: dict[str, str], n_users: int, n_skus: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        for attempt in range(5):  # the admin was created a moment ago
            resp = await c.post("/auth/login", json=admin)
            if resp.status_code == 200 or attempt == 4:
                break
            await asyncio.sleep(1)
        tok = ok(resp)["access_token"]
        ah = {"Authorization": f"Bearer {tok}"}
        tag = secrets.token_hex(3)
        cat = ok(await c.post("/admin/categories", json={"name": f"Bench {tag}"}, headers=ah))
        body = {
            "title": f"Bench teapot {tag}",
            "category_id": cat["id"],
            "skus": [{"code": f"BENCH-{tag}-{i}", "price_cents": 1000 + i} for i in range(n_skus)],
        }
        product = ok(await c.post("/admin/products", json=body, headers=ah), 201)
        ok(await c.post(f"/admin/products/{product['id']}/publish", headers=ah))
        skus = [s["id"] for s in product["skus"]]
        for sku in skus:
            ok(
                await c.post(
                    f"/admin/inventory/{sku}/adjust",
                    json={"delta": STOCK_PER_SKU, "reason": "bench stock"},
                    headers=ah,
                )
            )
        sem = asyncio.Semaphore(8)

        async def buyer(i: int) -> str:
            name = f"ob{tag}_{i}"
            creds = {"username": name, "password": f"Bench-{secrets.token_hex(6)}-9x"}
            async with sem:
                ok(
                    await c.post("/auth/register", json={"email": f"{name}@example.com", **creds}),
                    201,
                )
                token = ok(await c.post("/auth/login", json=creds))["access_token"]
            ok(
                await c.post(
                    "/me/addresses", json=ADDRESS, headers={"Authorization": f"Bearer {token}"}
                ),
                201,
            )
            return str(token)

        tokens = list(await asyncio.gather(*(buyer(i) for i in range(n_users))))
        stock = {s: await stock_of(c, ah, s) for s in skus}
    return {"admin_headers": ah, "skus": skus, "tokens": tokens, "stock_before": stock}


async def stock_of(c: httpx.AsyncClient, ah: dict[str, str], sku: int) -> dict[str, int]:
    view = ok(await c.get(f"/admin/inventory/{sku}", headers=ah))
    db = view["database"]
    return {k: int(db[k]) for k in ("total", "available", "reserved", "sold")}


# ---- load: wrk -------------------------------------------------------------------------------
WRK_SCRIPT = """
local tokens = {%(tokens)s}
local skus = {%(skus)s}
local n = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  tid = tid or 0
  math.randomseed(os.time() + tid * 7919)
end
request = function()
  n = n + 1
  local token = tokens[math.random(#tokens)]
  local sku = skus[math.random(#skus)]
  local body = '{"items":[{"sku_id":' .. sku .. ',"quantity":1}]}'
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. token
  headers["Idempotency-Key"] = "b" .. tostring(tid) .. "-" .. n .. "-" .. math.random(1000000000)
  return wrk.format("POST", "/orders", headers, body)
end
"""


def run_wrk(url: str, *, connections: int, seconds: int, script: str) -> dict[str, Any]:
    """wrk with a 10 s request timeout (its default of 2 s would clip the tail under load)."""
    import re
    import shutil

    from _harness import _ms

    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk); or use --tool httpx")
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    out = subprocess.run(
        [*cmd, "-s", script, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    result: dict[str, Any] = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else None
    for q in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", out, re.M)
        result[f"p{q}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"(\d+) requests in", out)
    result["requests"] = int(m.group(1)) if m else 0
    return result


def run_wrk_load(base: str, env: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    script = WRK_SCRIPT % {
        "tokens": ",".join(json.dumps(t) for t in env["tokens"]),
        "skus": ",".join(str(s) for s in env["skus"]),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        result = run_wrk(
            base + "/orders",
            connections=args.connections,
            seconds=int(args.seconds),
            script=path,
        )
    finally:
        os.unlink(path)
    raw = result.pop("raw")
    result["ok"] = result["requests"] - result["non_2xx"]
    result["wrk_output_tail"] = raw.strip().splitlines()[-6:]
    return result


# ---- load: httpx ----------------------------------------------------------------------------
async def run_httpx_load(base: str, env: dict[str, Any], args: argparse.Namespace) -> dict:
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=args.connections)
    deadline = time.monotonic() + args.seconds

    async def worker(c: httpx.AsyncClient, i: int) -> None:
        headers = {"Authorization": f"Bearer {env['tokens'][i % len(env['tokens'])]}"}
        rng = random.Random(i)
        while time.monotonic() < deadline:
            body = {"items": [{"sku_id": rng.choice(env["skus"]), "quantity": 1}]}
            started = time.perf_counter()
            try:
                resp = await c.post(
                    "/orders",
                    json=body,
                    headers={**headers, "Idempotency-Key": secrets.token_hex(12)},
                )
                code = str(resp.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            statuses[code] += 1
            if code == "201":
                latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as c:
        started = time.perf_counter()
        await asyncio.gather(*(worker(c, i) for i in range(args.connections)))
        wall = time.perf_counter() - started
    return {
        "rps": round(sum(statuses.values()) / wall, 1),
        "ok": statuses.get("201", 0),
        "ok_per_s": round(statuses.get("201", 0) / wall, 1),
        "statuses": dict(statuses),
        "p50_ms": pct(latencies, 50),
        "p90_ms": pct(latencies, 90),
        "p99_ms": pct(latencies, 99),
        "wall_s": round(wall, 1),
    }


# ---- verification -----------------------------------------------------------------------------
async def verify(base: str, env: dict[str, Any], since_ms: int) -> dict[str, Any]:
    """Requests the client gave up on may still be finishing on the server: read until two
    rounds agree (at most 30 s)."""
    last: dict[str, Any] | None = None
    for _ in range(15):
        await asyncio.sleep(2)
        now = await verify_once(base, env, since_ms)
        if now == last:
            return now
        last = now
    assert last is not None
    return {**last, "settled": False}


async def verify_once(base: str, env: dict[str, Any], since_ms: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        ah = env["admin_headers"]
        stored = 0
        cursor = None
        while True:
            params: dict[str, Any] = {"from_ms": since_ms, "limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = ok(await c.get("/admin/orders", params=params, headers=ah))
            stored += len(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        reserved = 0
        problems = []
        for sku in env["skus"]:
            s = await stock_of(c, ah, sku)
            before = env["stock_before"][sku]
            reserved += s["reserved"] - before["reserved"]
            if s["total"] != s["available"] + s["reserved"] + s["sold"]:
                problems.append(f"sku {sku}: {s}")
    return {
        "orders_stored": stored,
        "units_reserved": reserved,
        "conserved": not problems,
        "problems": problems,
    }


# ---- main ------------------------------------------------------------------------------------
@contextlib.contextmanager
def serve_app(var: Path, timeout_s: float = 300) -> Iterator[str]:
    """``raymall serve`` on RAYMALL_* from the environment and a fresh var dir; SIGINT at
    the end. The log stays in ``var/serve.log``."""
    from _harness import free_port

    port = free_port()
    env = {**os.environ, "RAYMALL_VAR_DIR": str(var), "RAYMALL_HTTP_PORT": str(port)}
    log = open(var / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "raymall", "serve", "--address", "local"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"raymall serve exited: see {var / 'serve.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"raymall serve did not become ready: {var / 'serve.log'}")
            time.sleep(1)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@contextlib.contextmanager
def server(args: argparse.Namespace) -> Iterator[tuple[str, dict[str, str]]]:
    if args.url:
        if not (args.admin_username and args.admin_password):
            raise SystemExit("--url needs --admin-username and --admin-password")
        yield (
            args.url.rstrip("/"),
            {"username": args.admin_username, "password": args.admin_password},
        )
        return
    from raymall.bootstrap import create_admin
    from raymall.settings import load_settings

    var = Path(tempfile.mkdtemp(prefix="raymall-order-bench-"))
    with serve_app(var) as base:
        creds = {
            "username": f"benchadmin{secrets.token_hex(3)}",
            "password": f"Adm-{secrets.token_hex(8)}-9x",
        }
        create_admin(
            load_settings(var_dir=var),
            email=f"{creds['username']}@example.com",
            username=creds["username"],
            password=creds["password"],
        )
        yield base, creds
    shutil.rmtree(var, ignore_errors=True)


def conditions(args: argparse.Namespace, base: str) -> dict[str, Any]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("RAYMALL_") and not any(s in k for s in ("PASSWORD", "SECRET", "TOKEN"))
    }
    return {
        "url": base,
        "started_app": args.url is None,
        "tool": args.tool,
        "connections": args.connections,
        "seconds": args.seconds,
        "skus": args.skus,
        "buyers": args.connections,
        "request": "POST /orders, 1 line (random SKU), fresh Idempotency-Key",
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "python": platform.python_version(),
        "raymall_env": env,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running raymall (default: start one)")
    parser.add_argument("--admin-username")
    parser.add_argument("--admin-password")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--skus", type=int, default=16)
    parser.add_argument("--tool", choices=("wrk", "httpx"), default="wrk")
    parser.add_argument("--out", help="also write the JSON report to this file")
    args = parser.parse_args()
    if (
        not 1 <= args.connections <= 512
        or not 1 <= args.seconds <= 120
        or not 1 <= args.skus <= 100
    ):
        parser.error("connections 1-512, seconds 1-120, skus 1-100")
    with server(args) as (base, admin):
        cond = conditions(args, base)
        env = asyncio.run(setup(base, admin, args.connections, args.skus))
        since = int(time.time() * 1000) - 1
        if args.tool == "wrk":
            load = run_wrk_load(base, env, args)
        else:
            load = asyncio.run(run_httpx_load(base, env, args))
        checked = asyncio.run(verify(base, env, since))
    report = {"conditions": cond, "result": load, "verification": checked}
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    print(
        f"\nPOST /orders: {load.get('rps')} req/s, p50 {load.get('p50_ms')} ms, "
        f"p99 {load.get('p99_ms')} ms at {args.connections} connections for {args.seconds:g} s "
        f"({args.tool}); {checked['orders_stored']} orders stored, "
        f"{checked['units_reserved']} units reserved, conserved={checked['conserved']}"
    )


if __name__ == "__main__":
    main()
