"""The Redis cart: atomic adds under concurrency, limits, guest merge, ordered-line
removal."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from raymall.cart import CartLimits, CartOwner, CartStore, guest_key, user_key
from raymall.errors import CartLimitExceeded, NotFound
from tests.conftest import needs_servers

pytestmark = [pytest.mark.integration, needs_servers]


@pytest.fixture()
async def store(redis_url: str) -> AsyncIterator[CartStore]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield CartStore(client, CartLimits(max_qty=10, max_lines=3))
    await client.aclose()


def owner() -> CartOwner:
    uid = secrets.randbelow(10**9) + 10**9
    return CartOwner(user_key(uid), user_id=uid)


async def test_concurrent_adds_never_lose_an_update_nor_pass_the_line_maximum(
    store: CartStore,
) -> None:
    me = owner()
    results = await asyncio.gather(
        *(store.put(me, 7, 1, add=True) for _ in range(25)), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, CartLimitExceeded)]
    assert len(ok) == 10 and len(refused) == 15
    assert sorted(ok) == list(range(1, 11))
    assert await store.lines(me) == {7: 10}
    assert refused[0].details["max_quantity"] == 10


async def test_set_replaces_and_the_line_count_is_capped(store: CartStore) -> None:
    me = owner()
    await store.put(me, 1, 4, add=True)
    assert await store.put(me, 1, 2, add=False) == 2
    await store.put(me, 2, 1, add=True)
    await store.put(me, 3, 1, add=True)
    with pytest.raises(CartLimitExceeded) as err:
        await store.put(me, 4, 1, add=True)
    assert err.value.details == {"max_lines": 3}
    assert await store.put(me, 3, 9, add=False) == 9  # an existing line is not a new one
    with pytest.raises(CartLimitExceeded):
        await store.put(me, 3, 11, add=False)
    assert await store.lines(me) == {1: 2, 2: 1, 3: 9}


async def test_put_and_list_answers_the_lines_after_the_change_and_refuses_alike(
    store: CartStore,
) -> None:
    me = owner()
    assert await store.put_and_list(me, 5, 2, add=True) == {5: 2}
    assert await store.put_and_list(me, 6, 1, add=True) == {5: 2, 6: 1}
    assert await store.put_and_list(me, 5, 3, add=True) == {5: 5, 6: 1}
    assert await store.put_and_list(me, 5, 1, add=False) == {5: 1, 6: 1}
    await store.put(me, 7, 1, add=True)
    with pytest.raises(CartLimitExceeded) as err:
        await store.put_and_list(me, 8, 1, add=True)
    assert err.value.details == {"max_lines": 3}
    with pytest.raises(CartLimitExceeded) as err:
        await store.put_and_list(me, 6, 10, add=True)
    assert err.value.details == {"sku_id": 6, "max_quantity": 10, "in_cart": 1}
    assert await store.lines(me) == {5: 1, 6: 1, 7: 1}


async def test_the_user_cart_lives_at_cart_user_id_as_sku_to_quantity(store: CartStore) -> None:
    me = owner()
    await store.put(me, 42, 3, add=True)
    assert await store.redis.hgetall(f"cart:{me.user_id}") == {"42": "3"}
    assert await store.redis.ttl(f"cart:{me.user_id}") == -1


async def test_remove_and_clear(store: CartStore) -> None:
    me = owner()
    await store.put(me, 1, 1, add=True)
    await store.put(me, 2, 1, add=True)
    await store.remove(me, 1)
    with pytest.raises(NotFound):
        await store.remove(me, 1)
    await store.clear(me)
    assert await store.lines(me) == {}


async def test_merging_a_guest_cart_adds_caps_and_deletes_it(store: CartStore) -> None:
    me = owner()
    token = f"g.{secrets.token_urlsafe(18)}.0000000000000000"
    guest = CartOwner(guest_key(token), ttl_s=600)
    await store.put(guest, 1, 8, add=True)
    await store.put(guest, 2, 2, add=True)
    assert 0 < await store.redis.ttl(guest.key) <= 600
    await store.put(me, 1, 5, add=True)
    assert me.user_id is not None
    assert await store.merge_guest(token, me.user_id) == 2
    assert await store.lines(me) == {1: 10, 2: 2}  # 5 + 8 capped at 10
    assert not await store.redis.exists(guest.key)
    assert await store.merge_guest(token, me.user_id) == 0  # a second merge adds nothing
    assert await store.lines(me) == {1: 10, 2: 2}


async def test_merge_respects_the_line_limit(store: CartStore) -> None:
    me = owner()
    token = f"g.{secrets.token_urlsafe(18)}.0000000000000000"
    guest = CartOwner(guest_key(token), ttl_s=600)
    for sku in (1, 2, 3):
        await store.put(guest, sku, 1, add=True)
    await store.put(me, 9, 1, add=True)
    await store.put(me, 8, 1, add=True)
    assert me.user_id is not None
    await store.merge_guest(token, me.user_id)
    assert len(await store.lines(me)) == 3


async def test_ordered_quantities_leave_the_cart_but_later_additions_stay(
    store: CartStore,
) -> None:
    me = owner()
    await store.put(me, 1, 2, add=True)
    await store.put(me, 2, 5, add=True)
    await store.subtract(me, {1: 2, 2: 3})
    assert await store.lines(me) == {2: 2}
