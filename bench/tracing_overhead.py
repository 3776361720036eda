"""What tracing costs: the flash purchase's throughput and the product detail read, with
tracing off and on (``--ratio`` 0.1 sampling, the JSON-lines exporter writing every
sampled span under the server's var/traces/), on one server.

    .venv/bin/python bench/tracing_overhead.py [--alternate 40] [--window 4] [--ratio 0.1]
    mkdir /tmp/head && git archive HEAD | tar -x -C /tmp/head   # a fixed tree to measure
    .venv/bin/python bench/tracing_overhead.py --tree /tmp/head
    .venv/bin/python bench/tracing_overhead.py --alternate 0 [--rounds 16] [--seconds 4]

By default (``alternate``) each endpoint gets one unbroken saturated load, wrk with 64
connections, for ``--alternate`` windows of ``--window`` seconds; the ratio is switched at
the start of every window, and a window's rate is read from the server's own request
counter once every replica has the new ratio. Adjacent windows make a pair (ABBA); the
target is the median pair's on/off >= 0.95. A saturated run's rate drifts by a fifth over
seconds in either mode, and separate runs each start cold, so adjacent windows of one load
are the closest two modes get. ``--alternate 0`` runs the rounds below instead.

One fresh MariaDB database and Redis db: the demo catalog (``raymall seed --demo``) plus two
SKUs with a huge stock and ``--users`` users with access tokens. One ``raymall serve`` with
the exporter configured and a sampling ratio of 0 runs for the whole bench, with a flash
sale that never sells out. Each round measures both modes on each endpoint: ``on`` sets the
ratio with ``PUT /admin/tracing`` (every replica applies it within one poll), ``off`` takes
it back to 0 (``DELETE``); then the flash purchase (``--warmup`` seconds, then ``--seconds``
of purchases by wrk, 64 connections, each request a new purchase: 201), and ``GET
/products/{id}`` over every published product the same way, then flash purchases offered
at ``--paced-rate`` and detail reads at ``--detail-paced-rate`` (open loop, below saturation:
``flash_paced``, ``detail_paced``; ``bench/pace.lua``). The mode that goes first
alternates (ABBA), so drift over the run weighs on both. Two servers side by side, or one
start per mode, differed by a third between runs of the same mode; one server switched
between paired runs takes that difference out.

Reported per mode and endpoint, as medians over rounds: req/s and p50/p99; then on/off of
the req/s medians (the target: >= 0.95) and the median of each round's own on/off. The
saturated flash run is the noisiest figure here: its batches grow with the load and a run
can settle at a higher or lower batch size, so the same mode moves by a fifth between runs
on one server. The paced runs offer the same rate in both modes, so their batches are alike,
and their target is on CPU per request (off/on >= 0.95): on a CPU-bound machine that is the
throughput tracing leaves (the utilization law, which docs/capacity.md checks against
saturated runs). Around
each measured run the CPU of the server's processes, MariaDB and Redis is read
(/proc/<pid>/stat): CPU ms per request per mode, and off/on of those, which is what tracing
costs a CPU-bound machine in throughput. The machine's load average is recorded around every
measurement. Before each measurement the bench waits (up to 45 s) until the machine is
nearly idle: a flash run leaves the outbox relay and consumers working through its events.

``off`` here is the exporter configured with nothing sampled; what that costs against no
exporter at all is what an unsampled request checks (the edge's decision, a hook per SQL
statement and Redis command, a test before each actor call or batch). The bench times each
check in its own process (``unsampled_costs``), counts them in the median sampled request of
each endpoint (``trace_shapes``) and reports their sum as a share of the request's CPU.

Traffic goes to 127.0.0.1 only; every run is bounded (wrk durations; the server is stopped
at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import metric_samples, parse_server_args, raymall_server, server_args  # noqa: E402
from _harness import run_wrk as run_http_wrk  # noqa: E402
from capacity_procs import (  # noqa: E402
    busy_cores,
    cpu_by_kind,
    sample_cpu,
    serve_pid,
    servers,
    settle,
    tree,
)
from catalog_bench import catalog_facts, wrk_scripts  # noqa: E402
from catalog_bench import seed as seed_catalog  # noqa: E402
from flash_sale import BIG, _wrk_cmd, flash_shop, run_wrk  # noqa: E402
from flash_sale import server_env as flash_server_env  # noqa: E402

from deployments.drain import POLL_S  # noqa: E402
from raymall.ids import now_ms  # noqa: E402
from raymall.launcher.scratch import make_mysql_database, private_redis_db  # noqa: E402

MODES = ("off", "on")
# flash and detail: saturated (as fast as the connections go); the paced ones are offered at
# a fixed rate below saturation (--paced-rate, --detail-paced-rate), where CPU per request
# is the measure
ENDPOINTS = ("flash", "detail", "flash_paced", "detail_paced")


def server_env(ctx: dict[str, Any]) -> dict[str, str]:
    """The one server: spans exported as JSON lines, sampling nothing until the bench sets
    a ratio (``PUT /admin/tracing``)."""
    return {
        **flash_server_env(ctx),
        "RAYMALL_TRACE_FILE": "true",
        "RAYMALL_TRACE_SAMPLE_RATIO": "0",
        **(
            {"RAYMALL_TRACE_SAMPLE_SLICE_MS": str(ctx["slice_ms"])}
            if ctx.get("slice_ms") is not None
            else {}
        ),
    }


def paced_scripts(scripts: dict[str, Path], a: argparse.Namespace) -> dict[str, Path]:
    """``scripts`` and ``detail_paced``: the detail script offered at --detail-paced-rate
    (``bench/pace.lua``)."""
    paced = scripts["detail"].with_name("detail_paced.lua")
    paced.write_text(
        scripts["detail"].read_text()
        + f'delay = dofile("{HERE / "pace.lua"}")({a.detail_paced_rate}, {a.threads})\n'
    )
    return {**scripts, "detail_paced": paced}


def set_mode(base: str, ctx: dict[str, Any], mode: str, ratio: float, wait: bool = True) -> None:
    """Sample ``ratio`` of the requests (``on``) or none (``off``) on every replica (once
    they have all polled it, if ``wait``)."""
    headers = {"Authorization": f"Bearer {ctx['admin_token']}"}
    if mode == "on":
        resp = httpx.put(base + "/admin/tracing", json={"sample_ratio": ratio}, headers=headers)
    else:
        resp = httpx.delete(base + "/admin/tracing", headers=headers)
    if resp.status_code not in (200, 204):
        raise RuntimeError(f"setting tracing {mode} failed: {resp.status_code} {resp.text}")
    if wait:
        time.sleep(2 * POLL_S + 0.2)  # every replica has polled the new ratio


def start_sale(base: str, ctx: dict[str, Any]) -> str:
    """A flash sale on ``ctx``'s first SKU that never sells out; its purchase path."""
    body = {
        "sku_id": ctx["skus"][0],
        "price_cents": 990,
        "quantity": BIG,
        "per_user_limit": 1_000_000,
        "starts_at_ms": now_ms() - 1000,
        "ends_at_ms": now_ms() + 3_600_000,
        "title": "trace bench",
    }
    headers = {"Authorization": f"Bearer {ctx['admin_token']}"}
    resp = httpx.post(base + "/admin/flash-sales", json=body, headers=headers, timeout=60)
    if resp.status_code != 201:
        raise RuntimeError(f"creating the sale failed: {resp.text}")
    return f"/flash-sales/{resp.json()['id']}/purchase"


