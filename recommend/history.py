"""What a signed-in user did, as kept in Redis, for ``GET /recommendations/me``.

- ``views:{user_id}``: a capped list of recent product views, newest first, each entry
  ``"<product_id>:<epoch ms>"``. Written by ``record_view`` (the recommender's routes call
  it when a signed-in user opens similar products or posts ``/me/views``; any other route,
  such as the catalog's product detail, may call it too). Kept at most
  ``recommender_views_kept`` entries, and expires after ``VIEWS_TTL_S`` of inactivity.
- ``cart:{user_id}``: the cart hash (SKU id -> quantity) owned by the cart area; read only.

Orders come from the database (``recommend.source.ordered_products``).
"""

from __future__ import annotations

from typing import Any

from recommend.ranking import Signal

VIEWS_TTL_S = 90 * 86_400


def views_key(user_id: int) -> str:
    return f"views:{user_id}"


def cart_key(user_id: int) -> str:
    return f"cart:{user_id}"


async def record_view(redis: Any, user_id: int, product_id: int, at_ms: int, keep: int) -> None:
    """Push one view; the list never grows past ``keep`` entries."""
    key = views_key(user_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(key, f"{int(product_id)}:{int(at_ms)}")
        pipe.ltrim(key, 0, keep - 1)
        pipe.expire(key, VIEWS_TTL_S)
        await pipe.execute()


def parse_views(entries: list[str]) -> list[tuple[int, int]]:
    """(product_id, at_ms) of well-formed entries; anything else is skipped."""
    out = []
    for entry in entries:
        pid, _, ms = str(entry).partition(":")
        if pid.isdigit() and ms.isdigit():
            out.append((int(pid), int(ms)))
    return out


async def read_views(redis: Any, user_id: int, keep: int) -> list[tuple[int, int]]:
    return parse_views(await redis.lrange(views_key(user_id), 0, keep - 1))


async def read_cart(redis: Any, user_id: int) -> list[str]:
    """The SKUs in the user's cart (field names of the cart hash)."""
    return [str(f) for f in await redis.hkeys(cart_key(user_id))]


def signals(
    ordered: list[tuple[int, int]],
    carted: list[int],
    viewed: list[tuple[int, int]],
    now_ms: int,
) -> list[Signal]:
    """Every interaction as a Signal; a cart has no timestamps, so its lines count as now."""
    out = [Signal(pid, "ordered", ms) for pid, ms in ordered]
    out += [Signal(pid, "carted", now_ms) for pid in carted]
    out += [Signal(pid, "viewed", ms) for pid, ms in viewed]
    return out
