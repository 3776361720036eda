"""Garbage-collection pauses under a flash sale, with what each process built at startup
frozen out of later collections (``RAYMALL_GC_FREEZE=true``, the default) and without, or
between any two configurations (``--mode``).

    .venv/bin/python bench/gc_pauses.py [--rounds 2] [--seconds 40]
    .venv/bin/python bench/gc_pauses.py --mode young700=RAYMALL_GC_YOUNG_THRESHOLD=700 \
        --mode young20k=RAYMALL_GC_YOUNG_THRESHOLD=20000
    mkdir /tmp/head && git archive HEAD | tar -x -C /tmp/head   # a fixed tree to measure
    .venv/bin/python bench/gc_pauses.py --tree /tmp/head

A full (generation 2) collection stops its process while it scans every tracked object; an
inventory shard holds Ray's, SQLAlchemy's and OpenTelemetry's objects and up to
``RAYMALL_INVENTORY_KEY_CACHE`` records, so a purchase waiting on it waits out the scan.

One fresh MariaDB database and Redis db: two SKUs with a huge stock and ``--users`` users
with access tokens (as ``bench/tracing_overhead.py``). Each round starts one ``raymall
serve`` per mode, in ABBA order over the rounds (A B, B A, ...): a flash sale that never
sells out, ``--warmup`` seconds of purchases, then ``--seconds`` of them by wrk (64
connections, each request a new purchase: 201). Around the measured run ``/metrics`` is read:
the full collections of each process (``raymall_gc_pause_seconds{process}``: count, mean
and the bucket under which 99% fall), the time each process spent in collections of every
generation (``raymall_gc_seconds_total``; written by a process at most once a second, so
an idle one's figure lags), and the purchases answered. wrk reports the purchase's p50 and
p99, and the CPU the server's processes, MariaDB and Redis spent per purchase (on this
CPU-bound machine, the throughput a change leaves; steadier than req/s between server
starts, which differ by a tenth or more in one mode). The summary takes the busiest
inventory shard (the sale's SKU lives on one), the outbox relay and the replicas (both,
together), with GC milliseconds per purchase.

Traffic goes to 127.0.0.1 only; every run is bounded (wrk durations; each server is stopped
when its round ends).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _harness import (  # noqa: E402
    metric_labels,
    metric_samples,
    parse_server_args,
    raymall_server,
    server_args,
)
from flash_sale import flash_shop, run_wrk  # noqa: E402
from flash_sale import server_env as flash_server_env  # noqa: E402
from tracing_overhead import ROUTES, answered_in, start_sale  # noqa: E402

from raymall.launcher.scratch import make_mysql_database, private_redis_db  # noqa: E402

DEFAULT_MODES = ("freeze=RAYMALL_GC_FREEZE=true", "nofreeze=RAYMALL_GC_FREEZE=false")


def parse_mode(text: str) -> tuple[str, dict[str, str]]:
    """``name=VAR=value[,VAR=value...]`` -> (name, {VAR: value})."""
    name, _, assignments = text.partition("=")
    env = dict(a.split("=", 1) for a in assignments.split(",") if a)
    if not name or not env or not all(k.startswith("RAYMALL_") for k in env):
        raise SystemExit(f"--mode {text!r}: NAME=RAYMALL_VAR=value[,RAYMALL_VAR=value]")
    return name, env


def server_env(ctx: dict[str, Any], mode: dict[str, str]) -> dict[str, str]:
    return {**flash_server_env(ctx), **mode}


def pauses(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> Any:
    """Per process, the full collections between the two reads: count, mean ms, the bucket
    bound (ms) under which 99% of them fell; and ms per second spent in each generation."""
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if k[0].startswith("raymall_gc_")}
    out: dict[str, dict[str, Any]] = {}
    for (name, labels), value in sorted(delta.items()):
        lab = metric_labels(labels)
        proc = out.setdefault(lab["process"], {"buckets": []})
        if name == "raymall_gc_pause_seconds_count":
            proc["full"] = int(value)
        elif name == "raymall_gc_pause_seconds_sum":
            proc["full_s"] = value
        elif name == "raymall_gc_pause_seconds_bucket":
            proc["buckets"].append((float(lab["le"]), value))
        elif name == "raymall_gc_seconds_total":
            proc.setdefault("gc_s", {})[lab["generation"]] = value
    for proc in out.values():
        full, buckets = proc.get("full", 0), sorted(proc.pop("buckets"))
        proc["full_mean_ms"] = round(1000 * proc.pop("full_s", 0.0) / full, 1) if full else None
        under = [le for le, n in buckets if full and n >= 0.99 * full]
        proc["full_p99_under_ms"] = 1000 * under[0] if under else None
    return out


def one_round(ctx: dict[str, Any], mode: str, a: argparse.Namespace) -> dict[str, Any]:
    var = Path(tempfile.mkdtemp(prefix="gc-bench-"))
    with raymall_server(server_env(ctx, a.modes[mode]), var=var, tree=a.tree) as base:
        path = start_sale(base, ctx)
        time.sleep(5)
        run_wrk(base, path, ctx["tokens"], a.warmup, a.connections, a.threads, 0)
        before, t0 = metric_samples(base), time.monotonic()
        got = run_wrk(base, path, ctx["tokens"], a.seconds, a.connections, a.threads, 0)
        after, t1 = metric_samples(base), time.monotonic()
    count0, count1 = answered_in(before, ROUTES["flash"]), answered_in(after, ROUTES["flash"])
    by_process = pauses(before, after)
    seconds, purchases = t1 - t0, max(1.0, count1 - count0)
    for proc in by_process.values():
        spent = proc.pop("gc_s", {})
        proc["gc_ms_per_s"] = {g: round(1000 * s / seconds, 1) for g, s in sorted(spent.items())}
        proc["gc_ms_per_purchase"] = round(1000 * sum(spent.values()) / purchases, 4)
    return {
        "mode": mode,
        "purchases_per_s": round(purchases / seconds, 1),
        "p50_ms": got["p50_ms"],
        "p99_ms": got["p99_ms"],
        "errors": got["errors"],
        # CPU ms per request of the server's processes (by kind), MariaDB and Redis
        "cpu_ms": got["cpu_ms"],
        "cpu_ms_per_purchase": round(
            sum(got["cpu_ms"].get(k, 0.0) for k in ("system", "mariadb", "redis")), 3
        ),
        "processes": by_process,
    }


def roles(processes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The busiest inventory shard (most full collections, then GC time), the relay, the
    replicas."""
    shards = [v for k, v in processes.items() if k.startswith("inventory-")]
    busiest = max(shards, key=lambda v: (v.get("full", 0), v["gc_ms_per_purchase"]), default={})
    return {
        "busiest shard": busiest,
        "outbox relay": processes.get("outbox-relay-0", {}),
        "replicas": processes.get("replica", {}),
    }


