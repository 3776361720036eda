"""The capacity model: CPU milliseconds per request by component, for each core route, and
the throughput they predict, checked against the measured throughput.

Setup (not timed): one fresh MariaDB database (``raymall seed --demo`` plus ``--skus`` SKUs
with a huge stock and ``--users`` users with access tokens, 64 of them with an address) and
Redis db ``--redis`` (flushed before and after); one ``raymall serve --num-cpus 2`` on them
(defaults: HAProxy, 2 ingress replicas, 4 inventory and 2 order shards; the recommender off,
as in the other benches; rate limits raised so that every request is served). Routes:

- ``flash``: ``POST /flash-sales/{id}/purchase``, one sale with a huge quantity and per-user
  limit on one SKU (every request a durable purchase, 201; one hot SKU, so one shard);
- ``detail``: ``GET /products/{id}`` over every published demo product;
- ``order``: ``POST /orders``, one line of a random big-stock SKU, a fresh Idempotency-Key
  (new in every run: no request of one run replays another's);
- ``listing``: ``GET /products?page=N&size=20``;
- ``cart``: ``POST /cart/items`` (one unit of a random big-stock SKU, a random user).

Per route: ``--warmup`` seconds of load, then ``--rounds`` rounds of three wrk runs of
``--seconds`` each (64 connections): the **saturated** run (no wait), whose throughput the
model must predict, then the **fixed load**: an offered rate of ``--fixed-fraction`` of what
the saturated run answered, paced open-loop by a schedule in wrk's ``delay()`` (each wrk
thread sends at evenly spaced times whatever the answers' latency, on its free connections),
where the costs are measured; and a **low load** (``--low-fraction``), which shows how the
cost of a request grows as batches shrink. Around every run, utime + stime of
/proc/<pid>/stat of every process of the server's tree, of mariadbd and redis-server, and of
wrk (this process's reaped children) are sampled and summed by kind
(``bench/capacity_procs.py``), and the machine's busy time (/proc/stat): what is busy beyond
our processes is other work on the shared machine. CPU while idle (``--idle`` seconds with
no load, per kind) is measured once before the routes and taken out: a component's cost is
(CPU in the run - idle rate x run time) / requests. Every run starts once the machine is
back to idle (up to 45 s): a run of purchases or orders leaves the outbox relay and its
consumers working through the run's events after the load stops, which would otherwise be
charged to the next run.

The model, from the fixed-load costs (medians over rounds):

- one all-in-one node of C cores (app, MariaDB and Redis; no load client):
  ``(C - idle cores) x 1000 / sum of ms per request``;
- an app node (Ray processes only; MariaDB and Redis on servers of their own), and how many
  of them a target load needs, and the MariaDB and Redis cores that load needs;
- single-process limits: a Python process serves at most one core, so a kind of n
  processes caps the route at n x 1000 / its ms (one hot SKU lives on one shard:
  ``1000 / shard ms``);
- the check on this machine, where wrk and other work take their share: predicted =
  min((C - idle - other work's cores) x 1000 / (sum + wrk ms), single-process limits), the
  other work as measured during the saturated runs, against the saturated runs' median; the
  target is a ratio measured / predicted in 0.75..1.25. The quiet-machine prediction (no
  other work) is reported beside it.

Writes ``--json`` (default bench/report/capacity.json) and renders docs/capacity.md
(``bench/capacity_report.py``, with the memory figures of ``bench/memory_footprint.py``).

    .venv/bin/python bench/capacity.py [--routes flash,detail,order] [--rounds 3]

Traffic goes to 127.0.0.1 only; bounded: one server start, per route ``--warmup`` +
3 x ``--rounds`` x ``--seconds`` of load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
from _harness import raymall_server  # noqa: E402
from capacity_procs import (  # noqa: E402
    busy_cores,
    cpu_by_kind,
    sample_cpu,
    serve_pid,
    servers,
    settle,
    tree,
)
from catalog_bench import catalog_facts  # noqa: E402
from catalog_bench import seed as seed_catalog  # noqa: E402
from flash_sale import server_env as flash_server_env  # noqa: E402

from raymall.auth.tokens import TokenCodec  # noqa: E402
from raymall.ids import now_ms  # noqa: E402
from raymall.launcher.scratch import make_mysql_database  # noqa: E402
from raymall.launcher.shop import SkuSpec, add_category, add_product, add_users  # noqa: E402

STOCK = 1_000_000_000
BIG = 100_000_000
SHARDS = 4
ROUTES = ("flash", "detail", "order", "listing", "cart")
ADDRESS = {
    "recipient": "Capacity Bench",
    "phone": "+1 555 0199",
    "line1": "1 Load Street",
    "city": "Springfield",
    "postal_code": "00001",
    "country": "US",
    "is_default": True,
}
CLIENT = "load client (wrk)"
SHARED = ("mariadbd", "redis-server")
THREADS_WRK = 2
# how many cores one process of a kind can keep busy: Python processes and Redis one (the
# GIL, one thread), HAProxy its RAY_SERVE_HAPROXY_NBTHREAD; 0: no such limit (MariaDB's
# thread pool, Ray's daemons)
THREADS = {"mariadbd": 0, "raylet": 0, "gcs_server": 0, "haproxy": 2}


# ---- fixtures ------------------------------------------------------------------------------
def seed_big(url: str, users: int, n_skus: int) -> tuple[list[int], list[int], int]:
    """``n_skus`` SKUs of STOCK units (written before the shards start), ``users`` users and
    one admin. Returns (sku ids, user ids, admin id)."""
    engine = create_engine(url)
    tag = secrets.token_hex(3)
    with engine.begin() as conn:
        cat = add_category(conn, "Capacity", f"capacity-{tag}")
        specs = [SkuSpec(f"CAP-{tag}-{i}", 5000 + i, STOCK) for i in range(n_skus)]
        skus = add_product(conn, cat, "Capacity kettle", specs, shards=SHARDS)[1]
        ids = add_users(conn, users + 1, tag=f"c{tag}", roles=["admin"])
    engine.dispose()
    return skus, ids[1:], ids[0]


LUA = """
local paths = {%(paths)s}
local tokens = {%(tokens)s}
local bodies = {%(bodies)s}
local method = "%(method)s"
-- an offered rate (CAP_RATE req/s over CAP_THREADS threads; 0: none), paced open loop by
-- bench/pace.lua
local rate = tonumber(os.getenv("CAP_RATE") or "0")
-- every run's keys are new: wrk starts each run's Lua afresh (n from 1, the same seed), so
-- without the run's own id a run would repeat the keys of the runs before it (replays)
local run = os.getenv("CAP_RUN") or "0"
local paced = rate > 0 and dofile("%(pace)s")(rate, tonumber(os.getenv("CAP_THREADS") or "1"))
local n, threads, all = 0, 0, {}
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
  table.insert(all, thread)
