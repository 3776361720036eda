"""Coupon test helpers: campaigns over HTTP, a claim storm driver, database checks.

from tests.coupon_helpers import create_campaign, claim_storm, check_campaign
campaign = create_campaign(client, admin.headers, total=500)
outcomes = asyncio.run(claim_storm(url, campaign["id"], jobs, concurrency=64))
check_campaign(shop, campaign["id"])      # over-claiming or a user over the limit fails
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx

from raymall.ids import now_ms
from tests.flash_helpers import Job, Outcome
from tests.order_helpers import Shop


def create_campaign(
    client: httpx.Client,
    headers: dict[str, str],
    *,
    total: int,
    per_user_limit: int = 1,
    rule: dict[str, Any] | None = None,
    scope: dict[str, Any] | None = None,
    starts_in_ms: int = -1_000,
    lasts_ms: int = 600_000,
    **extra: Any,
) -> dict[str, Any]:
    now = now_ms()
    body: dict[str, Any] = {
        "title": "coupon test",
        "rule": rule or {"kind": "amount_off", "amount_cents": 500},
        "total": total,
        "per_user_limit": per_user_limit,
        "claim_starts_at_ms": now + starts_in_ms,
        "claim_ends_at_ms": now + starts_in_ms + lasts_ms,
        "valid_days": 7,
        **extra,
    }
    if scope is not None:
        body["scope"] = scope
    resp = client.post("/admin/coupon-campaigns", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def claim_storm(
    url: str,
    campaign_id: int,
    jobs: list[Job],
    *,
    concurrency: int = 64,
    on_progress: Callable[[int], Any] | None = None,
    max_tries: int = 60,
) -> list[Outcome]:
    """Send every job's claim (its key as ``Idempotency-Key``) with ``concurrency``
    workers; a 503 is retried with the same key, as a client should."""
    import aiohttp

    queue = list(reversed(jobs))
    path = f"{url}/coupon-campaigns/{campaign_id}/claim"
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


def check_campaign(shop: Shop, campaign_id: int) -> dict[str, int]:
    """Read and assert: claims within the total and equal to ``claimed``, nobody over the
    limit, one ``coupon.claimed`` event per coupon."""
    total, claimed, limit = shop.rows(
        "SELECT total, claimed, per_user_limit FROM coupon_campaigns WHERE id = :c", c=campaign_id
    )[0]
    coupons = shop.scalar("SELECT COUNT(*) FROM user_coupons WHERE campaign_id = :c", c=campaign_id)
    over = shop.rows(
        "SELECT user_id FROM user_coupons WHERE campaign_id = :c GROUP BY user_id "
        "HAVING COUNT(*) > :lim",
        c=campaign_id,
        lim=limit,
    )
    events = shop.scalar(
        "SELECT COUNT(*) FROM outbox WHERE topic = 'coupon.claimed' AND aggregate_id IN "
        "(SELECT CAST(id AS CHAR) FROM user_coupons WHERE campaign_id = :c)",
        c=campaign_id,
    )
    assert not over, f"users over the limit: {over[:5]}"
    assert int(coupons) == int(claimed) <= int(total), (coupons, claimed, total)
    assert int(events) == int(coupons), (events, coupons)
    users = shop.scalar(
        "SELECT COUNT(DISTINCT user_id) FROM user_coupons WHERE campaign_id = :c", c=campaign_id
    )
    return {"coupons": int(coupons), "claimed": int(claimed), "users": int(users)}