def commit_totals(base: str) -> tuple[float, float]:
    """(operations, group commits) the inventory shards committed so far, from /metrics."""
    samples = metric_samples(base, "raymall_inventory_batch_ops_")
    ops = sum(v for (name, _), v in samples.items() if name.endswith("_sum"))
    commits = sum(v for (name, _), v in samples.items() if name.endswith("_count"))
    return ops, commits


def measure(
    endpoint: str, base: str, path: str, ctx: dict[str, Any], a: argparse.Namespace, pid: int
) -> dict[str, Any]:
    """One measurement of ``endpoint`` on the server at ``base`` (``raymall serve``'s pid):
    warm-up, then the run, with the CPU the server's processes, MariaDB and Redis spent in
    it per request (less sensitive than req/s to other work on a shared machine)."""
    script = str(ctx["scripts"][endpoint if endpoint == "detail_paced" else "detail"])
    options = {"threads": a.threads, "connections": a.connections, "script": script}
    got_settled = settle(a.quiet_cores)
    flash = endpoint.startswith("flash")
    rate = a.paced_rate if endpoint == "flash_paced" else 0
    if flash:
        run_wrk(base, path, ctx["tokens"], a.warmup, a.connections, a.threads, rate)
    else:
        run_http_wrk(base + "/products", seconds=a.warmup, **options)
    commits_before = commit_totals(base)
    before = sample_cpu(tree(pid) + servers())
    if flash:
        got = run_wrk(base, path, ctx["tokens"], a.seconds, a.connections, a.threads, rate)
        keys: tuple[str, ...] = ("rps", "p50_ms", "p99_ms", "errors")
    else:
        got = run_http_wrk(base + "/products", seconds=a.seconds, **options)
        keys = ("rps", "p50_ms", "p99_ms", "non_2xx")
    by_kind = cpu_by_kind(before, sample_cpu(tree(pid) + servers()))
    commits = [b - a for a, b in zip(commits_before, commit_totals(base), strict=True)]
    requests = max(1.0, got["rps"] * a.seconds)
    out = {k: got[k] for k in keys}
    out["settled_s"] = round(got_settled, 1)
    out["cpu_ms_per_request"] = round(1000 * sum(by_kind.values()) / requests, 4)
    out["cpu_ms_by_kind"] = {k: round(1000 * v / requests, 4) for k, v in sorted(by_kind.items())}
    if flash and commits[1] > 0:  # how many purchases a group commit carried, on average
        out["ops_per_commit"] = round(commits[0] / commits[1], 2)
    return out


