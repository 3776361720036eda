"""Flash-sale purchases over HTTP: raymall against the seeds' approaches, in one run.

Same machine, same load tool (wrk + bench/flash_wrk.lua: POST, 64 connections, access
tokens of ``--users`` users), same MariaDB server (a fresh database) and Redis server:

- raymall ``POST /flash-sales/{id}/purchase``: ``raymall serve`` (Ray Serve, HAProxy
  ingress, 2 replicas) with ``RAYMALL_DATABASE_URL``/``RAYMALL_REDIS_URL`` on the servers.
  Batched rate limits (one Redis call per batch), batched shard call, group commit of the
  purchase + order rows, durable before the answer;
- (a) ``peers/flash_http.py`` mode ``mysql``: FastAPI + uvicorn (1 worker), conditional
  UPDATE + order row in one transaction per request (durable before the answer);
- (b) ``peers/flash_http.py`` mode ``redis``: FastAPI + uvicorn (1 worker), Lua
  pre-decrement + LPUSH, a consumer process beside it writing orders to MariaDB (NOT
  durable at the answer).

Systems run one after the other, by default (a), (b), raymall, (b), (a): the peers bracket
raymall, so that a drift in the machine's speed during the run (it is shared) weighs on
every system alike; figures are medians over all of a system's rounds or runs. Two runs
per appearance:

- **sale** (the flash sale of the issue's acceptance, timed): ``--sale-rounds`` rounds, each
  a fresh event of ``--sale-quantity`` (1,000) units with a per-user limit of 1, and a fixed
  list of attempts: every one of the ``--users`` (10,000) users once, plus
  ``--sale-duplicates`` (1,000) repeated attempts (the same user and Idempotency-Key), in a
  shuffled order, each sent exactly once over 64 connections. A round's time runs from
  starting wrk to the last answer. One unmeasured round warms up first (every user's
  token seen, every path run); the rest are reported per round and as medians, and the
  target is checked on the medians. The peers ignore the key and have no per-user limit;
- **throughput** (a stress figure): ``--seconds`` of load on an event with a huge quantity
  and per-user limit, so every request is a real purchase (201).

Also reported: server-side CPU milliseconds per request, by process (the system's own
processes, MariaDB, Redis; the last two are shared with anything else running), which
explains the throughput on a CPU-bound 2-core machine better than wall-clock figures.

    .venv/bin/python bench/flash_sale.py [--sale-rounds 5] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis
from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import free_port, raymall_server  # noqa: E402

from raymall.auth.tokens import TokenCodec  # noqa: E402
from raymall.ids import now_ms  # noqa: E402
from raymall.launcher.scratch import make_mysql_database, private_redis_db  # noqa: E402
from raymall.launcher.shop import SkuSpec, add_category, add_product, add_users  # noqa: E402

STOCK = 1_000_000_000
BIG = 100_000_000
PEER = HERE / "peers" / "flash_http.py"


# ---- fixtures ------------------------------------------------------------------------------
def seed(url: str, users: int, shards: int) -> tuple[list[int], list[int], int]:
    """Two SKUs holding STOCK units (written before the shards start), ``users`` users and
    one admin. Returns (sku ids, user ids, admin id)."""
    engine = create_engine(url)
    tag = secrets.token_hex(3)
    with engine.begin() as conn:
        cat = add_category(conn, "Bench", f"bench-{tag}")
        skus = []
        for i in range(2):
            spec = SkuSpec(f"FL-{tag}-{i}", 5000, STOCK)
            skus += add_product(conn, cat, f"Flash kettle {i}", [spec], shards=shards)[1]
        ids = add_users(conn, users + 1, tag=f"b{tag}", roles=["admin"])
    engine.dispose()
    return skus, ids[1:], ids[0]


# ---- load ----------------------------------------------------------------------------------
def _cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of this bench's descendants (the system under test; wrk
    excluded) and of the MariaDB and Redis servers (shared with anything else running)."""
    out = {"system": 0.0, "mariadb": 0.0, "redis": 0.0}
    procs = psutil.Process().children(recursive=True)
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("mariadbd", "mysqld", "redis-server"):
            procs.append(proc)
    for proc in procs:
        try:
            name = proc.name()
            if name == "wrk":
                continue
            t = proc.cpu_times()
            key = {"mariadbd": "mariadb", "mysqld": "mariadb", "redis-server": "redis"}.get(
                name, "system"
            )
            out[key] += t.user + t.system
            if key == "system":  # per kind of process, e.g. "ray::InventoryShard"
                cmd = (proc.cmdline() or [name])[0]
                part = cmd.split(":")[2] if cmd.startswith("ray::") else Path(cmd).name
                part = "process " + part.split(".")[0]
                out[part] = out.get(part, 0.0) + t.user + t.system
        except psutil.Error:
            continue
    return out


