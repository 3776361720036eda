"""No-op HTTP throughput: raymall's liveness endpoint through Ray Serve (HAProxy ingress,
throughput-optimized mode) against a peer in the same run: a plain FastAPI no-op app on
uvicorn (one worker). Both measured with ``wrk -t2 -c32 -d20s`` on 127.0.0.1.

    python bench/noop_http.py [--seconds 20] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import free_port, raymall_server, run_wrk  # noqa: E402

PEER_APP = """
from fastapi import FastAPI
app = FastAPI()
@app.get("/healthz")
async def healthz():
    return {"status": "ok"}
"""


def measure_peer(seconds: int, rounds: int) -> list[dict]:
    port = free_port()
    app_file = Path("/tmp") / f"raymall_noop_peer_{os.getpid()}.py"
    app_file.write_text(PEER_APP)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"{app_file.stem}:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--app-dir",
            str(app_file.parent),
        ],
    )
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        return [run_wrk(f"http://127.0.0.1:{port}/healthz", seconds=seconds) for _ in range(rounds)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        app_file.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    env = {"RAYMALL_RECOMMENDER": "0"}
    with raymall_server(env) as base:
        run_wrk(base + "/healthz", seconds=3)  # warm-up
        ours = [run_wrk(base + "/healthz", seconds=args.seconds) for _ in range(args.rounds)]
    peer = measure_peer(args.seconds, args.rounds)
    rows = {
        "raymall /healthz (Serve, HAProxy, 2 replicas)": ours,
        "peer: FastAPI + uvicorn, 1 worker": peer,
    }
    print(
        f"wrk -t2 -c32 -d{args.seconds}s, {args.rounds} round(s), 127.0.0.1, "
        f"{os.cpu_count()} CPUs shared by client and server"
    )
    print(f"{'target':48} {'req/s (median)':>15} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    summary = {}
    for name, runs in rows.items():
        rps = statistics.median(r["rps"] for r in runs)
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        errors = sum(r["non_2xx"] + r["socket_errors"] for r in runs)
        summary[name] = {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors}
        print(f"{name:48} {rps:15.0f} {p50:8.2f} {p99:8.2f} {errors:7d}")
    names = list(summary)
    print(f"ratio raymall/peer: {summary[names[0]]['rps'] / summary[names[1]]['rps']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