def run_rounds(ctx: dict[str, Any], a: argparse.Namespace) -> tuple[list[dict[str, Any]], Path]:
    """One server; ``a.rounds`` rounds of paired measurements, the ratio switched between
    them. Answers one block per (round, mode) and the server's trace directory."""
    var = Path(tempfile.mkdtemp(prefix="trace-bench-"))
    blocks: dict[tuple[int, str], dict[str, Any]] = {}
    with raymall_server(server_env(ctx), var=var, tree=a.tree) as base:
        path = start_sale(base, ctx)
        pid = serve_pid(var)
        time.sleep(5)
        # the server idle: what "back to idle" means before each measurement
        a.quiet_cores = busy_cores(5.0) + 0.2
        print(f"idle machine: {a.quiet_cores - 0.2:.2f} busy cores", flush=True)
        for rnd in range(1, a.rounds + 1):
            for endpoint in a.endpoints:
                # ABBA: the mode that goes first alternates between rounds and endpoints
                first = (rnd + a.endpoints.index(endpoint)) % 2
                for mode in MODES if first else MODES[::-1]:
                    block = blocks.setdefault((rnd, mode), {"mode": mode, "round": rnd})
                    set_mode(base, ctx, mode, a.ratio)
                    load_before = os.getloadavg()[0]
                    got = measure(endpoint, base, path, ctx, a, pid)
                    got["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                    block[endpoint] = got
                    per_commit = "ops_per_commit" in got
                    print(
                        f"round {rnd} {endpoint:6} tracing {mode:3}: {got['rps']:7.0f} req/s"
                        f" (p50 {got['p50_ms']:.1f} ms, p99 {got['p99_ms']:.1f} ms,"
                        f" {got['cpu_ms_per_request']:.3f} ms of CPU per request)"
                        f"; load {got['load'][0]:.1f} -> {got['load'][1]:.1f}"
                        f"; waited {got['settled_s']:.0f} s for idle"
                        + (f"; {got['ops_per_commit']} ops per commit" if per_commit else ""),
                        flush=True,
                    )
    return list(blocks.values()), var / "traces"


ROUTES = {"flash": "/flash-sales/{sale_id}/purchase", "detail": "/products/{product_id}"}


def answered_in(samples: dict[tuple[str, str], float], route: str) -> float:
    """Requests of ``route`` answered (every status) in ``metric_samples``' read."""
    label = f'route="{route}"'
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "raymall_http_requests_total" and label in labels
    )