def _result(raw: dict[str, Any], seconds_run: float, cpu: dict[str, float]) -> dict[str, Any]:
    """One wrk run's figures. Expected answers are 2xx and 409 (sold out, limit reached);
    anything else, and socket errors, count as errors."""
    status = {int(k): v for k, v in raw["status"].items()}
    ok = sum(n for s, n in status.items() if 200 <= s < 300)
    refused = status.get(409, 0)
    errors = raw["requests"] - ok - refused + raw["socket_errors"]
    return {
        "rps": raw["requests"] / seconds_run,
        "ok_per_s": ok / seconds_run,
        "seconds": round(seconds_run, 3),
        "requests": raw["requests"],
        "ok": ok,
        "refused": refused,
        "errors": errors,
        "error_rate": errors / max(1, raw["requests"]),
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "status": status,
        # server-side CPU per request (ms): the system's processes, MariaDB, Redis
        "cpu_ms": {
            k: round(1000 * v / max(1, raw["requests"]), 3)
            for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])
            if v > 0
        },
    }


def _flashjson(out: str) -> dict[str, Any]:
    line = next(ln for ln in out.splitlines() if ln.startswith("FLASHJSON "))
    return dict(json.loads(line[len("FLASHJSON ") :]))


def _wrk_cmd(url: str, seconds: int, conns: int, threads: int) -> list[str]:
    return [
        "wrk",
        f"-t{threads}",
        f"-c{conns}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "flash_wrk.lua"),
        url,
    ]


def run_wrk(
    url: str, path: str, tokens: Path, seconds: int, conns: int, threads: int, rate: float = 0
) -> dict:
    """``seconds`` of load, each request with the next of ``tokens`` (no Idempotency-Key);
    paced at ``rate`` req/s if it is set, else as fast as ``conns`` connections go."""
    env = {**os.environ, "FLASH_TOKENS": str(tokens), "FLASH_PATH": path}
    if rate > 0:
        env |= {"FLASH_RATE": f"{rate:.1f}", "FLASH_RATE_THREADS": str(threads)}
    cpu_before = _cpu_seconds()
    out = subprocess.run(
        _wrk_cmd(url, seconds, conns, threads),
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 120,
        check=True,
    ).stdout
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in _cpu_seconds().items()}
    raw = _flashjson(out)
    return _result(raw, raw["duration_us"] / 1e6, cpu)


def write_attempts(tokens: list[str], duplicates: int, seed: int) -> Path:
    """The attempts of one sale round: every user once with a key of its own, plus
    ``duplicates`` repeats (same token, same key) of randomly chosen users, shuffled."""
    rng = random.Random(seed)
    firsts = [(token, f"r{seed}-{i}") for i, token in enumerate(tokens)]
    lines = firsts + rng.sample(firsts, min(duplicates, len(firsts)))
    rng.shuffle(lines)
    path = Path(tempfile.mkstemp(prefix="flash_attempts_", suffix=".txt")[1])
    path.write_text("".join(f"{token} {key}\n" for token, key in lines))
    return path


def run_attempts(
    url: str, path: str, attempts: Path, conns: int, threads: int, cap_s: int = 120
) -> dict[str, Any]:
    """Send every attempt in ``attempts`` once (flash_wrk.lua's fixed-list mode). The
    round's time runs from starting wrk to its threads' last answer; wrk is then ended.
    Attempts still unanswered after ``cap_s`` are counted as errors."""
    expected = sum(1 for line in attempts.read_text().splitlines() if line.strip())
    env = {
        **os.environ,
        "FLASH_ATTEMPTS": str(attempts),
        "FLASH_THREADS": str(threads),
        "FLASH_PATH": path,
    }
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen(_wrk_cmd(url, cap_s, conns, threads), stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        deadline = started + cap_s
        while seen.count(b"FLASHDONE") < threads and time.perf_counter() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.perf_counter())):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    seconds_run = time.perf_counter() - started
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in _cpu_seconds().items()}
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    out = (seen + rest).decode()
    raw = _flashjson(out)
    result = _result(raw, seconds_run, cpu)
    result["missing"] = max(0, expected - raw["requests"])
    result["errors"] += result["missing"]
    result["error_rate"] = result["errors"] / max(1, expected)
    return result