end
function init(args) math.randomseed(1000 + tid); counts = {} end
function delay()
  if not paced then return 0 end
  return paced()
end
function request()
  n = n + 1
  local h = {}
  if #tokens > 0 then h["Authorization"] = "Bearer " .. tokens[math.random(#tokens)] end
  local body = nil
  if #bodies > 0 then
    body = bodies[math.random(#bodies)]
    h["Content-Type"] = "application/json"
  end
  if method == "POST" then
    h["Idempotency-Key"] = "k" .. run .. "-" .. tid .. "-" .. n
  end
  return wrk.format(method, paths[math.random(#paths)], h, body)
end
function response(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  local total, parts = {}, {}
  for _, t in ipairs(all) do
    for status, k in pairs(t:get("counts")) do total[status] = (total[status] or 0) + k end
  end
  for status, k in pairs(total) do parts[#parts + 1] = string.format('"%%d": %%d', status, k) end
  io.write(string.format('CAPJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, ' ..
    '"p99_us": %%d, "errors": %%d, "status": {%%s}}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout + summary.errors.status, table.concat(parts, ", ")))
end
"""


def lua(paths: list[str], method: str, tokens: list[str], bodies: list[str]) -> str:
    def strings(items: list[str]) -> str:
        return ",".join(json.dumps(x) for x in items)

    return LUA % {
        "pace": HERE / "pace.lua",
        "paths": strings(paths),
        "tokens": strings(tokens),
        "bodies": strings(bodies),
        "method": method,
    }


def route_scripts(ctx: dict[str, Any], tmp: Path) -> dict[str, Path]:
    published = ctx["facts"]["published"]
    pages = ctx["facts"]["pages"]
    big = [json.dumps({"items": [{"sku_id": s, "quantity": 1}]}) for s in ctx["skus"][1:]]
    carts = [json.dumps({"sku_id": s, "quantity": 1}) for s in ctx["skus"][1:]]
    scripts = {
        "flash": lua([ctx["flash_path"]], "POST", ctx["tokens"], []),
        "detail": lua([f"/products/{p}" for p in published], "GET", [], []),
        "order": lua(["/orders"], "POST", ctx["tokens"][:64], big),
        "listing": lua([f"/products?page={p}&size=20" for p in range(1, pages + 1)], "GET", [], []),
        "cart": lua(["/cart/items"], "POST", ctx["tokens"], carts),
    }
    out = {}
    for name, text in scripts.items():
        out[name] = tmp / f"cap_{name}.lua"
        out[name].write_text(text)
    return out


# ---- measuring -----------------------------------------------------------------------------
def procs_of(pid: int) -> list[Any]:
    return tree(pid) + servers()


def client_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


QUIET = {"cores": 0.0}  # the machine's busy cores when the server idles, plus a margin


def run_load(
    base: str, script: Path, seconds: int, conns: int, rate: float, pid: int
) -> dict[str, Any]:
    """One wrk run (``rate`` req/s offered, 0: as fast as the connections go), once the
    machine is back to idle (``QUIET``, when set); answers, latency and CPU seconds per
    kind (the client's too)."""
    if QUIET["cores"]:
        settle(QUIET["cores"])
    env = {
        **os.environ,
        "CAP_RATE": f"{rate:.1f}",
        "CAP_THREADS": str(THREADS_WRK),
        "CAP_RUN": secrets.token_hex(6),
    }
    cmd = ["wrk", f"-t{THREADS_WRK}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s"]
    cmd += ["-s", str(script)]
    before, client0, t0 = sample_cpu(procs_of(pid)), client_seconds(), time.monotonic()
    out = subprocess.run(
        [*cmd, base], capture_output=True, text=True, env=env, timeout=seconds + 120, check=True
    ).stdout
    wall = time.monotonic() - t0
    after = sample_cpu(procs_of(pid))
    cpu = cpu_by_kind(before, after)
    cpu[CLIENT] = client_seconds() - client0
    line = next(ln for ln in out.splitlines() if ln.startswith("CAPJSON "))
    raw = json.loads(line[len("CAPJSON ") :])
    duration = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "errors": raw["errors"],
        "rps": raw["requests"] / duration,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "wall_s": wall,
        "cpu_s": cpu,
        "machine_busy_cores": (after.busy - before.busy) / wall,
        # CPU of processes that are not this bench's (other work on the shared machine)
        "foreign_cores": max(0.0, (after.busy - before.busy - sum(cpu.values())) / wall),
        "status": raw.get("status", {}),
    }


def idle_rate(pid: int, seconds: float) -> dict[str, float]:
    """Cores used per kind with no load (heartbeats, sweepers, pollers, Ray's daemons)."""
    before = sample_cpu(procs_of(pid))
    time.sleep(seconds)
    after = sample_cpu(procs_of(pid))
    wall = after.total - before.total  # CPU-seconds of all cores
    span = wall / (os.cpu_count() or 1)
    return {k: v / span for k, v in cpu_by_kind(before, after).items()}


def net_ms(run: dict[str, Any], idle: dict[str, float]) -> dict[str, float]:
    """ms of CPU per answered request by kind, less the idle rate over the run's time."""
    n = max(1, run["requests"])
    out = {}
    for k, sec in run["cpu_s"].items():
        out[k] = max(0.0, 1000 * (sec - idle.get(k, 0.0) * run["wall_s"]) / n)
    return out


# ---- the model -----------------------------------------------------------------------------
def process_counts(pid: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for k in sample_cpu(procs_of(pid)).kinds.values():
        counts[k] = counts.get(k, 0) + 1
    return counts


def model(
    fixed_ms: dict[str, float],
    idle: dict[str, float],
    counts: dict[str, int],
    cores: int,
    measured_rps: float,
    hot: bool = False,
    foreign: float = 0.0,
) -> dict[str, Any]:
    idle_cores = sum(idle.values())
    server = {k: v for k, v in fixed_ms.items() if k != CLIENT}
    app = {k: v for k, v in server.items() if k not in SHARED}
    sum_server, sum_app = sum(server.values()), sum(app.values())
    app_idle = sum(v for k, v in idle.items() if k not in SHARED)
    limits = {}
    for k, v in server.items():
        per_process = THREADS.get(k, 1)
        if v > 0.02 and per_process:  # a kind of n processes of t busy threads: n x t cores
            n = 1 if (hot and k == "inventory shard") else counts.get(k, 1)
            limits[k] = n * per_process * 1000 / v
    bound_kind = min(limits, key=lambda k: limits[k]) if limits else None
    with_client = sum_server + fixed_ms.get(CLIENT, 0.0)
    quiet = min([(cores - idle_cores) * 1000 / with_client, *limits.values()])
    here_cpu = (cores - idle_cores - foreign) * 1000 / with_client
    here = min([here_cpu, *limits.values()])
    return {
        "sum_ms": round(sum_server, 3),
        "app_sum_ms": round(sum_app, 3),
        "idle_cores": round(idle_cores, 3),
        "node_rps": round((cores - idle_cores) * 1000 / sum_server, 0),
        "app_node_rps": round((cores - app_idle) * 1000 / sum_app, 0),
        "process_limits": {k: round(v, 0) for k, v in sorted(limits.items(), key=lambda kv: kv[1])},
        "tightest_process": bound_kind,
        "predicted_quiet_rps": round(quiet, 0),
        "foreign_cores": round(foreign, 3),
        "predicted_here_rps": round(here, 0),
        "predicted_here_by": "CPU" if here == here_cpu else bound_kind,
        "measured_rps": round(measured_rps, 0),
        "ratio": round(measured_rps / here, 3),
        "within_25pct": 0.75 <= measured_rps / here <= 1.25,
    }


def fit(low: list[dict[str, Any]], fixed: list[dict[str, Any]]) -> dict[str, Any]:
    """The utilization law fitted per kind through each round's two paced loads: a kind's
    cores U = intercept + slope x throughput. The slope is its marginal CPU per request (ms);
    the intercept the cores it keeps busy under load whatever the rate (idle included:
    pollers woken, a batch's fixed cost). Medians over rounds; a slope is never below 0."""
    slopes: dict[str, list[float]] = {}
    intercepts: dict[str, list[float]] = {}
    for lo, hi in zip(low, fixed, strict=True):
        dx = hi["rps"] - lo["rps"]
        if dx <= 0:
            continue
        for k in set(lo["cpu_s"]) | set(hi["cpu_s"]):
            u_lo = lo["cpu_s"].get(k, 0.0) / lo["wall_s"]
            u_hi = hi["cpu_s"].get(k, 0.0) / hi["wall_s"]
            slope = max(0.0, (u_hi - u_lo) / dx)
            slopes.setdefault(k, []).append(1000 * slope)
            intercepts.setdefault(k, []).append(max(0.0, u_hi - slope * hi["rps"]))
    return {
        "ms_per_request": {
            k: round(statistics.median(v), 4)
            for k, v in sorted(slopes.items(), key=lambda kv: -statistics.median(kv[1]))
        },
        "intercept_cores": {k: round(statistics.median(v), 4) for k, v in intercepts.items()},
    }


def fit_model(
    fitted: dict[str, Any],
    counts: dict[str, int],
    cores: int,
    measured_rps: float,
    hot: bool = False,
    foreign: float = 0.0,
) -> dict[str, Any]:
    """The prediction from the fit: (C - intercepts - other work) x 1000 / sum of slopes,
    and per kind of n processes of t threads (n x t - its intercept) x 1000 / its slope."""
    ms, base = fitted["ms_per_request"], fitted["intercept_cores"]
    limits = {}
    for k, v in ms.items():
        per_process = THREADS.get(k, 1)
        if k != CLIENT and v > 0.02 and per_process:
            n = 1 if (hot and k == "inventory shard") else counts.get(k, 1)
            limits[k] = max(0.0, n * per_process - base.get(k, 0.0)) * 1000 / v
    here_cpu = (cores - sum(base.values()) - foreign) * 1000 / max(1e-9, sum(ms.values()))
    here = min([here_cpu, *limits.values()])
    return {
        "sum_ms": round(sum(v for k, v in ms.items() if k != CLIENT), 3),
        "intercept_cores": round(sum(base.values()), 3),
        "predicted_here_rps": round(here, 0),
        "predicted_here_by": "CPU" if here == here_cpu else min(limits, key=lambda k: limits[k]),
        "measured_rps": round(measured_rps, 0),
        "ratio": round(measured_rps / here, 3) if here > 0 else None,
        "within_25pct": here > 0 and 0.75 <= measured_rps / here <= 1.25,
    }


def summarise(name: str, runs: list[dict[str, Any]], idle: dict[str, float]) -> dict[str, Any]:
    fixed = [r for r in runs if r["load"] == "fixed"]
    low = [r for r in runs if r["load"] == "low"]
    sat = [r for r in runs if r["load"] == "saturated"]
    kinds = sorted({k for r in runs for k in r["cpu_s"]})

    def med_ms(rs: list[dict[str, Any]]) -> dict[str, float]:
        per = [net_ms(r, idle) for r in rs]
        out = {k: statistics.median(p.get(k, 0.0) for p in per) for k in kinds}
        return {
            k: round(v, 4) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v >= 0.0005
        }

    return {
        "route": name,
        "fixed": {
            "rps": round(statistics.median(r["rps"] for r in fixed), 1),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in fixed), 2),
            "errors": sum(r["errors"] for r in fixed),
            "ms_per_request": med_ms(fixed),
        },
        "saturated": {
            "rps": round(statistics.median(r["rps"] for r in sat), 1),
            "runs_rps": [round(r["rps"], 1) for r in sat],
            "p50_ms": round(statistics.median(r["p50_ms"] for r in sat), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in sat), 2),
            "errors": sum(r["errors"] for r in sat),
            "machine_busy_cores": round(statistics.median(r["machine_busy_cores"] for r in sat), 2),
            "foreign_cores": round(statistics.median(r["foreign_cores"] for r in sat), 3),
            "ms_per_request": med_ms(sat),
        },
        "low": {
            "rps": round(statistics.median(r["rps"] for r in low), 1),
            "ms_per_request": med_ms(low),
        }
        if low
        else None,
    }


# ---- main ----------------------------------------------------------------------------------
def server_env(ctx: dict[str, Any]) -> dict[str, str]:
    """The flash benches' server, with ``SHARDS`` shards, unpaid orders that outlast the
    run and no per-IP limit either (every wrk connection comes from 127.0.0.1)."""
    return {
        **flash_server_env(ctx),
        "RAYMALL_INVENTORY_SHARDS": str(SHARDS),
        "RAYMALL_ORDER_TIMEOUT_S": "7200",
        "RAYMALL_FLASH_RATE_IP_PER_S": "10000000",
    }


def prepare(base: str, ctx: dict[str, Any]) -> None:
    """The flash sale and the addresses of the ordering users (through the API)."""
    admin = {"Authorization": f"Bearer {ctx['admin_token']}"}
    body = {
        "sku_id": ctx["skus"][0],
        "price_cents": 990,
        "quantity": BIG,
        "per_user_limit": 1_000_000,
        "starts_at_ms": now_ms() - 1000,
        "ends_at_ms": now_ms() + 3_600_000,
        "title": "capacity bench",
    }
    with httpx.Client(base_url=base, timeout=60) as c:
        resp = c.post("/admin/flash-sales", json=body, headers=admin)
        if resp.status_code != 201:
            raise RuntimeError(f"creating the sale failed: {resp.text}")
        ctx["flash_path"] = f"/flash-sales/{resp.json()['id']}/purchase"
        for token in ctx["tokens"][:64]:
            resp = c.post(
                "/me/addresses", json=ADDRESS, headers={"Authorization": f"Bearer {token}"}
            )
            if resp.status_code != 201:
                raise RuntimeError(f"adding an address failed: {resp.text}")


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() + (" (tree with uncommitted edits)" if dirty.stdout.strip() else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--routes", default=",".join(ROUTES))
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument(
        "--fixed-fraction", type=float, default=0.85, help="fixed load / saturated throughput"
    )
    p.add_argument(
        "--low-fraction", type=float, default=0.4, help="a second, lower fixed load (0: none)"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--idle", type=float, default=8.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--users", type=int, default=1_000)
    p.add_argument("--skus", type=int, default=9, help="big-stock SKUs (the first is the sale's)")
    p.add_argument("--cores", type=int, default=2, help="C, the cores of the node predicted")
    p.add_argument("--target-rps", type=float, default=10_000, help="the load to size nodes for")
    p.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    p.add_argument("--json", type=Path, default=HERE / "report" / "capacity.json")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "capacity.md")
    a = p.parse_args()
    # a SIGTERM (timeout, kill) unwinds like Ctrl-C, so the server started here is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for url in (a.mysql, a.redis):
        if "127.0.0.1" not in url and "localhost" not in url:
            raise SystemExit("load only 127.0.0.1")
    routes = a.routes.split(",")
    load_at_start = os.getloadavg()
    db, drop = make_mysql_database(a.mysql, "rm_capacity")
    redis.Redis.from_url(a.redis).flushdb()
    secret = secrets.token_urlsafe(48)
    tmp = Path(tempfile.mkdtemp(prefix="capacity-bench-"))
    try:
        seed_catalog(db, a.redis, None, tmp / "seed")
        facts = catalog_facts(db)
        skus, users, admin = seed_big(db, a.users, a.skus)
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
        results: dict[str, Any] = {"routes": {}}
        with raymall_server(server_env(ctx), var=var) as base:
            pid = serve_pid(var)
            prepare(base, ctx)
            scripts = route_scripts(ctx, tmp)
            time.sleep(3)
            idle = idle_rate(pid, a.idle)
            QUIET["cores"] = busy_cores(3.0) + 0.2
            counts = process_counts(pid)
            print(
                "idle cores: "
                + ", ".join(
                    f"{k} {v:.3f}"
                    for k, v in sorted(idle.items(), key=lambda kv: -kv[1])
                    if v >= 0.001
                ),
                flush=True,
            )
            fractions = [("fixed", a.fixed_fraction)]
            if a.low_fraction:
                fractions.append(("low", a.low_fraction))
            for name in routes:
                script = scripts[name]
                run_load(base, script, a.warmup, a.connections, 0, pid)
                runs = []
                for rnd in range(a.rounds):
                    saturated = 0.0
                    for load, fraction in (("saturated", 0), *fractions):
                        # a fixed load: an offered rate of this fraction of what the round's
                        # saturated run answered, paced by a schedule (open loop)
                        rate = fraction * saturated
                        run = run_load(base, script, a.seconds, a.connections, rate, pid)
                        run["offered_rps"] = round(rate, 1)
                        saturated = saturated or run["rps"]
                        run["load"], run["round"] = load, rnd + 1
                        runs.append(run)
                        print(
                            f"{name:8} round {rnd + 1} {load:9}: {run['rps']:7.0f} req/s, p99 "
                            f"{run['p99_ms']:.1f} ms, {run['errors']} errors, machine busy "
                            f"{run['machine_busy_cores']:.2f} cores "
                            f"({run['foreign_cores']:.2f} not ours), status {run['status']}",
                            flush=True,
                        )
                summary = summarise(name, runs, idle)
                summary["model"] = model(
                    summary["fixed"]["ms_per_request"],
                    idle,
                    counts,
                    a.cores,
                    summary["saturated"]["rps"],
                    hot=name == "flash",
                    foreign=summary["saturated"]["foreign_cores"],
                )
                summary["model_from_saturated_costs"] = model(
                    summary["saturated"]["ms_per_request"],
                    idle,
                    counts,
                    a.cores,
                    summary["saturated"]["rps"],
                    hot=name == "flash",
                    foreign=summary["saturated"]["foreign_cores"],
                )
                if summary["low"]:
                    low_runs = [r for r in runs if r["load"] == "low"]
                    fixed_runs = [r for r in runs if r["load"] == "fixed"]
                    summary["fit"] = fit(low_runs, fixed_runs)
                    summary["model_from_fit"] = fit_model(
                        summary["fit"],
                        counts,
                        a.cores,
                        summary["saturated"]["rps"],
                        hot=name == "flash",
                        foreign=summary["saturated"]["foreign_cores"],
                    )
                    summary["model_from_low_load_costs"] = model(
                        summary["low"]["ms_per_request"],
                        idle,
                        counts,
                        a.cores,
                        summary["saturated"]["rps"],
                        hot=name == "flash",
                        foreign=summary["saturated"]["foreign_cores"],
                    )
                summary["runs"] = runs
                results["routes"][name] = summary
                m = summary["model"]
                print(
                    f"{name:8} predicted {m['predicted_here_rps']:.0f} req/s "
                    f"({m['predicted_here_by']}), "
                    f"measured {m['measured_rps']:.0f}: ratio {m['ratio']:.2f}",
                    flush=True,
                )
        results["idle_cores"] = {k: round(v, 4) for k, v in idle.items() if v >= 0.0005}
        results["process_counts"] = counts
        results["conditions"] = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": git_commit(),
            "machine": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB, "
            f"{platform.system()} {platform.release()}; "
            f"load average {load_at_start[0]:.1f} at start",
            "stores": f"MariaDB {facts['mariadb']} (database of its own), "
            f"Redis db {a.redis.rsplit('/', 1)[1]}",
            "server": "raymall serve --num-cpus 2: HAProxy, 2 ingress replicas, 4 inventory and 2 "
            "order shards, recommender off, rate limits raised",
            "load": f"wrk -t2 -c{a.connections}, {a.rounds} rounds x (saturated, fixed, low) x "
            f"{a.seconds} s after {a.warmup} s of warm-up per route; fixed-load offered rates "
            + f"{a.fixed_fraction:.0%} of the round's saturated throughput (and a low load of "
            f"{a.low_fraction:.0%})",
            "cores": a.cores,
            "target_rps": a.target_rps,
        }
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=2))
        from capacity_report import write_doc

        write_doc(a.json, a.doc)
        print(f"wrote {a.json} and {a.doc}")
    finally:
        drop()
        redis.Redis.from_url(a.redis).flushdb()


if __name__ == "__main__":
    main()
