"""Login under load: 32 concurrent sign-ins, and proof that hashing stays off the event loop.

Each of ``--concurrency`` workers signs in again and again (its own account, so per-account
limits never interfere) for ``--seconds``. Meanwhile a probe calls ``GET /healthz`` on its
own connection every ``--probe-ms``; ``/healthz`` is answered by the same replica event
loops that run the login handlers, so if hashing blocked the loop the probe's latency
would grow to the hash time (~20 ms for Argon2id at the defaults, ~0.25 s for bcrypt 12).
The probe is also run on an idle app first, in the same run, for comparison.

    python bench/login_bench.py                       # starts raymall serve (RAYMALL_* env)
    python bench/login_bench.py --url http://127.0.0.1:8000

Bounded: setup (account creation) plus ``--idle-seconds`` plus ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summary_ms(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": _r(pct(values, 50)),
        "p90_ms": _r(pct(values, 90)),
        "p99_ms": _r(pct(values, 99)),
        "max_ms": _r(max(values) if values else None),
        "mean_ms": _r(statistics.fmean(values) if values else None),
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


async def create_accounts(client: httpx.AsyncClient, n: int) -> list[dict[str, str]]:
    run = secrets.token_hex(3)
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> dict[str, str]:
        name = f"bench{run}_{i}"
        creds = {"username": name, "password": f"Bench-{secrets.token_hex(6)}-9x"}
        body = {"email": f"{name}@example.com", **creds}
        async with sem:
            resp = await client.post("/auth/register", json=body)
        if resp.status_code != 201:
            raise RuntimeError(f"registration failed: {resp.status_code} {resp.text[:200]}")
        return creds

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def probe(client: httpx.AsyncClient, stop: asyncio.Event, every_s: float) -> list[float]:
    samples: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        resp = await client.get("/healthz")
        if resp.status_code == 200:
            samples.append(time.perf_counter() - started)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
    return samples


async def login_worker(
    client: httpx.AsyncClient, creds: dict[str, str], deadline: float, out: dict[str, Any]
) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            resp = await client.post("/auth/login", json=creds)
            status = str(resp.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        elapsed = time.perf_counter() - started
        out["statuses"][status] += 1
        if status == "200":
            out["latencies"].append(elapsed)


async def run(base: str, args: argparse.Namespace) -> dict[str, Any]:
    timeout = httpx.Timeout(60.0)
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with (
        httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client,
        httpx.AsyncClient(base_url=base, timeout=timeout) as prober,
    ):
        t0 = time.perf_counter()
        accounts = await create_accounts(client, args.concurrency)
        setup_s = time.perf_counter() - t0

        stop = asyncio.Event()
        idle_task = asyncio.create_task(probe(prober, stop, args.probe_ms / 1000))
        await asyncio.sleep(args.idle_seconds)
        stop.set()
        idle = await idle_task

        out: dict[str, Any] = {"statuses": Counter(), "latencies": []}
        print(f"{len(accounts)} accounts ready; signing in", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        load_probe = asyncio.create_task(probe(prober, stop, args.probe_ms / 1000))
        started = time.perf_counter()
        deadline = time.monotonic() + args.seconds
        await asyncio.gather(*(login_worker(client, c, deadline, out) for c in accounts))
        wall = time.perf_counter() - started
        stop.set()
        loaded = await load_probe

    ok = out["latencies"]
    return {
        "logins": {**summary_ms(ok), "ok_per_s": round(len(ok) / wall, 1)},
        "statuses": dict(out["statuses"]),
        "healthz_idle": summary_ms(idle),
        "healthz_during_logins": summary_ms(loaded),
        "wall_s": round(wall, 1),
        "setup": {"accounts": len(accounts), "register_s": round(setup_s, 1)},
    }


def conditions(args: argparse.Namespace, base: str) -> dict[str, Any]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("RAYMALL_") and not k.endswith("_PASSWORD") and "SECRET" not in k
    }
    return {
        "url": base,
        "started_app": args.url is None,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "probe_every_ms": args.probe_ms,
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "python": platform.python_version(),
        "raymall_env": env,
        "note": "hasher, hash threads and replicas are the server's RAYMALL_* settings "
        "(defaults: RAYMALL_PASSWORD_HASHER=argon2id with 19456 KiB and 2 passes, "
        "RAYMALL_PASSWORD_HASH_THREADS=2, RAYMALL_INGRESS_REPLICAS=2)",
    }


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url.rstrip("/")
        return
    from _harness import raymall_server

    passthrough = {k: v for k, v in os.environ.items() if k.startswith("RAYMALL_")}
    passthrough.pop("RAYMALL_VAR_DIR", None)
    passthrough.pop("RAYMALL_HTTP_PORT", None)
    with raymall_server(passthrough) as base:
        yield base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running raymall (default: start one)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--idle-seconds", type=float, default=3)
    parser.add_argument("--probe-ms", type=float, default=50)
    parser.add_argument("--out", help="also write the JSON report to this file")
    args = parser.parse_args()
    if not 1 <= args.concurrency <= 512 or not 1 <= args.seconds <= 300:
        parser.error("concurrency must be 1-512 and seconds 1-300")
    with server(args.url) as base:
        cond = conditions(args, base)
        result = asyncio.run(run(base, args))
    report = {"conditions": cond, "result": result}
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    lg, idle, busy = result["logins"], result["healthz_idle"], result["healthz_during_logins"]
    print(
        f"\nlogins: {lg['ok_per_s']} /s, p50 {lg['p50_ms']} ms, p99 {lg['p99_ms']} ms "
        f"({args.concurrency} concurrent, {result['wall_s']} s) | /healthz idle p50 "
        f"{idle['p50_ms']} / p99 {idle['p99_ms']} ms, during logins p50 {busy['p50_ms']} / "
        f"p99 {busy['p99_ms']} ms / max {busy['max_ms']} ms"
    )


if __name__ == "__main__":
    main()