@contextmanager
def peer_server(mode: str, env: dict[str, str]) -> Any:
    port = free_port()
    full = {**os.environ, **env, "PEER_MODE": mode}
    log = open(Path(tempfile.gettempdir()) / f"flash_peer_{mode}_{os.getpid()}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "flash_http:app",
            "--app-dir",
            str(PEER.parent),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=full,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"peer {mode} exited: see {log.name}")
            try:
                httpx.post(base + "/flash/purchase", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def peer_cmd(*args: str) -> str:
    return subprocess.run(
        [sys.executable, str(PEER), *args], capture_output=True, text=True, check=True
    ).stdout


# ---- systems -------------------------------------------------------------------------------
def flash_shop(db: str, rurl: str, users: int, tokens: Path) -> tuple[dict[str, Any], list[str]]:
    """Seed ``db`` (two SKUs with a huge stock, ``users`` users, an admin), write the users'
    access tokens to ``tokens``; the bench's context (stores, secret, SKUs, the tokens'
    file, an admin token) and the tokens."""
    secret = secrets.token_urlsafe(48)
    skus, user_ids, admin = seed(db, users, 4)
    codec = TokenCodec(secret, access_ttl_s=86_400, refresh_ttl_s=86_400)
    minted = [codec.issue_access(u, "user", f"f{u}")[0] for u in user_ids]
    tokens.write_text("\n".join(minted))
    ctx = {
        "db": db,
        "redis": rurl,
        "secret": secret,
        "skus": skus,
        "tokens": tokens,
        "admin_token": codec.issue_access(admin, "admin", "fadmin")[0],
    }
    return ctx, minted


def server_env(ctx: dict[str, Any]) -> dict[str, str]:
    """A flash bench's ``raymall serve``: ``ctx``'s stores and JWT secret, no recommender,
    tokens and unpaid orders that outlast the bench, and rate limits that stay on (their
    Redis call is part of the work) but never refuse."""
    return {
        "RAY_ADDRESS": os.environ.get("RAY_ADDRESS", "local"),
        "RAYMALL_DATABASE_URL": ctx["db"],
        "RAYMALL_REDIS_URL": ctx["redis"],
        "RAYMALL_JWT_SECRET": ctx["secret"],
        "RAYMALL_RECOMMENDER": "0",
        "RAYMALL_ACCESS_TOKEN_TTL_S": "86400",
        "RAYMALL_FLASH_ORDER_TIMEOUT_S": "7200",
        "RAYMALL_FLASH_RATE_USER_PER_S": "100000",
        "RAYMALL_FLASH_RATE_USER_BURST": "100000",
        "RAYMALL_FLASH_RATE_EVENT_PER_S": "10000000",
    }


def bench_raymall(a: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ctx['admin_token']}"}
    out: dict[str, Any] = {}
    with raymall_server(server_env(ctx)) as base:

        def create(sku: int, quantity: int, limit: int) -> int:
            body = {
                "sku_id": sku,
                "price_cents": 990,
                "quantity": quantity,
                "per_user_limit": limit,
                "starts_at_ms": now_ms() - 1000,
                "ends_at_ms": now_ms() + 3_600_000,
                "title": "bench",
            }
            resp = httpx.post(base + "/admin/flash-sales", json=body, headers=headers, timeout=60)
            if resp.status_code != 201:
                raise RuntimeError(f"creating the sale failed: {resp.text}")
            return int(resp.json()["id"])

        rounds = []
        for i, attempts in enumerate(ctx["rounds"]):
            sale = create(ctx["skus"][1], a.sale_quantity, 1)
            outbox_drained(ctx["db"])  # as the peers' queue: each round starts with none
            r = run_attempts(
                base, f"/flash-sales/{sale}/purchase", attempts, a.connections, a.threads
            )
            r["drain_s"] = outbox_drained(ctx["db"])
            r["stored"] = stored_raymall(ctx["db"], sale)
            if i:  # the first round warms up (every user's token seen, every path run)
                rounds.append(r)
        if rounds:
            out["sale"] = rounds
        if a.seconds:
            sale = create(ctx["skus"][0], BIG, 1_000_000)
            path = f"/flash-sales/{sale}/purchase"
            run_wrk(base, path, ctx["tokens"], a.warmup, a.connections, a.threads)
            outbox_drained(ctx["db"])
            out["throughput"] = run_wrk(
                base, path, ctx["tokens"], a.seconds, a.connections, a.threads
            )
            out["throughput"]["drain_s"] = outbox_drained(ctx["db"])
            out["throughput"]["stored"] = stored_raymall(ctx["db"], sale)
    return out


def outbox_drained(db: str, timeout_s: float = 300) -> float:
    """Seconds until every committed outbox row has been published to the event stream
    (raymall's counterpart of draining (b)'s queue)."""
    engine = create_engine(db)
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout_s:
            with engine.connect() as conn:
                left = conn.execute(
                    text("SELECT COUNT(*) FROM outbox WHERE published_ms IS NULL")
                ).scalar()
            if not left:
                break
            time.sleep(0.2)
    finally:
        engine.dispose()
    return round(time.monotonic() - started, 2)


def stored_raymall(db: str, sale: int) -> dict[str, int]:
    engine = create_engine(db)
    with engine.connect() as conn:
        orders = conn.execute(
            text("SELECT COUNT(*) FROM orders WHERE flash_sale_id = :s"), {"s": sale}
        ).scalar()
        purchases = conn.execute(
            text("SELECT COUNT(*) FROM flash_purchases WHERE sale_id = :s"), {"s": sale}
        ).scalar()
        sold = conn.execute(
            text("SELECT sold FROM flash_sales WHERE id = :s"), {"s": sale}
        ).scalar()
    engine.dispose()
    return {"orders": int(orders or 0), "purchases": int(purchases or 0), "sold": int(sold or 0)}


def bench_peer(mode: str, a: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    sku = 900_000 + (1 if mode == "mysql" else 2)
    env = {
        "PEER_DB": ctx["db"],
        "PEER_REDIS": ctx["redis"],
        "PEER_JWT_SECRET": ctx["secret"],
        "PEER_SKU": str(sku),
    }

    def count() -> dict[str, Any]:
        return dict(json.loads(peer_cmd("count", ctx["db"], ctx["redis"], str(sku))))

    def drained(result: dict[str, Any]) -> None:
        """Wait until every acknowledged order is stored (the (b) consumer), then count."""
        if mode == "redis":
            started = time.monotonic()
            while count()["queued"]:
                time.sleep(0.2)
            result["drain_s"] = round(time.monotonic() - started, 2)
        result["stored"] = count()

    out: dict[str, Any] = {}
    peer_cmd("setup", ctx["db"], ctx["redis"], str(sku), str(a.sale_quantity))  # the tables
    consumer = None
    if mode == "redis":
        consumer = subprocess.Popen(
            [sys.executable, str(PEER), "consume", ctx["db"], ctx["redis"], str(sku)]
        )
    try:
        with peer_server(mode, env) as base:
            rounds = []
            for i, attempts in enumerate(ctx["rounds"]):
                drained({})
                peer_cmd("setup", ctx["db"], ctx["redis"], str(sku), str(a.sale_quantity))
                r = run_attempts(base, "/flash/purchase", attempts, a.connections, a.threads)
                drained(r)
                if i:  # the first round warms up
                    rounds.append(r)
            if rounds:
                out["sale"] = rounds
            if a.seconds:
                drained({})
                peer_cmd("setup", ctx["db"], ctx["redis"], str(sku), str(STOCK))
                run_wrk(base, "/flash/purchase", ctx["tokens"], a.warmup, a.connections, a.threads)
                r = run_wrk(
                    base, "/flash/purchase", ctx["tokens"], a.seconds, a.connections, a.threads
                )
                drained(r)
                out["throughput"] = r
    finally:
        if consumer is not None:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(timeout=30)
    return out


# ---- report --------------------------------------------------------------------------------
NAMES = {
    "raymall": "raymall (Serve, 2 replicas, batched shard)",
    "mysql": "(a) FastAPI + MySQL conditional UPDATE",
    "redis": "(b) FastAPI + Redis Lua + queue consumer",
}


HEADER = (
    f"{'system':44} {'req/s':>8} {'201/s':>8} {'p50':>7} {'p95':>7} {'p99':>7} "
    f"{'err%':>6} {'2xx':>8} {'409':>8}"
)


def _line(name: str, r: dict[str, Any]) -> str:
    return (
        f"{name:44} {r['rps']:8.0f} {r['ok_per_s']:8.0f} {r['p50_ms']:7.1f} "
        f"{r['p95_ms']:7.1f} {r['p99_ms']:7.1f} {100 * r['error_rate']:6.2f} "
        f"{r['ok']:8d} {r['refused']:8d}"
    )


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds (req/s, latency percentiles, CPU per request); errors summed."""

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in rounds))

    cpu_keys = {k for r in rounds for k in r["cpu_ms"]}
    cpu = {k: statistics.median(r["cpu_ms"].get(k, 0.0) for r in rounds) for k in cpu_keys}
    requests = sum(r["requests"] for r in rounds) + sum(r.get("missing", 0) for r in rounds)
    errors = sum(r["errors"] for r in rounds)
    return {
        "rps": med("rps"),
        "ok_per_s": med("ok_per_s"),
        "p50_ms": med("p50_ms"),
        "p95_ms": med("p95_ms"),
        "p99_ms": med("p99_ms"),
        "p99_max_ms": max(r["p99_ms"] for r in rounds),
        "seconds": med("seconds"),
        "ok": sum(r["ok"] for r in rounds),
        "refused": sum(r["refused"] for r in rounds),
        "errors": errors,
        "error_rate": errors / max(1, requests),
        "rounds": len(rounds),
        "cpu_ms": {k: round(v, 3) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])},
    }


def sale_checks(key: str, rounds: list[dict[str, Any]], quantity: int) -> list[str]:
    """What each round stored, against the event's quantity: raymall's orders, purchase
    records and sold count must all equal it; a peer's orders must."""
    problems = []
    for i, r in enumerate(rounds, 1):
        stored = r["stored"]
        want = ("orders", "purchases", "sold") if key == "raymall" else ("orders",)
        wrong = {k: stored.get(k) for k in want if stored.get(k) != quantity}
        if wrong:
            problems.append(f"round {i}: {wrong} (quantity {quantity})")
    return problems


def _ratios(rows: dict[str, dict[str, Any]]) -> None:
    if "raymall" not in rows:
        return
    ours = rows["raymall"]["rps"]
    for key in ("mysql", "redis"):
        if key in rows and rows[key]["rps"]:
            print(f"  raymall / {key}: {ours / rows[key]['rps']:.2f}x req/s")
    if rows.keys() >= {"mysql", "redis"}:
        print(f"  target: {verdict(rows)}")


def report(results: dict[str, Any], a: argparse.Namespace) -> None:
    """``results[system]``: ``sale`` (rounds) and ``throughput`` (runs), one block of each
    per appearance of the system in ``--systems``, in order."""
    sales = {k: v["sale"] for k, v in results.items() if v["sale"]}
    if sales:
        print(
            f"\n== sale: {a.users:,} users + {a.sale_duplicates:,} repeated attempts on "
            f"{a.sale_quantity:,} units, {a.connections} connections, per round =="
        )
        for key, rounds in sales.items():
            print(f"-- {NAMES[key]} (s: {[r['seconds'] for r in rounds]})")
            print(HEADER)
            for r in rounds:
                print(_line(f"  block {r['block']}, round {r['round']}", r))
        summary = {k: summarize(v) for k, v in sales.items()}
        print(f"-- medians over rounds\n{HEADER}")
        for key, r in summary.items():
            print(_line(NAMES[key], r) + f"   (worst p99 {r['p99_max_ms']:.1f})")
        for key, rounds in sales.items():
            problems = sale_checks(key, rounds, a.sale_quantity)
            print(f"  {key} stored: {'every round holds' if not problems else problems}")
            drains = [r["drain_s"] for r in rounds if "drain_s" in r]
            if drains:
                what = "outbox published" if key == "raymall" else "queue written"
                print(f"  {key} {what} after each round (s): {drains}")
            print(f"  {key} CPU ms per request (median): {summary[key]['cpu_ms']}")
        _ratios(summary)
    runs = {k: v["throughput"] for k, v in results.items() if v["throughput"]}
    if runs:
        print(f"\n== throughput: {a.seconds} s, every request a purchase ==\n{HEADER}")
        for key, rs in runs.items():
            for r in rs:
                print(_line(f"{NAMES[key]} [{r['block']}]", r))
        for key, rs in runs.items():
            for r in rs:
                extra = f", drained {r['drain_s']} s after the load" if "drain_s" in r else ""
                if key == "raymall" and "drain_s" in r:
                    extra = f", outbox published {r['drain_s']} s after the load"
                print(f"  {key} [{r['block']}] stored: {r['stored']}{extra}")
                print(f"  {key} [{r['block']}] CPU ms per request: {r['cpu_ms']}")
        summary = {k: summarize(v) for k, v in runs.items()}
        if any(len(rs) > 1 for rs in runs.values()):
            print(f"-- medians over runs\n{HEADER}")
            for key, r in summary.items():
                print(_line(NAMES[key], r))
        _ratios(summary)


def verdict(rows: dict[str, dict[str, Any]]) -> str:
    """The flash-sale target on one run: raymall at least 2x (a) and 1x (b) in req/s, with
    p99 <= 100 ms and no errors."""
    ours = rows["raymall"]
    checks = {
        ">= 2x (a)": ours["rps"] >= 2 * rows["mysql"]["rps"],
        ">= 1x (b)": ours["rps"] >= rows["redis"]["rps"],
        "p99 <= 100 ms": ours["p99_ms"] <= 100,
        "no errors": ours["errors"] == 0,
    }
    missed = [name for name, ok in checks.items() if not ok]
    return (
        "MEETS (2x (a), 1x (b), p99 <= 100 ms, no errors)"
        if not missed
        else ("misses " + ", ".join(missed))
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=int, default=20, help="throughput run (0: skip)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--sale-rounds", type=int, default=5, help="rounds of the sale run (0: skip)")
    p.add_argument("--sale-quantity", type=int, default=1_000)
    p.add_argument("--sale-duplicates", type=int, default=1_000)
    p.add_argument(
        "--systems",
        default="mysql,redis,raymall,redis,mysql",
        help="in this order; a system named twice runs twice (the peers bracket raymall, "
        "so a drift of the machine's speed during the run weighs on every system alike)",
    )
    p.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    for url in (a.mysql, a.redis):
        if "127.0.0.1" not in url and "localhost" not in url:
            raise SystemExit("load only 127.0.0.1")
    load = os.getloadavg()
    print(
        f"flash-sale bench: wrk -t{a.threads} -c{a.connections}, {a.warmup} s warm-up, "
        f"{a.sale_rounds} sale round(s), {a.seconds} s throughput run; {a.users} users; "
        f"127.0.0.1; {os.cpu_count()} CPUs "
        f"shared by client, servers, MariaDB and Redis; load average {load[0]:.1f}; "
        f"Python {platform.python_version()}"
    )
    db, drop = make_mysql_database(a.mysql, "rm_flash")
    rurl = private_redis_db(a.redis)
    tokens = Path(tempfile.mkstemp(prefix="flash_tokens_", suffix=".txt")[1])
    rounds: list[Path] = []
    try:
        ctx, minted = flash_shop(db, rurl, a.users, tokens)
        rounds = [write_attempts(minted, a.sale_duplicates, i) for i in range(a.sale_rounds + 1)]
        ctx["rounds"] = rounds if a.sale_rounds else []  # the first one warms up
        results: dict[str, Any] = {}
        for block, system in enumerate(a.systems.split(","), 1):
            started = time.monotonic()
            if system == "raymall":
                out = bench_raymall(a, ctx)
            else:
                out = bench_peer(system, a, ctx)
            merged = results.setdefault(system, {"sale": [], "throughput": []})
            for i, r in enumerate(out.get("sale", []), 1):
                merged["sale"].append({**r, "block": block, "round": i})
            if "throughput" in out:
                merged["throughput"].append({**out["throughput"], "block": block})
            print(f"[{block}: {system} done in {time.monotonic() - started:.0f} s]", flush=True)
        report(results, a)
        if a.json:
            a.json.write_text(json.dumps(results, indent=2, default=str))
    finally:
        drop()
        redis.Redis.from_url(rurl).flushdb()
        tokens.unlink(missing_ok=True)
        for path in rounds:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