def answered(base: str, route: str) -> float:
    """Requests of ``route`` the server has answered so far (every status), from /metrics."""
    return answered_in(metric_samples(base, "raymall_http_requests_total"), route)


def alternate(
    endpoint: str, base: str, path: str, ctx: dict[str, Any], a: argparse.Namespace
) -> dict[str, Any]:
    """One unbroken saturated load of ``endpoint`` (wrk, as in the rounds) for
    ``a.alternate`` windows of ``a.window`` seconds, the ratio switched at the start of each
    window (pairs in ABBA order). A window's rate is what the server answered on the route
    between ``2 * POLL_S + 0.2`` s into it (every replica has the new ratio) and its end, read
    from its own counter; the pairs are adjacent windows. The load never stops, so drift over
    seconds, and anything that outlives a run (the outbox relay's work, batch sizes), falls on
    both modes alike."""
    seconds = int(a.alternate * a.window) + 10
    if endpoint == "flash":
        env = {**os.environ, "FLASH_TOKENS": str(ctx["tokens"]), "FLASH_PATH": path}
        cmd = _wrk_cmd(base, seconds, a.connections, a.threads)
    else:
        env = dict(os.environ)
        cmd = ["wrk", f"-t{a.threads}", f"-c{a.connections}", f"-d{seconds}s"]
        cmd += ["-s", str(ctx["scripts"]["detail"]), base + "/products"]
    route = ROUTES[endpoint]
    settle_s = 2 * POLL_S + 0.2
    windows: list[dict[str, Any]] = []
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)  # the load's own warm-up
        for i in range(a.alternate):
            pair, second = divmod(i, 2)
            mode = MODES[(pair + second) % 2]  # off on, on off, off on, ...
            started = time.monotonic()
            set_mode(base, ctx, mode, a.ratio, wait=False)
            time.sleep(max(0.0, started + settle_s - time.monotonic()))
            count0, t0 = answered(base, route), time.monotonic()
            time.sleep(max(0.0, started + a.window - time.monotonic()))
            count1, t1 = answered(base, route), time.monotonic()
            windows.append({"mode": mode, "rps": round((count1 - count0) / (t1 - t0), 1)})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ratios = []
    for k in range(0, len(windows) - 1, 2):
        got = {w["mode"]: w["rps"] for w in windows[k : k + 2]}
        if got.get("off"):
            ratios.append(got["on"] / got["off"])
    by_mode = {m: [w["rps"] for w in windows if w["mode"] == m] for m in MODES}
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else ratios * 3
    return {
        "windows": windows,
        "off_rps_median": statistics.median(by_mode["off"]),
        "on_rps_median": statistics.median(by_mode["on"]),
        "on_over_off": round(statistics.mean(by_mode["on"]) / statistics.mean(by_mode["off"]), 3),
        "pair_ratios": [round(r, 3) for r in ratios],
        "median_pair_ratio": round(statistics.median(ratios), 3),
        "pair_ratio_quartiles": [round(q, 3) for q in (quartiles[0], quartiles[2])],
        "meets_target": statistics.median(ratios) >= 0.95,
    }


