"""Catalog reads under load: raymall against a plain FastAPI shop on the same tables.

The peer (``bench/peers/plain_shop.py``) is the conventional design: FastAPI + uvicorn, one
worker; the product document cache-aside in Redis plus one SQL query per request for live
availability; listing pages cached in Redis for 30 s. Both serve the same data:

- one fresh database ``raymall_bench_<hex>`` on the MariaDB server, holding the
  deterministic demo catalog (``raymall seed --demo``) with its first product withdrawn
  (so that an unpublished product's 404 is checked), dropped at the end;
- one scratch Redis db index on the Redis server (flushed before and after);
- raymall is ``raymall serve`` as users run it (Ray Serve, HAProxy ingress, the default
  replicas and shards, ``RAYMALL_ENV=prod`` with fresh secrets, the recommender off), from
  this checkout or from ``--tree`` (another checkout, e.g. a git worktree of an older
  commit: before/after comparisons run the bench once per tree).

Before any timing, every published product's detail, every listing page, unpublished and
missing ids are read from both servers and checked against each other and the database
(same SKUs, prices and availability; same page order); any difference stops the bench.
This also fills both caches. Then each server and endpoint gets ``--warmup-seconds`` of
wrk, and ``--rounds`` interleaved rounds run: per round, detail on both servers, then
listing on both, the server that goes first alternating from round to round. Every run
is ``wrk -t2 -c64 -d<seconds> --latency`` with a Lua script picking a random published
product (detail) or a random page 1..N (listing). Reported per endpoint and server:
req/s, p50, p99, non-2xx answers and socket errors, the ratios raymall/peer (median over
the rounds of each round's ratio), the CPU each process group used during the runs, and
the conditions. The report is markdown (``--out``), printed at the end.

    .venv/bin/python bench/catalog_bench.py [--seconds 20] [--rounds 3] [--endpoints detail]
    git worktree add /tmp/before <commit>
    .venv/bin/python bench/catalog_bench.py --tree /tmp/before --out /tmp/before.md

Traffic goes to 127.0.0.1 only and every run is bounded: one raymall start (about a
minute), 4 x ``--warmup-seconds``, 4 x ``--rounds`` x ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from sqlalchemy import create_engine, make_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]
from _harness import raymall_server, run_wrk, tree_env, uvicorn_server  # noqa: E402
from catalog_checks import CheckFailed, check_detail, check_listing, check_not_found  # noqa: E402
from catalog_report import ENDPOINTS, NAMES, SERVERS, report  # noqa: E402

from raymall.launcher.scratch import private_redis_db  # noqa: E402
from raymall.settings import SECRETS  # noqa: E402

PAGE_SIZE = 20


# ---- stores --------------------------------------------------------------------------------
def make_database(server: str) -> tuple[str, Any]:
    """An empty database (``raymall.launcher.scratch`` would migrate it with this checkout's
    migrations; the tree under test makes its own schema); answer its URL and its drop."""
    name = f"raymall_bench_{secrets.token_hex(4)}"
    admin = create_engine(server.rstrip("/") + "/")
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()

    return server.rstrip("/") + f"/{name}", drop


def seed(db: str, rurl: str, tree: Path | None, var: Path) -> None:
    """``raymall seed --demo`` from the tree under test (its migrations make the schema),
    then one product unpublished."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAYMALL_")},
        **tree_env(tree),
        "RAYMALL_DATABASE_URL": db,
        "RAYMALL_REDIS_URL": rurl,
        "RAYMALL_VAR_DIR": str(var),
    }
    out = subprocess.run(
        [sys.executable, "-m", "raymall", "seed", "--demo"],
        env=env,
        cwd=tree or ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode:
        raise RuntimeError(f"raymall seed failed:\n{out.stdout}\n{out.stderr}")
    # the demo publishes every product: withdraw one (before either server has read it),
    # so that the check of an unpublished product's 404 has one to read
    engine = create_engine(db)
    with engine.begin() as conn:
        first = conn.exec_driver_sql("SELECT MIN(id) FROM products").scalar()
        conn.exec_driver_sql("UPDATE products SET status = 'unpublished' WHERE id = %s", (first,))
    engine.dispose()


def catalog_facts(db: str) -> dict[str, Any]:
    """What the checks and scripts need from the database: published ids, others, pages."""
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT id, status FROM products ORDER BY id").all()
            version = conn.exec_driver_sql("SELECT VERSION()").scalar()
    finally:
        engine.dispose()
    published = [int(r[0]) for r in rows if r[1] == "published"]
    others = [int(r[0]) for r in rows if r[1] != "published"]
    return {
        "published": published,
        "unpublished": others,
        "missing": (int(rows[-1][0]) if rows else 0) + 1000,
        "pages": max(1, -(-len(published) // PAGE_SIZE)),
        "mariadb": str(version),
    }


# ---- load ----------------------------------------------------------------------------------
def wrk_scripts(facts: dict[str, Any], tmp: Path) -> dict[str, Path]:
    """Lua for wrk: each thread seeds its own generator (the same seeds for both servers)."""
    head = (
        "local n = 0\n"
        "function setup(thread) n = n + 1; thread:set('seed', n) end\n"
        "function init(args) math.randomseed(1000 + seed) end\n"
    )
    ids = ",".join(map(str, facts["published"]))
    scripts = {
        "detail": f"local ids = {{{ids}}}\n{head}function request()\n"
        '  return wrk.format("GET", "/products/" .. ids[math.random(#ids)])\nend\n',
        "listing": f"{head}function request()\n"
        f'  return wrk.format("GET", "/products?page=" .. math.random({facts["pages"]})'
        f' .. "&size={PAGE_SIZE}")\nend\n',
    }
    paths = {}
    for name, text in scripts.items():
        paths[name] = tmp / f"{name}.lua"
        paths[name].write_text(text)
    return paths


def cpu_seconds(peer_pid: int) -> dict[str, float]:
    """CPU seconds so far, per group: raymall's processes by kind (the bench's other
    descendants), the peer, MariaDB and Redis (the last two shared with anything else
    running on the machine). wrk is left out."""
    out: dict[str, float] = defaultdict(float)
    procs = [(p, "") for p in psutil.Process().children(recursive=True)]
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("mariadbd", "mysqld", "redis-server"):
            procs.append((proc, "redis" if proc.info["name"] == "redis-server" else "mariadb"))
    for proc, group in procs:
        try:
            if proc.name() == "wrk":
                continue
            t = proc.cpu_times()
            if not group:
                if proc.pid == peer_pid:
                    group = "peer"
                else:
                    cmd = (proc.cmdline() or [proc.name()])[0]
                    kind = cmd.split(":")[2] if cmd.startswith("ray::") else Path(cmd).name
                    group = "raymall " + (kind.split(".")[0] or "ray worker")
            out[group] += t.user + t.system
        except psutil.Error:
            continue
    return out


def measure(
    base: str, script: Path, seconds: int, a: argparse.Namespace, peer_pid: int
) -> dict[str, Any]:
    before, started = cpu_seconds(peer_pid), time.monotonic()
    url, conns = base + "/products", a.connections
    r = run_wrk(url, threads=a.threads, connections=conns, seconds=seconds, script=str(script))
    wall = time.monotonic() - started
    after = cpu_seconds(peer_pid)
    r.pop("raw", None)
    r["cores"] = {k: round((v - before.get(k, 0.0)) / wall, 3) for k, v in after.items()}
    r["cores"] = {k: v for k, v in r["cores"].items() if v >= 0.005}
    return r


def tree_revision(tree: Path) -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
        return out.stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{tree} at {head}" + (" (with uncommitted changes)" if dirty else "")


# ---- main ----------------------------------------------------------------------------------
def raymall_env(db: str, rurl: str) -> dict[str, str]:
    env = {
        "RAY_ADDRESS": os.environ.get("RAY_ADDRESS", "local"),
        "RAYMALL_ENV": "prod",
        "RAYMALL_DATABASE_URL": db,
        "RAYMALL_REDIS_URL": rurl,
        "RAYMALL_RECOMMENDER": "0",
    }
    for name in SECRETS:  # every secret prod requires, each a fresh one
        env[f"RAYMALL_{name.upper()}"] = secrets.token_urlsafe(48)
    return env


def sanity(bases: dict[str, str], db: str, facts: dict[str, Any]) -> dict[str, Any]:
    """Every published detail, every listing page, unpublished and missing ids, on both
    servers, against each other and the database. Raises on the first failing check."""
    notes: set[str] = set()
    with httpx.Client(timeout=30) as client:

        def get(server: str, path: str) -> httpx.Response:
            return client.get(bases[server] + path)

        engine = create_engine(db)
        try:
            with engine.connect() as conn:
                for pid in facts["published"]:
                    notes |= check_detail(
                        conn, pid, {s: get(s, f"/products/{pid}") for s in SERVERS}
                    )
                for page in range(1, facts["pages"] + 2):  # and one past the end
                    path = f"/products?page={page}&size={PAGE_SIZE}"
                    notes |= check_listing(
                        conn, page, PAGE_SIZE, {s: get(s, path) for s in SERVERS}
                    )
        finally:
            engine.dispose()
        others = [*facts["unpublished"][:20], facts["missing"]]
        for pid in others:
            check_not_found(pid, {s: get(s, f"/products/{pid}") for s in SERVERS})
    return {
        "summary": (
            f"{len(facts['published'])} published products, {facts['pages'] + 1} listing pages "
            f"and {len(others)} unpublished or missing ids answered alike by both servers and "
            "as the database holds them"
        ),
        "notes": sorted(notes),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=int, default=20, help="each measured wrk run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup-seconds", type=int, default=3)
    p.add_argument("--endpoints", default="detail,listing", help="the ones to time")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/")
    p.add_argument("--tree", type=Path, help="run raymall from this checkout (default: this)")
    p.add_argument("--out", type=Path, default=HERE / "report" / "catalog.md")
    p.add_argument("--json", type=Path, help="also write every run's figures here")
    a = p.parse_args()
    for url in (a.mysql, a.redis):
        if "127.0.0.1" not in url and "localhost" not in url:
            raise SystemExit("load only 127.0.0.1")
    if a.rounds < 1 or a.seconds < 1:
        raise SystemExit("--rounds and --seconds must be at least 1")
    endpoints = [e for e in ENDPOINTS if e in a.endpoints.split(",")]
    if not endpoints:
        raise SystemExit(f"--endpoints: some of {','.join(ENDPOINTS)}")
    tree = a.tree.resolve() if a.tree else None
    load = os.getloadavg()
    db, drop = make_database(a.mysql)
    rurl = private_redis_db(a.redis)
    runs: list[dict[str, Any]] = []
    try:
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="catalog-bench-")))
            started = time.monotonic()
            seed(db, rurl, tree, tmp / "seed")
            facts = catalog_facts(db)
            took = time.monotonic() - started
            print(f"seeded {len(facts['published'])} products in {took:.0f} s", flush=True)
            peer_env = {"PEER_DB": db, "PEER_REDIS": rurl}
            peer, peer_pid = stack.enter_context(
                uvicorn_server("plain_shop:app", HERE / "peers", peer_env, "/products/1")
            )
            ours = stack.enter_context(raymall_server(raymall_env(db, rurl), tree=tree))
            bases = {"raymall": ours, "peer": peer}
            try:
                checks = sanity(bases, db, facts)
            except CheckFailed as exc:
                raise SystemExit(f"sanity check failed, nothing timed: {exc}") from None
            print(f"sanity: {checks['summary']}", flush=True)
            scripts = wrk_scripts(facts, tmp)
            for endpoint in endpoints:
                for server in SERVERS:
                    measure(bases[server], scripts[endpoint], a.warmup_seconds, a, peer_pid)
            for rnd in range(1, a.rounds + 1):
                order = SERVERS if rnd % 2 else SERVERS[::-1]
                for endpoint in endpoints:
                    for server in order:
                        r = measure(bases[server], scripts[endpoint], a.seconds, a, peer_pid)
                        runs.append({"round": rnd, "endpoint": endpoint, "server": server, **r})
                        print(
                            f"round {rnd} {endpoint:7} {NAMES[server]:10} {r['rps']:8.0f} req/s"
                            f"  p50 {r['p50_ms']:6.1f}  p99 {r['p99_ms']:6.1f} ms"
                            f"  non-2xx {r['non_2xx']}  socket errors {r['socket_errors']}",
                            flush=True,
                        )
    finally:
        drop()
        redis.Redis.from_url(rurl).flushdb()
    info = redis.Redis.from_url(rurl).info("server")
    server = make_url(a.mysql).render_as_string(hide_password=True)
    conditions = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rounds": a.rounds,
        "load": f"wrk -t{a.threads} -c{a.connections} -d{a.seconds}s --latency",
        "requests": (
            f"detail: GET /products/{{id}}, a random one of the {len(facts['published'])} "
            f"published demo products; listing: GET /products?page=N&size={PAGE_SIZE}, "
            f"N random in 1..{facts['pages']}"
        ),
        "order": f"per round {' then '.join(endpoints)}, each on both servers; the server "
        "that goes first alternates between rounds",
        "warm-up": f"the sanity reads, then {a.warmup_seconds} s of wrk per server and endpoint",
        "machine": f"{os.cpu_count()} CPUs shared by wrk, both servers, MariaDB and Redis; "
        f"load average {load[0]:.1f} at the start; Python {platform.python_version()}",
        "stores": f"MariaDB {facts['mariadb']} at {server} (a fresh database); "
        f"Redis {info.get('redis_version')} at {rurl} (flushed before and after)",
        "raymall": f"`raymall serve` from {tree_revision(tree or ROOT)}; RAYMALL_ENV=prod, "
        "default settings (Serve with the HAProxy ingress, 2 ingress replicas, 4 inventory "
        "shards), recommender off",
        "peer": "bench/peers/plain_shop.py: FastAPI + uvicorn, 1 worker, uvloop + httptools, "
        "no access log; product document cache-aside in Redis (300 s) + one SQL query for "
        "availability per request; listing pages cached 30 s; 32 threads and a pool of 32 "
        "SQLAlchemy + PyMySQL connections",
    }
    text = report(runs, conditions, checks)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(text)
    if a.json:
        a.json.write_text(json.dumps({"conditions": conditions, "runs": runs}, indent=2))
    print("\n" + text)


if __name__ == "__main__":
    main()
