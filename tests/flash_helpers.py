"""Flash-sale test helpers: many users at once, an asyncio load driver, database checks.

from tests.flash_helpers import bulk_users, drive, check_sale
users = bulk_users(shop, 10_000)            # [(user_id, bearer token)], no password hashing
outcomes = asyncio.run(drive(url, jobs, concurrency=64))
check_sale(shop, sale_id, sku)              # oversell or an orphan order fails the test
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text

from raymall.ids import now_ms
from raymall.launcher.shop import add_users
from tests.order_helpers import Shop


def bulk_users(shop: Shop, count: int) -> list[tuple[int, str]]:
    """``count`` users in one multi-row insert (one unusable password hash: they never sign
    in) with access tokens minted by the auth code's own codec."""
    tag = secrets.token_hex(4)
    with shop.engine.begin() as conn:
        ids = add_users(conn, count, tag=f"f{tag}")
    codec = shop.codec()
    return [(uid, codec.issue_access(uid, "user", f"fam-{tag}-{uid}")[0]) for uid in ids]


@dataclass
class Job:
    user_id: int
    token: str
    key: str


@dataclass
class Outcome:
    job: Job
    status: int
    body: dict[str, Any]
    tries: int


async def drive(
    url: str,
    sale_id: int,
    jobs: list[Job],
    *,
    concurrency: int = 64,
    on_progress: Callable[[int], Any] | None = None,
    max_tries: int = 60,
) -> list[Outcome]:
    """Send every job's purchase with ``concurrency`` workers (aiohttp: a client that costs
    far less CPU per request than the server, which shares the machine). A 503 is retried
    with the same Idempotency-Key (and a 429 after its Retry-After), as a client should."""
    import aiohttp

    queue = list(reversed(jobs))
    path = f"{url}/flash-sales/{sale_id}/purchase"
    out: list[Outcome] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while queue:
                job = queue.pop()
                headers = {"Authorization": f"Bearer {job.token}", "Idempotency-Key": job.key}
                tries = 0
                while True:
                    tries += 1
                    retry_after = 0.2 + random.random() * 0.3
                    try:
                        async with session.post(path, headers=headers) as resp:
                            status, body = resp.status, await resp.json()
                            retry_after = float(resp.headers.get("Retry-After", retry_after))
                    except (aiohttp.ClientError, TimeoutError):
                        status, body = 599, {}
                    if status in (429, 503, 599) and tries < max_tries:
                        await asyncio.sleep(retry_after)
                        continue
                    break
                out.append(Outcome(job, status, body, tries))
                if on_progress is not None:
                    await on_progress(len(out))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


def create_sale(
    client: httpx.Client,
    headers: dict[str, str],
    sku: int,
    *,
    quantity: int,
    price_cents: int = 999,
    per_user_limit: int = 1,
    starts_in_ms: int = -1_000,
    lasts_ms: int = 600_000,
    payment_timeout_s: int | None = None,
    require_token: bool = False,
) -> dict[str, Any]:
    now = now_ms()
    body = {
        "sku_id": sku,
        "price_cents": price_cents,
        "quantity": quantity,
        "starts_at_ms": now + starts_in_ms,
        "ends_at_ms": now + starts_in_ms + lasts_ms,
        "per_user_limit": per_user_limit,
        "title": "flash test",
    }
    if payment_timeout_s is not None:
        body["payment_timeout_s"] = payment_timeout_s
    if require_token:
        body["require_token"] = True
    resp = client.post("/admin/flash-sales", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def check_sale(shop: Shop, sale_id: int, sku: int) -> dict[str, int]:
    """Read in one snapshot and assert: every flash order has its purchase record and vice
    versa, no user over the limit, live units within the quantity and equal to ``sold``, the
    hold holding the rest (while running), and conservation of the SKU (row and ledger)."""
    with shop.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin():
            q = lambda sql, **p: conn.execute(text(sql), {"s": sale_id, "k": sku, **p}).all()  # noqa: E731
            quantity, limit, sold, status, ends_ms = q(
                "SELECT quantity, per_user_limit, sold, status, ends_ms FROM flash_sales "
                "WHERE id = :s"
            )[0]
            orders = {int(r[0]): r for r in q(
                "SELECT id, user_id, kind, total_cents, status FROM orders "
                "WHERE flash_sale_id = :s"
            )}  # fmt: skip
            purchases = {int(r[0]): r for r in q(
                "SELECT order_id, user_id, quantity, status FROM flash_purchases "
                "WHERE sale_id = :s"
            )}  # fmt: skip
            over = q(
                "SELECT user_id FROM flash_purchases WHERE sale_id = :s AND status = 'reserved' "
                "GROUP BY user_id HAVING SUM(quantity) > :lim",
                lim=limit,
            )
            row = q("SELECT total, available, reserved, sold FROM inventory WHERE sku_id = :k")[0]
            ops = q(
                "SELECT `key`, state, items FROM inventory_ops WHERE kind = 'reserve' "
                "AND state IN ('reserved', 'confirmed') AND items LIKE :pat",
                pat=f'%"{sku}":%',
            )
    assert set(orders) == set(purchases), "an order without a purchase record, or vice versa"
    for oid, (_, uid, kind, _total, _st) in orders.items():
        assert kind == "flash" and int(purchases[oid][1]) == int(uid)
    assert not over, f"users over their limit: {over[:5]}"
    live = sum(int(p[2]) for p in purchases.values() if p[3] == "reserved")
    assert live == sold <= quantity, (live, sold, quantity)
    holds = {
        k: json.loads(i).get(str(sku), 0) for k, s, i in ops if k.startswith(f"flash:{sale_id}@")
    }
    if status != "ended" and ends_ms > now_ms():
        assert list(holds.values()) == [quantity - sold], (holds, quantity, sold)
    total, available, reserved, sku_sold = (int(x) for x in row)
    open_units = sum(json.loads(i).get(str(sku), 0) for _, s, i in ops if s == "reserved")
    sold_units = sum(json.loads(i).get(str(sku), 0) for _, s, i in ops if s == "confirmed")
    assert min(total, available, reserved, sku_sold) >= 0, row
    assert total == available + reserved + sku_sold, row
    assert reserved == open_units and sku_sold == sold_units, (row, open_units, sold_units)
    return {
        "orders": len(orders),
        "sold": int(sold),
        "live": live,
        "available": available,
        "reserved": reserved,
        "sku_sold": sku_sold,
    }


class ManualClock:
    """A monotonic clock (seconds) that moves only when a test sets ``t``: for the flash
    desk's and the replicas' sold-out leases."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t