def summary(rounds: list[dict[str, Any]], modes: list[str]) -> dict[str, Any]:
    """Per mode, medians over its rounds; full-collection means as every round's."""
    out: dict[str, Any] = {}
    for mode in modes:
        mine = [r for r in rounds if r["mode"] == mode]
        row: dict[str, Any] = {
            "purchases_per_s": statistics.median(r["purchases_per_s"] for r in mine),
            "p99_ms": statistics.median(r["p99_ms"] for r in mine),
            "cpu_ms_per_purchase": statistics.median(r["cpu_ms_per_purchase"] for r in mine),
        }
        for role in ("busiest shard", "outbox relay", "replicas"):
            got = [roles(r["processes"])[role] for r in mine]
            row[role] = {
                "full collections": [g.get("full", 0) for g in got],
                "full pause mean ms": [g.get("full_mean_ms") for g in got],
                "gc ms per purchase": statistics.median(
                    g.get("gc_ms_per_purchase", 0.0) for g in got
                ),
            }
        out[mode] = row
    first, second = modes
    if out[second]["purchases_per_s"]:
        out[f"{first}/{second} purchases"] = round(
            out[first]["purchases_per_s"] / out[second]["purchases_per_s"], 3
        )
    if out[first]["cpu_ms_per_purchase"]:  # on a CPU-bound machine: the throughput it leaves
        out[f"{second}/{first} CPU per purchase"] = round(
            out[second]["cpu_ms_per_purchase"] / out[first]["cpu_ms_per_purchase"], 3
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=2, help="server starts per mode")
    p.add_argument(
        "--mode",
        action="append",
        help="NAME=RAYMALL_VAR=value[,...], twice (default: RAYMALL_GC_FREEZE true and false)",
    )
    p.add_argument("--seconds", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    server_args(p)
    a = parse_server_args(p)
    a.modes = dict(parse_mode(m) for m in a.mode or DEFAULT_MODES)
    if len(a.modes) != 2:
        raise SystemExit("--mode: exactly two, with different names")
    names = list(a.modes)
    load = os.getloadavg()
    started = time.monotonic()
    db, drop = make_mysql_database(a.mysql, "rm_gc")
    rurl = private_redis_db(a.redis)
    tmp = Path(tempfile.mkdtemp(prefix="gc-bench-"))
    try:
        ctx, _tokens = flash_shop(db, rurl, a.users, tmp / "tokens.txt")
        rounds = []
        for rnd in range(a.rounds):
            for mode in names if rnd % 2 == 0 else names[::-1]:
                got = one_round(ctx, mode, a)
                rounds.append(got)
                print(
                    f"{mode}: {got['purchases_per_s']:.0f} purchases/s, p99 {got['p99_ms']:.0f}"
                    f" ms, {got['cpu_ms_per_purchase']} ms of CPU per purchase"
                )
                for role, v in roles(got["processes"]).items():
                    print(
                        f"  {role}: {v.get('full', 0)} full collections, mean"
                        f" {v.get('full_mean_ms')} ms; {v.get('gc_ms_per_purchase')} ms of GC"
                        " per purchase",
                        flush=True,
                    )
        result = {
            "conditions": {
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "load": f"wrk -t{a.threads} -c{a.connections} -d{a.seconds}s flash purchases"
                f" after {a.warmup} s, one server start per round and mode, ABBA",
                "minutes": round((time.monotonic() - started) / 60, 1),
                "modes": a.modes,
                "machine": f"{os.cpu_count()} CPUs shared; load average {load[0]:.1f} at start",
                "raymall": str(a.tree or HERE.parent),
            },
            "rounds": rounds,
            "summary": summary(rounds, names),
        }
        print(json.dumps(result, indent=2))
        if a.json:
            a.json.write_text(json.dumps(result, indent=2))
    finally:
        drop()
        redis.Redis.from_url(rurl).flushdb()


if __name__ == "__main__":
    main()
