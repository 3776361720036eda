"""The catalog bench's report: medians over rounds, the raymall/peer ratios against the
issue's targets, CPU by process group, every run, and the conditions, as markdown."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

SERVERS = ("raymall", "peer")
ENDPOINTS = ("detail", "listing")
NAMES = {"raymall": "raymall", "peer": "plain shop"}
TARGETS = {"detail": (1.5, 50.0), "listing": (0.9, None)}  # (req/s ratio, raymall p99 ms)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per endpoint that has runs: medians per server and the median raymall/peer ratio."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for endpoint in [e for e in ENDPOINTS if any(r["endpoint"] == e for r in runs)]:
        for server in SERVERS:
            rs = [r for r in runs if r["endpoint"] == endpoint and r["server"] == server]
            cores: dict[str, list[float]] = defaultdict(list)
            for r in rs:
                for k, v in r["cores"].items():
                    cores[k].append(v)
            out[endpoint][server] = {
                "rps": median([r["rps"] for r in rs]),
                "p50_ms": median([r["p50_ms"] for r in rs]),
                "p99_ms": median([r["p99_ms"] for r in rs]),
                "p99_max_ms": max((r["p99_ms"] for r in rs), default=float("nan")),
                "non_2xx": sum(r["non_2xx"] for r in rs),
                "socket_errors": sum(r["socket_errors"] for r in rs),
                "requests": sum(r["requests"] for r in rs),
                "cores": {k: round(median(v), 2) for k, v in cores.items()},
            }
        by_round: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
        for r in runs:
            if r["endpoint"] == endpoint:
                by_round[r["round"]][r["server"]] = r
        pairs = [p for p in by_round.values() if len(p) == 2]
        out[endpoint]["ratio"] = {
            "rps": median([p["raymall"]["rps"] / p["peer"]["rps"] for p in pairs]),
            "p50": median([p["raymall"]["p50_ms"] / p["peer"]["p50_ms"] for p in pairs]),
            "p99": median([p["raymall"]["p99_ms"] / p["peer"]["p99_ms"] for p in pairs]),
        }
    return out


def verdict(endpoint: str, s: dict[str, dict[str, Any]]) -> str:
    want_ratio, want_p99 = TARGETS[endpoint]
    missed = []
    if not s["ratio"]["rps"] >= want_ratio:
        missed.append(f"req/s ratio < {want_ratio}")
    if want_p99 is not None and not s["raymall"]["p99_ms"] <= want_p99:
        missed.append(f"p99 > {want_p99:.0f} ms")
    if s["raymall"]["non_2xx"] or s["raymall"]["socket_errors"]:
        missed.append("errors")
    target = f">= {want_ratio}x req/s" + (f", p99 <= {want_p99:.0f} ms" if want_p99 else "")
    return f"{target}: " + ("met" if not missed else "MISSED (" + ", ".join(missed) + ")")


def cores_text(cores: dict[str, float], top: int = 6) -> str:
    items = sorted(cores.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{k} {v:.2f}" for k, v in items)


def report(runs: list[dict[str, Any]], conditions: dict[str, Any], checks: dict[str, Any]) -> str:
    s = summarize(runs)
    lines = [
        "# Catalog reads: raymall vs a plain FastAPI shop",
        "",
        f"{conditions['when']}. Medians over {conditions['rounds']} interleaved round(s) of "
        f"`{conditions['load']}`; the ratio is the median of each round's raymall/peer ratio.",
        "",
        "| endpoint | server | req/s | p50 ms | p99 ms | worst p99 ms | non-2xx | socket errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for endpoint in s:
        for server in SERVERS:
            r = s[endpoint][server]
            lines.append(
                f"| {endpoint} | {NAMES[server]} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['p99_max_ms']:.1f} | {r['non_2xx']} | "
                f"{r['socket_errors']} |"
            )
    lines += [
        "",
        "| endpoint | raymall/peer req/s | p50 ratio | p99 ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for endpoint in s:
        q = s[endpoint]["ratio"]
        lines.append(
            f"| {endpoint} | {q['rps']:.2f}x | {q['p50']:.2f} | {q['p99']:.2f} | "
            f"{verdict(endpoint, s[endpoint])} |"
        )
    lines += [
        "",
        "CPU used during the runs, in cores (median over rounds; MariaDB and Redis are shared "
        "with anything else running):",
        "",
    ]
    for endpoint in s:
        for server in SERVERS:
            lines.append(
                f"- {endpoint}, {NAMES[server]}: {cores_text(s[endpoint][server]['cores'])}"
            )
    lines += [
        "",
        "## Every run, in order",
        "",
        "| round | endpoint | server | req/s | p50 ms | p99 ms | non-2xx | socket errors |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        lines.append(
            f"| {r['round']} | {r['endpoint']} | {NAMES[r['server']]} | {r['rps']:,.0f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['non_2xx']} | {r['socket_errors']} |"
        )
    lines += ["", "## Conditions", ""]
    lines += [f"- {k}: {v}" for k, v in conditions.items() if k not in ("when", "rounds")]
    lines += [f"- sanity check before the runs: {checks['summary']}"]
    if checks["notes"]:
        lines += [f"- raymall answers more than the peer: {', '.join(checks['notes'])}"]
    return "\n".join(lines) + "\n"
