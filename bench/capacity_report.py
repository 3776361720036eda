"""Render docs/capacity.md from the JSON of ``bench/capacity.py`` (CPU per request, the
model, its check) and of ``bench/memory_footprint.py`` (memory per process kind).

    .venv/bin/python bench/capacity_report.py   # re-render from bench/report/*.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CAPACITY_JSON = HERE / "report" / "capacity.json"
MEMORY_JSON = HERE / "report" / "memory_footprint.json"
DOC = ROOT / "docs" / "capacity.md"
NAMES = {
    "flash": "flash purchase",
    "detail": "product detail",
    "order": "order placement",
    "listing": "listing page",
    "cart": "cart add",
}
CLIENT = "load client (wrk)"
SHARED = ("mariadbd", "redis-server")


def _n(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def cpu_section(cap: dict[str, Any]) -> list[str]:
    routes = list(cap["routes"])
    kinds: dict[str, float] = {}
    for r in routes:
        for k, v in cap["routes"][r]["fixed"]["ms_per_request"].items():
            kinds[k] = max(kinds.get(k, 0.0), v)
    order = sorted((k for k in kinds if k != CLIENT), key=lambda k: -kinds[k]) + [CLIENT]
    head = "| component | " + " | ".join(NAMES.get(r, r) for r in routes) + " |"
    lines = [head, "| --- |" + " ---: |" * len(routes)]
    for k in order:
        cells = [cap["routes"][r]["fixed"]["ms_per_request"].get(k, 0.0) for r in routes]
        if max(cells) < 0.001:
            continue
        lines.append(f"| {k} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    sums = [cap["routes"][r]["model"]["sum_ms"] for r in routes]
    lines.append("| **server total** | " + " | ".join(f"**{s:.3f}**" for s in sums) + " |")
    rates = [cap["routes"][r]["fixed"]["rps"] for r in routes]
    lines.append("| (fixed load, req/s) | " + " | ".join(_n(x) for x in rates) + " |")
    return lines


def model_section(cap: dict[str, Any]) -> list[str]:
    cores = cap["conditions"]["cores"]
    target = cap["conditions"]["target_rps"]
    lines = [
        f"| route | one node of {cores} cores, all in one (req/s) | app node, stores elsewhere "
        f"(req/s) | tightest single process (req/s) | app nodes for {_n(target)} req/s | "
        f"MariaDB cores / Redis cores for {_n(target)} req/s |",
        "| --- | ---: | ---: | --- | ---: | --- |",
    ]
    for r, row in cap["routes"].items():
        m = row["model"]
        ms = row["fixed"]["ms_per_request"]
        limit = m["tightest_process"]
        tight = f"{_n(m['process_limits'][limit])} ({limit})" if limit else "-"
        if r == "flash":
            nodes_text = (
                f"{math.ceil(target / m['app_node_rps'])} by CPU; one hot SKU stops at "
                f"{_n(m['process_limits'].get('inventory shard', 0))} req/s whatever the nodes"
            )
        else:
            nodes_text = str(math.ceil(target / m["app_node_rps"]))
        stores = " / ".join(f"{target * ms.get(k, 0.0) / 1000:.1f}" for k in SHARED)
        lines.append(
            f"| {NAMES.get(r, r)} | {_n(m['node_rps'])} | {_n(m['app_node_rps'])} | {tight} | "
            f"{nodes_text} | {stores} |"
        )
    return lines


def check_section(cap: dict[str, Any]) -> list[str]:
    lines = [
        "| route | predicted here (req/s) | bound by | measured saturated (req/s, median) | "
        "measured / predicted | within 25% | other work (cores) | quiet-machine prediction "
        "(req/s) | from saturated costs: predicted, ratio | from low-load costs: predicted, "
        "ratio | from the fit of the two paced loads: predicted, ratio | p99 saturated (ms) |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | --- | --- | --- | ---: |",
    ]
    for r, row in cap["routes"].items():
        m, s = row["model"], row["model_from_saturated_costs"]
        sat = row["saturated"]
        runs = ", ".join(_n(x) for x in sat["runs_rps"])
        lo = row.get("model_from_low_load_costs")
        low = f"{_n(lo['predicted_here_rps'])}, {lo['ratio']:.2f}" if lo else "-"
        fm = row.get("model_from_fit")
        fitted = f"{_n(fm['predicted_here_rps'])}, {fm['ratio']:.2f}" if fm and fm["ratio"] else "-"
        lines.append(
            f"| {NAMES.get(r, r)} | {_n(m['predicted_here_rps'])} | {m['predicted_here_by']} | "
            f"{_n(m['measured_rps'])} ({runs}) | {m['ratio']:.2f} | "
            f"{'yes' if m['within_25pct'] else '**no**'} | {m.get('foreign_cores', 0):.2f} | "
            f"{_n(m.get('predicted_quiet_rps', m['predicted_here_rps']))} | "
            f"{_n(s['predicted_here_rps'])}, {s['ratio']:.2f} | {low} | {fitted} | "
            f"{sat['p99_ms']:.1f} |"
        )
    return lines


def multinode_section(cap: dict[str, Any]) -> list[str]:
    mn = cap.get("multinode")
    if not mn:
        return ["Not measured yet: run `bench/capacity_multinode.py` after `bench/capacity.py`."]
    lines = [
        f"{mn['nodes']} nodes of {mn['cpus_per_node']} CPU each on this machine (a local "
        f"`ray.cluster_utils.Cluster`, the same 2 CPUs in all), measured {mn['date']} at "
        f"{mn['commit']}; saturated runs as above; the prediction is the one-node model's.",
        "",
        "| route | predicted (req/s) | measured on the cluster (req/s, median) | "
        "measured / predicted | one node measured (req/s) | p99 (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r, row in mn["routes"].items():
        runs = ", ".join(_n(x) for x in row["runs_rps"])
        lines.append(
            f"| {NAMES.get(r, r)} | {_n(row['predicted_rps'] or 0)} | "
            f"{_n(row['measured_rps'])} ({runs}) | {row['ratio'] or 0:.2f} | "
            f"{_n(row['one_node_measured_rps'] or 0)} | {row['p99_ms']:.1f} |"
        )
    return lines


def memory_section(mem: list[dict[str, Any]]) -> list[str]:
    if not mem:
        return ["Not measured yet: run `bench/memory_footprint.py`."]
    by = {r["config"]: r for r in mem}
    configs = list(by)
    kinds: dict[str, float] = {}
    for r in mem:
        for k, v in r["kinds"].items():
            kinds[k] = max(kinds.get(k, 0.0), v["rss_mb"])
    head = (
        "| process kind | "
        + " | ".join(f"{c}: processes, RSS MiB, PSS MiB" for c in configs)
        + " |"
    )
    lines = [head, "| --- |" + " ---: |" * len(configs)]
    for k in sorted(kinds, key=lambda k: -kinds[k]):
        cells = []
        for c in configs:
            v = by[c]["kinds"].get(k)
            cells.append(
                f"{int(v['processes'])}, {v['rss_mb']:.0f}, {v['pss_mb']:.0f}" if v else "-"
            )
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append(
        "| **total** | "
        + " | ".join(
            f"**{by[c]['processes']}, {by[c]['rss_mb']:.0f}, {by[c]['pss_mb']:.0f}**"
            for c in configs
        )
        + " |"
    )
    if all("machine_mb" in by[c] for c in configs):
        lines.append(
            "| the machine's MemAvailable fell by (MiB) | "
            + " | ".join(f"{by[c]['machine_mb']:.0f}" for c in configs)
            + " |"
        )
    lines.append("")
    for c in configs:
        env = by[c]["env"]
        settings = ", ".join(f"`{k}={v}`" for k, v in env.items()) or "every setting at its default"
        j = by[c]["journey"]
        lines.append(
            f"- **{c}**: {settings}. Measured {by[c].get('date', '')} at {by[c].get('commit', '')} "
            f"after the demo journey (browse, detail, sign-up, cart, order, pay: order "
            f"{j['order_status']}) and {by[c].get('idle_s', '?')} s of rest; ready "
            f"{by[c]['ready_after_s']:.0f} s after the start (seed included)."
        )
    return lines


def render(cap: dict[str, Any] | None, mem: list[dict[str, Any]]) -> str:
    out = [
        "# Capacity model",
        "",
        "<!-- generated by bench/capacity.py and bench/memory_footprint.py "
        "(bench/capacity_report.py); do not edit by hand -->",
        "",
        "How much CPU each core route costs per request, by component; what one node of C cores "
        "should therefore serve, and how many nodes a target load needs; checked against the "
        "throughput measured on this machine. Then the memory each kind of process holds, and "
        "a configuration for small machines.",
        "",
    ]
    if cap is None:
        out += ["CPU figures: not measured yet (`bench/capacity.py`).", ""]
    else:
        c = cap["conditions"]
        out += [
            "## Conditions",
            "",
            f"- date: {c['date']}; commit: {c['commit']}",
            f"- machine: {c['machine']}",
            f"- stores: {c['stores']}",
            f"- server: {c['server']}",
            f"- load: {c['load']}",
            "- the machine was shared with other work; figures are medians of the rounds",
            "",
            "## Method",
            "",
            "Around every wrk run the bench reads utime + stime (/proc/<pid>/stat) of each "
            "process of the server's tree, of mariadbd and redis-server and of wrk, and sums "
            "them by kind of process. The CPU the server spends with no load (Ray's daemons, "
            "heartbeats, sweepers, pollers: "
            f"{sum(cap['idle_cores'].values()):.2f} cores in all) is measured once and taken "
            "out, so a component's cost is (its CPU in the run - its idle rate x the run's "
            "time) / the requests answered. Costs come from the **fixed load** runs "
            "(an offered rate of a fixed fraction of the round's saturated throughput); the "
            "check compares the throughput they predict with the **saturated** runs "
            "(64 connections, no wait). CPU that other work on the shared machine used during "
            "the saturated runs (machine busy time minus the bench's processes) is taken out "
            "of the cores the prediction gives the node.",
            "",
            "Predictions: one node of C cores serves `(C - idle cores) x 1000 / sum of ms per "
            "request` while CPU is the limit; a kind of process that can keep only n cores busy "
            "(a Python process: 1, the GIL; Redis: 1; HAProxy: its threads) caps a route at "
            "`n x 1000 / its ms`, and one hot SKU lives on one inventory shard, so a flash sale "
            "of one SKU stops at `1000 / shard ms` however many nodes there are. On this "
            "machine the load client shares the cores, so the check adds wrk's ms to the sum.",
            "",
            "## CPU milliseconds per request (fixed load, idle taken out)",
            "",
            *cpu_section(cap),
            "",
            "## What one node serves, and how many a load needs",
            "",
            *model_section(cap),
            "",
            "All in one: app, MariaDB and Redis on the node; app node: the Ray processes only, "
            "with MariaDB and Redis on servers of their own (their cores for the target load "
            "are in the last column). Node counts assume the load spreads evenly (Serve runs "
            "a proxy per node and HAProxy spreads over replicas; shards spread by hash).",
            "",
            "## Check: predicted vs measured on one node",
            "",
            *check_section(cap),
            "",
            "The issue's target is a ratio within 0.75..1.25 for the flash sale, detail reads "
            "and order placement. 'From saturated costs' and 'from low-load costs' are the same "
            "model fed with the costs measured in the saturated runs and at the low load: "
            "batches (group commit, coalesced shard calls, the outbox relay's reads) grow with "
            "the load, so a request costs less near saturation, and costs measured at a low "
            "load underestimate what a node serves. 'From the fit' fits each component's CPU "
            "against the throughput through the two paced loads of a round (the utilization "
            "law, U = intercept + slope x X: the slope is the marginal ms per request, the "
            "intercept the cores the load keeps busy whatever its rate) and predicts "
            "`(C - intercepts - other work) x 1000 / sum of slopes`.",
            "",
            "## Check: the same CPUs as a multi-node cluster",
            "",
            *multinode_section(cap),
            "",
            "Idle CPU by kind (cores): "
            + ", ".join(
                f"{k} {v:.3f}" for k, v in sorted(cap["idle_cores"].items(), key=lambda kv: -kv[1])
            ),
            "",
        ]
    out += [
        "## Memory per process kind (idle)",
        "",
        "RSS counts every page a process maps (shared libraries in each process again); PSS "
        "shares a page among the processes that map it, so PSS adds up to what the server "
        "really holds; the last row is the whole machine's view (MemAvailable just before "
        "the start and at the measurement). Measured by `bench/memory_footprint.py` on the "
        "embedded stores "
        "(`make run`'s setup: SQLite, embedded redis-server, Milvus Lite), demo shop seeded.",
        "",
        *memory_section(mem),
        "",
    ]
    return "\n".join(out)


def write_doc(
    cap_json: Path = CAPACITY_JSON, doc: Path = DOC, mem_json: Path = MEMORY_JSON
) -> None:
    cap = json.loads(cap_json.read_text()) if cap_json.exists() else None
    mem = json.loads(mem_json.read_text()) if mem_json.exists() else []
    doc.write_text(render(cap, mem))


if __name__ == "__main__":
    write_doc(*(Path(x) for x in sys.argv[1:]))
