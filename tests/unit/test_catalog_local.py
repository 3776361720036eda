"""A replica's in-process catalog copy: tokens against racing writes, the feed's state,
bounds; listing pages whose cards take ``in_stock`` per request."""

from __future__ import annotations

import json

from raymall.catalog.local_cache import LocalCatalog, PageParts, encode_ids


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(**kw: float) -> tuple[LocalCatalog, dict[str, bool], Clock]:
    state = {"up": True}
    clock = Clock()
    local = LocalCatalog(lambda: state["up"], clock=clock, **kw)  # type: ignore[arg-type]
    return local, state, clock


def test_a_fill_that_raced_a_write_is_not_kept() -> None:
    local, _, _ = make()
    token = local.doc_token(1)
    local.on_message(encode_ids([1]))  # the write's message lands during the fill
    local.put_doc(1, token, {"v": "old"})
    assert local.doc(1) is None
    token = local.doc_token(1)
    local.put_doc(1, token, {"v": "new"})
    assert local.doc(1) == {"v": "new"}
    local.on_message(encode_ids([2]))  # another product: this copy stays
    assert local.doc(1) == {"v": "new"}
    local.on_message(encode_ids([1]))  # a later write drops it
    assert local.doc(1) is None


async def test_a_disconnected_or_resynced_feed_invalidates_the_copy() -> None:
    local, state, _ = make()
    local.put_doc(1, local.doc_token(1), {"v": 1})
    page_token = local.page_token()
    local.put_page("k", page_token, "page")
    state["up"] = False
    assert local.doc(1) is None and local.page("k") is None
    token = local.doc_token(1)
    local.put_doc(1, token, {"v": 2})  # not kept while disconnected
    state["up"] = True
    await local.resync()
    assert local.doc(1) is None and local.page("k") is None
    local.put_doc(1, token, {"v": 3})  # a fill from before the resync
    assert local.doc(1) is None


def test_pages_drop_on_any_write_and_expire() -> None:
    local, _, clock = make(page_ttl_s=5.0, doc_ttl_s=60.0)
    token = local.page_token()
    local.put_page("k", token, "page")
    assert local.page("k") == "page"
    clock.t = 6.0
    assert local.page("k") is None
    token = local.page_token()
    local.on_message(encode_ids([]))  # a write touching no product still changes listings
    local.put_page("k", token, "page")
    assert local.page("k") is None
    local.on_message(b"not json")  # cannot tell what changed: everything did
    assert local.page_token() > token


def test_a_page_lives_no_longer_than_its_shared_copy_has_left() -> None:
    local, _, clock = make(page_ttl_s=30.0)
    local.put_page("short", local.page_token(), "page", 2.0)
    local.put_page("long", local.page_token(), "page", 300.0)  # capped at page_ttl_s
    local.put_page("plain", local.page_token(), "page")
    clock.t = 1.9
    assert local.page("short") == "page"
    clock.t = 2.1
    assert local.page("short") is None and local.page("long") == "page"
    clock.t = 30.1
    assert local.page("long") is None and local.page("plain") is None


def test_the_copy_is_bounded() -> None:
    local, _, _ = make(max_docs=2)
    for pid in (1, 2, 3):
        local.put_doc(pid, local.doc_token(pid), {"id": pid})
    assert local.doc(1) is None and local.doc(3) == {"id": 3}


def test_page_parts_render_the_page_with_live_stock_or_its_own() -> None:
    page = {
        "items": [
            {"id": 1, "title": "Ünïcode", "in_stock": True},
            {"id": 2, "title": "b", "in_stock": False},
            {"id": 3, "title": "c", "in_stock": True},
        ],
        "total": 3,
        "page": 1,
        "size": 20,
        "next_cursor": None,
        "_skus": [[10, 11], [20], []],
    }
    parts = PageParts(json.dumps(page))
    live = {(10, 11): False, (20,): None}
    body = json.loads(parts.render(lambda skus: live.get(skus)))
    assert [c["in_stock"] for c in body["items"]] == [False, False, True]
    assert body["items"][0]["title"] == "Ünïcode"
    del page["_skus"]
    assert json.loads(parts.render(lambda skus: None)) == page
    empty = PageParts(json.dumps({"items": [], "total": 0}))
    assert json.loads(empty.render(lambda skus: True)) == {"items": [], "total": 0}


async def test_with_redis_down_concurrent_reads_of_a_page_share_one_load() -> None:
    import asyncio

    from redis.exceptions import ConnectionError as RedisConnectionError

    from raymall.catalog.cache import ListingCache

    class DownRedis:
        def register_script(self, script: str) -> object:
            async def run(**kw: object) -> object:
                raise RedisConnectionError("down")

            return run

    cache = ListingCache(DownRedis(), ttl_s=30)
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return '{"items":[]}'

    pages = await asyncio.gather(*(cache.get({"page": 1}, load) for _ in range(20)))
    assert set(pages) == {'{"items":[]}'} and loads == 1
