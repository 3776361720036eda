"""Peer (b): a Lua script pre-decrements a Redis counter and pushes the operation onto a
list that a consumer would persist later (the ack comes before anything is durable)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import redis

from peers.common import RoundResult, run_threads

SCRIPT = """
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
local qty = tonumber(ARGV[1])
if stock < qty then return 0 end
redis.call('DECRBY', KEYS[1], qty)
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
"""


def setup(redis_url: str, prefix: str, stock: int) -> tuple[str, str]:
    r = redis.Redis.from_url(redis_url)
    stock_key, queue_key = f"{prefix}:stock", f"{prefix}:queue"
    r.set(stock_key, stock)
    r.delete(queue_key)
    r.close()
    return stock_key, queue_key


def cleanup(redis_url: str, prefix: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.delete(f"{prefix}:stock", f"{prefix}:queue")
    r.close()


def run(redis_url: str, prefix: str, sku_id: int, level: int, seconds: float) -> RoundResult:
    stock_key, queue_key = f"{prefix}:stock", f"{prefix}:queue"
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=level + 4)
    client = redis.Redis(connection_pool=pool)
    script = client.register_script(SCRIPT)
    tag = secrets.token_hex(3)

    def make_worker(index: int) -> Callable[[int], bool]:
        client.ping()  # open this thread's connection before the clock starts

        def attempt(n: int) -> bool:
            payload = f"pb-{tag}-{index}-{n}:{sku_id}:1:{int(time.time() * 1000)}"
            return bool(script(keys=[stock_key, queue_key], args=[1, payload]))

        return attempt

    try:
        return run_threads("redis_lua", level, seconds, make_worker, f"{level} threads")
    finally:
        client.delete(queue_key)  # the queue would be drained by a consumer
        pool.disconnect()