def run_alternating(ctx: dict[str, Any], a: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """``alternate`` for each saturated endpoint on one server; its trace directory."""
    var = Path(tempfile.mkdtemp(prefix="trace-bench-"))
    out: dict[str, Any] = {}
    with raymall_server(server_env(ctx), var=var, tree=a.tree) as base:
        path = start_sale(base, ctx)
        time.sleep(5)
        for endpoint in a.endpoints:
            if endpoint not in ROUTES:
                continue
            settle(busy_cores(5.0) + 0.2)
            got = out[endpoint] = alternate(endpoint, base, path, ctx, a)
            print(
                f"{endpoint}: on/off {got['on_over_off']} (means), median pair"
                f" {got['median_pair_ratio']} (quartiles {got['pair_ratio_quartiles']}),"
                f" {len(got['pair_ratios'])} pairs; off {got['off_rps_median']:.0f} req/s,"
                f" on {got['on_rps_median']:.0f}",
                flush=True,
            )
    return out, var / "traces"


def trace_shapes(traces: Path) -> dict[str, dict[str, float]]:
    """Per endpoint, the median sampled request's spans: all of them, and the SQL
    statements and Redis commands among them (what an unsampled request checks, too)."""
    from raymall.tracing import read_spans

    def endpoint_of(spans: list[dict[str, Any]]) -> str | None:
        for s in spans:
            route = str(s.get("attributes", {}).get("http.route", ""))
            if route.endswith("/purchase"):
                return "flash"
            if route.startswith("/products/{"):
                return "detail"
        return None

    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in read_spans(traces):
        by_trace.setdefault(span["trace_id"], []).append(span)
    shapes: dict[str, dict[str, float]] = {}
    for endpoint in ("flash", "detail"):
        rows = [spans for spans in by_trace.values() if endpoint_of(spans) == endpoint]
        if not rows:
            continue

        def median_of(pick: Any, rows: list[list[dict[str, Any]]] = rows) -> float:
            return float(statistics.median(sum(1 for s in spans if pick(s)) for spans in rows))

        def system(s: dict[str, Any]) -> str:
            return str(s.get("attributes", {}).get("db.system", ""))

        shapes[endpoint] = {
            "traces": len(rows),
            "spans": median_of(lambda s: True),
            "sql": median_of(lambda s: system(s) not in ("", "redis")),
            "redis": median_of(lambda s: system(s) == "redis"),
        }
    return shapes


def unsampled_costs(n: int = 20_000) -> dict[str, float]:
    """What tracing, configured, costs a request it does not sample, in microseconds per
    check, measured in this process (best of several repeats) with an exporter set and a
    ratio of 0: the edge's decision (``start_request`` answering None), the SQL statement
    hooks (an in-memory SQLite statement with the hooks minus without), the Redis command
    wrapper (around a no-op, with minus without) and the test made before an actor call,
    a batch or an outbox row (``recording_span``)."""
    import timeit

    import redis as redis_sync
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from sqlalchemy import create_engine

    from raymall import tracing
    from raymall.settings import Settings

    def best_us(fn: Any, number: int = n) -> float:
        return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6

    engine = create_engine("sqlite://")
    original = redis_sync.Redis.execute_command
    redis_sync.Redis.execute_command = lambda self, *args, **kw: None  # type: ignore[method-assign]
    client = redis_sync.Redis()
    try:
        with engine.connect() as conn:
            sql_without = best_us(lambda: conn.exec_driver_sql("select 1"), n // 4)
            redis_without = best_us(lambda: client.execute_command("GET", "k"))
            tracing.configure(
                Settings(env="test", trace_sample_ratio=0.0),
                "bench",
                exporter=InMemorySpanExporter(),
            )
            sql_with = best_us(lambda: conn.exec_driver_sql("select 1"), n // 4)
            redis_with = best_us(lambda: client.execute_command("GET", "k"))
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"wrk"),
            (b"authorization", b"Bearer " + b"x" * 200),
            (b"accept", b"*/*"),
        ]
        edge = best_us(lambda: tracing.start_request("GET", "/products/1", headers))
        check = best_us(tracing.recording_span)
    finally:
        tracing.disable()
        redis_sync.Redis.execute_command = original  # type: ignore[method-assign]
        engine.dispose()
    return {
        "edge_us": round(edge, 3),
        "sql_us": round(max(0.0, sql_with - sql_without), 3),
        "redis_us": round(max(0.0, redis_with - redis_without), 3),
        "check_us": round(check, 3),
    }


def unsampled_share(
    costs: dict[str, float], shapes: dict[str, dict[str, float]], res: dict[str, Any]
) -> dict[str, Any]:
    """Per endpoint, the unsampled request's cost (``unsampled_costs`` times the checks of
    the median sampled request, ``trace_shapes``) and its share of the CPU a request takes
    with no request sampled."""
    out: dict[str, Any] = {}
    for endpoint, shape in shapes.items():
        if endpoint not in res:
            continue
        others = max(0.0, shape["spans"] - 1 - shape["sql"] - shape["redis"])
        us = (
            costs["edge_us"]
            + shape["sql"] * costs["sql_us"]
            + shape["redis"] * costs["redis_us"]
            + others * costs["check_us"]
        )
        cpu_ms = res[endpoint]["off"]["cpu_ms_per_request"]
        out[endpoint] = {
            "us_per_request": round(us, 2),
            "share_of_request_cpu": round(us / 1000 / cpu_ms, 5),
        }
    return out


def summary(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per mode and endpoint, and the on/off ratios (see the module docstring)."""
    res: dict[str, Any] = {}
    for endpoint in sorted({e for b in blocks for e in ENDPOINTS if e in b}):
        row: dict[str, Any] = {}
        for mode in MODES:
            runs = [b[endpoint] for b in blocks if b["mode"] == mode]
            row[mode] = {
                "rps": round(statistics.median(r["rps"] for r in runs), 1),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
                "runs": [round(r["rps"], 1) for r in runs],
            }
        for mode in MODES:
            runs = [b[endpoint] for b in blocks if b["mode"] == mode]
            row[mode]["cpu_ms_per_request"] = round(
                statistics.median(r["cpu_ms_per_request"] for r in runs), 4
            )
            kinds = sorted({k for r in runs for k in r["cpu_ms_by_kind"]})
            row[mode]["cpu_ms_by_kind"] = {
                k: round(statistics.median(r["cpu_ms_by_kind"].get(k, 0.0) for r in runs), 4)
                for k in kinds
            }
        row["on_over_off"] = round(row["on"]["rps"] / row["off"]["rps"], 3)
        # what the CPU per request gives a CPU-bound machine: off's CPU / on's CPU
        row["cpu_off_over_on"] = round(
            row["off"]["cpu_ms_per_request"] / row["on"]["cpu_ms_per_request"], 3
        )
        rounds = sorted({b["round"] for b in blocks})
        per_round = []
        for rnd in rounds:
            got = {b["mode"]: b[endpoint]["rps"] for b in blocks if b["round"] == rnd}
            if len(got) == len(MODES):
                per_round.append(got["on"] / got["off"])
        row["round_on_over_off"] = [round(r, 3) for r in per_round]
        row["median_round_on_over_off"] = round(statistics.median(per_round), 3)
        # paced: the offered rate is met in both modes, so what differs is the CPU per request
        measure_of = "cpu_off_over_on" if endpoint.endswith("_paced") else "on_over_off"
        row["meets_target"] = row[measure_of] >= 0.95
        res[endpoint] = row
    return res


def conditions(
    a: argparse.Namespace, started: float, load_avg: float, /, **how: Any
) -> dict[str, Any]:
    """A report's conditions: when, ``how`` the load ran, the modes, the machine (its
    ``load_avg`` at the start), the tree."""
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **how,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "tracing on": f"sample ratio {a.ratio}, JSON-lines exporter (var/traces/)",
        "tracing off": "the same server sampling nothing (ratio 0, exporter set)",
        "machine": f"{os.cpu_count()} CPUs shared; load average {load_avg:.1f} at start",
        "raymall": str(a.tree or HERE.parent),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    # many short pairs: a saturated run's state drifts over seconds, in either mode
    p.add_argument("--seconds", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--ratio", type=float, default=0.1)
    p.add_argument(
        "--alternate",
        type=int,
        default=40,
        help="this many windows of one unbroken load per endpoint, the ratio switched each"
        " window (flash and detail); 0: rounds of separate runs (and the paced endpoints)",
    )
    p.add_argument("--window", type=float, default=4.0, help="--alternate's window, seconds")
    p.add_argument(
        "--slice-ms", type=int, help="the server's RAYMALL_TRACE_SAMPLE_SLICE_MS (0: per request)"
    )
    p.add_argument(
        "--endpoints", default="flash,detail", help=f"the ones to time, of {','.join(ENDPOINTS)}"
    )
    p.add_argument("--paced-rate", type=float, default=600, help="flash_paced's req/s")
    p.add_argument("--detail-paced-rate", type=float, default=3000, help="detail_paced's req/s")
    server_args(p)
    a = parse_server_args(p)
    a.endpoints = [e for e in a.endpoints.split(",") if e]
    if a.alternate and set(a.endpoints) - set(ROUTES):
        raise SystemExit("--alternate times flash and detail; the paced ones need --alternate 0")
    if not a.endpoints or set(a.endpoints) - set(ENDPOINTS):
        raise SystemExit(f"--endpoints: some of {', '.join(ENDPOINTS)}")
    load = os.getloadavg()
    db, drop = make_mysql_database(a.mysql, "rm_trace")
    rurl = private_redis_db(a.redis)
    tmp = Path(tempfile.mkdtemp(prefix="trace-bench-"))
    try:
        seed_catalog(db, rurl, a.tree, tmp / "seed")
        facts = catalog_facts(db)
        ctx, _tokens = flash_shop(db, rurl, a.users, tmp / "tokens.txt")
        ctx["scripts"] = paced_scripts(wrk_scripts(facts, tmp), a)
        ctx["slice_ms"] = a.slice_ms
        started = time.monotonic()
        if a.alternate:
            alternating, traces = run_alternating(ctx, a)
            result = {
                "conditions": conditions(
                    a,
                    started,
                    load[0],
                    load=f"wrk -t{a.threads} -c{a.connections}, unbroken per endpoint",
                    windows=f"{a.alternate} of {a.window} s, ratio switched each, ABBA",
                ),
                "alternating": alternating,
                "sampled request shape (median spans, SQL, Redis)": trace_shapes(traces),
            }
            print(json.dumps(result, indent=2))
            if a.json:
                a.json.write_text(json.dumps(result, indent=2))
            return
        blocks, traces = run_rounds(ctx, a)
        shapes = trace_shapes(traces)
        res = summary(blocks)
        costs = unsampled_costs()
        result = {
            "conditions": conditions(
                a,
                started,
                load[0],
                **{
                    "load": f"wrk -t{a.threads} -c{a.connections} -d{a.seconds}s"
                    f" after {a.warmup} s",
                    "rounds": f"{a.rounds} on one server, the ratio switched, order ABBA",
                    "sampled requests (traces)": {e: v["traces"] for e, v in shapes.items()},
                },
            ),
            "blocks": blocks,
            "summary": res,
            "sampled request shape (median spans, SQL, Redis)": shapes,
            "unsampled check costs (us)": costs,
            "unsampled request cost": unsampled_share(costs, shapes, res),
        }
        print(json.dumps({k: v for k, v in result.items() if k != "blocks"}, indent=2))
        if a.json:
            a.json.write_text(json.dumps(result, indent=2))
    finally:
        drop()
        redis.Redis.from_url(rurl).flushdb()


if __name__ == "__main__":
    main()
