"""Coupon claim storms over HTTP: raymall against the seeds' approaches, in one run.

Same machine, same load tool (wrk + bench/flash_wrk.lua's fixed-list mode: POST, 64
connections, each attempt sent once with its Idempotency-Key), same MariaDB server (a
fresh database) and Redis server, the systems one after the other, by default (a), (b),
raymall, (b), (a) (the peers bracket raymall; figures are medians over rounds):

- raymall ``POST /coupon-campaigns/{id}/claim``: ``raymall serve`` (Ray Serve, HAProxy
  ingress, 2 replicas): claims batched per replica into one call of the campaign's
  inventory shard, decided by its coupon desk, group-committed with their coupon rows and
  ``coupon.claimed`` events, durable before the answer; idempotent by key, exact per-user
  limit, sold-out answered by the replicas under the shard's lease;
- (a) ``peers/coupon_http.py`` mode ``mysql``: FastAPI + uvicorn (1 worker), per claim one
  transaction: coupon row (unique per user) + conditional UPDATE of the campaign's count;
  durable before the answer;
- (b) ``peers/coupon_http.py`` mode ``redis``: FastAPI + uvicorn (1 worker), Lua: per-user
  set + DECR + LPUSH, a consumer writing coupons to MariaDB (NOT durable at the answer).

A round is the issue's claim storm, scaled by ``--users``: every user twice (two keys),
plus ``--repeats`` repeated attempts (same user and key), shuffled, on a fresh campaign of
``--total`` coupons with a per-user limit of 1. One unmeasured round warms up first.
Checked after each round: exactly ``--total`` coupons stored, to as many users.

    .venv/bin/python bench/coupon_bench.py [--rounds 3] [--users 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import flash_sale as fs  # noqa: E402
from _harness import free_port, raymall_server  # noqa: E402

from raymall.auth.tokens import TokenCodec  # noqa: E402
from raymall.ids import now_ms  # noqa: E402
from raymall.launcher.scratch import make_mysql_database, private_redis_db  # noqa: E402

PEER = HERE / "peers" / "coupon_http.py"
NAMES = {
    "raymall": "raymall (Serve, 2 replicas, batched shard)",
    "mysql": "(a) FastAPI + MySQL conditional UPDATE",
    "redis": "(b) FastAPI + Redis Lua + queue consumer",
}


def write_attempts(tokens: list[str], repeats: int, seed: int) -> Path:
    """Every user twice (keys ``a``/``b``), plus ``repeats`` repeats of those attempts."""
    rng = random.Random(seed)
    firsts = [(t, f"r{seed}-{tag}-{i}") for i, t in enumerate(tokens) for tag in "ab"]
    lines = firsts + rng.sample(firsts, min(repeats, len(firsts)))
    rng.shuffle(lines)
    path = Path(tempfile.mkstemp(prefix="coupon_attempts_", suffix=".txt")[1])
    path.write_text("".join(f"{token} {key}\n" for token, key in lines))
    return path


def stored_raymall(db: str, campaign: int) -> dict[str, int]:
    engine = create_engine(db)
    with engine.connect() as conn:
        coupons, users = conn.execute(
            text(
                "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM user_coupons WHERE campaign_id = :c"
            ),
            {"c": campaign},
        ).one()
        claimed = conn.execute(
            text("SELECT claimed FROM coupon_campaigns WHERE id = :c"), {"c": campaign}
        ).scalar()
    engine.dispose()
    return {"coupons": int(coupons), "users": int(users), "claimed": int(claimed or 0)}


def bench_raymall(a: argparse.Namespace, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    env = {
        "RAYMALL_DATABASE_URL": ctx["db"],
        "RAYMALL_REDIS_URL": ctx["redis"],
        "RAYMALL_JWT_SECRET": ctx["secret"],
        "RAYMALL_RECOMMENDER": "0",
        "RAYMALL_ACCESS_TOKEN_TTL_S": "86400",
    }
    headers = {"Authorization": f"Bearer {ctx['admin_token']}"}
    rounds = []
    with raymall_server({"RAY_ADDRESS": os.environ.get("RAY_ADDRESS", "local"), **env}) as base:
        for i, attempts in enumerate(ctx["rounds"]):
            body = {
                "title": "bench",
                "rule": {"kind": "amount_off", "amount_cents": 500},
                "total": a.total,
                "per_user_limit": 1,
                "claim_starts_at_ms": now_ms() - 1000,
                "claim_ends_at_ms": now_ms() + 3_600_000,
                "valid_days": 7,
            }
            resp = httpx.post(
                base + "/admin/coupon-campaigns", json=body, headers=headers, timeout=60
            )
            if resp.status_code != 201:
                raise RuntimeError(f"creating the campaign failed: {resp.text}")
            campaign = int(resp.json()["id"])
            fs.outbox_drained(ctx["db"])
            path = f"/coupon-campaigns/{campaign}/claim"
            r = fs.run_attempts(base, path, attempts, a.connections, a.threads)
            r["drain_s"] = fs.outbox_drained(ctx["db"])
            r["stored"] = stored_raymall(ctx["db"], campaign)
            if i:
                rounds.append(r)
    return rounds


def peer_cmd(*args: str) -> str:
    return subprocess.run(
        [sys.executable, str(PEER), *args], capture_output=True, text=True, check=True
    ).stdout


@contextmanager
def peer_server(mode: str, env: dict[str, str]) -> Any:
    port = free_port()
    full = {**os.environ, **env, "PEER_MODE": mode}
    log = open(Path(tempfile.gettempdir()) / f"coupon_peer_{mode}_{os.getpid()}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "coupon_http:app", "--app-dir", str(PEER.parent),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--loop", "uvloop",
         "--http", "httptools", "--log-level", "warning", "--no-access-log"],
        env=full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"peer {mode} exited: see {log.name}")
            try:
                httpx.post(base + "/coupon/claim", timeout=2)
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


def bench_peer(mode: str, a: argparse.Namespace, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    campaign = 900_000 + (1 if mode == "mysql" else 2)
    env = {
        "PEER_DB": ctx["db"],
        "PEER_REDIS": ctx["redis"],
        "PEER_JWT_SECRET": ctx["secret"],
        "PEER_CAMPAIGN": str(campaign),
    }

    def count() -> dict[str, Any]:
        return dict(json.loads(peer_cmd("count", ctx["db"], ctx["redis"], str(campaign))))

    def drained(result: dict[str, Any]) -> None:
        if mode == "redis":
            started = time.monotonic()
            while count()["queued"]:
                time.sleep(0.2)
            result["drain_s"] = round(time.monotonic() - started, 2)
        result["stored"] = count()

    peer_cmd("setup", ctx["db"], ctx["redis"], str(campaign), str(a.total))
    consumer = None
    if mode == "redis":
        consumer = subprocess.Popen(
            [sys.executable, str(PEER), "consume", ctx["db"], ctx["redis"], str(campaign)]
        )
    rounds = []
    try:
        with peer_server(mode, env) as base:
            for i, attempts in enumerate(ctx["rounds"]):
                drained({})
                peer_cmd("setup", ctx["db"], ctx["redis"], str(campaign), str(a.total))
                r = fs.run_attempts(base, "/coupon/claim", attempts, a.connections, a.threads)
                drained(r)
                if i:
                    rounds.append(r)
    finally:
        if consumer is not None:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(timeout=30)
    return rounds


def checks(rounds: list[dict[str, Any]], total: int) -> list[str]:
    problems = []
    for i, r in enumerate(rounds, 1):
        s = r["stored"]
        if s["coupons"] != total or s["users"] != total or s.get("claimed", total) != total:
            problems.append(f"round {i}: {s} (total {total})")
    return problems


def verdict(rows: dict[str, dict[str, Any]]) -> str:
    ours = rows["raymall"]
    wanted = {
        ">= 2x (a)": ours["rps"] >= 2 * rows["mysql"]["rps"],
        ">= 1x (b)": ours["rps"] >= rows["redis"]["rps"],
        "p99 <= 100 ms": ours["p99_ms"] <= 100,
        "no errors": ours["errors"] == 0,
    }
    missed = [name for name, ok in wanted.items() if not ok]
    return (
        "MEETS (2x (a), 1x (b), p99 <= 100 ms, no errors)"
        if not missed
        else ("misses " + ", ".join(missed))
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument("--repeats", type=int, default=500)
    p.add_argument("--total", type=int, default=1_250)
    p.add_argument("--rounds", type=int, default=3, help="measured rounds (one more warms up)")
    p.add_argument("--systems", default="mysql,redis,raymall,redis,mysql")
    p.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    for url in (a.mysql, a.redis):
        if "127.0.0.1" not in url and "localhost" not in url:
            raise SystemExit("load only 127.0.0.1")
    load = os.getloadavg()
    print(
        f"coupon claim bench: wrk -t{a.threads} -c{a.connections}; {a.users:,} users x 2 "
        f"attempts + {a.repeats:,} repeats on {a.total:,} coupons (limit 1), {a.rounds} "
        f"round(s) after a warm-up; {os.cpu_count()} CPUs shared by client, servers, MariaDB "
        f"and Redis; load average {load[0]:.1f}; Python {platform.python_version()}"
    )
    db, drop = make_mysql_database(a.mysql, "rm_coupon")
    rurl = private_redis_db(a.redis)
    secret = secrets.token_urlsafe(48)
    rounds: list[Path] = []
    try:
        _, users, admin = fs.seed(db, a.users, 4)
        codec = TokenCodec(secret, access_ttl_s=86_400, refresh_ttl_s=86_400)
        minted = [codec.issue_access(u, "user", f"c{u}")[0] for u in users]
        rounds = [write_attempts(minted, a.repeats, i) for i in range(a.rounds + 1)]
        ctx = {
            "db": db,
            "redis": rurl,
            "secret": secret,
            "rounds": rounds,
            "admin_token": codec.issue_access(admin, "admin", "cadmin")[0],
        }
        results: dict[str, list[dict[str, Any]]] = {}
        for block, system in enumerate(a.systems.split(","), 1):
            started = time.monotonic()
            out = bench_raymall(a, ctx) if system == "raymall" else bench_peer(system, a, ctx)
            results.setdefault(system, []).extend(
                {**r, "block": block, "round": i} for i, r in enumerate(out, 1)
            )
            print(f"[{block}: {system} done in {time.monotonic() - started:.0f} s]", flush=True)
        print("\n== claim storm, per round ==")
        for key, rs in results.items():
            print(f"-- {NAMES[key]}\n{fs.HEADER}")
            for r in rs:
                print(fs._line(f"  block {r['block']}, round {r['round']}", r))
        summary = {k: fs.summarize(v) for k, v in results.items()}
        print(f"-- medians over rounds\n{fs.HEADER}")
        for key, r in summary.items():
            print(fs._line(NAMES[key], r) + f"   (worst p99 {r['p99_max_ms']:.1f})")
        for key, rs in results.items():
            problems = checks(rs, a.total)
            print(f"  {key} stored: {'every round exact' if not problems else problems}")
            drains = [r["drain_s"] for r in rs if "drain_s" in r]
            if drains:
                what = "outbox published" if key == "raymall" else "queue written"
                print(f"  {key} {what} after each round (s): {drains}")
            print(f"  {key} CPU ms per request (median): {summary[key]['cpu_ms']}")
        if "raymall" in summary:
            for key in ("mysql", "redis"):
                if key in summary and summary[key]["rps"]:
                    ratio = summary["raymall"]["rps"] / summary[key]["rps"]
                    print(f"  raymall / {key}: {ratio:.2f}x req/s")
            if summary.keys() >= {"mysql", "redis"}:
                print(f"  target: {verdict(summary)}")
        if a.json:
            a.json.write_text(json.dumps(results, indent=2, default=str))
    finally:
        drop()
        redis.Redis.from_url(rurl).flushdb()
        for path in rounds:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
