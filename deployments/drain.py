"""Draining for a graceful shutdown.

``raymall serve`` sets a drain flag in Redis when it receives SIGINT/SIGTERM. Every replica
polls the flag (an EXISTS every ``POLL_S``, never on the request path) and, once it is set,
the edge answers new requests with 503 ``unavailable`` + ``Retry-After`` while requests
already in flight complete. Only then is the app deleted, so no client sees a half-torn-down
app: ``raymall.launcher.app.stop`` waits ``DRAIN_GRACE_S`` (at least twice ``POLL_S``, a unit test
checks it) after raising the flag.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from raymall.logs import get_logger
from raymall.settings import Settings

POLL_S = 0.5  # an idle replica's only Redis traffic; see DRAIN_GRACE_S
log = get_logger("drain")


def drain_key(settings: Settings) -> str:
    return f"raymall:{settings.namespace}:draining"


class DrainWatch:
    def __init__(self, redis: Any, key: str) -> None:
        self.redis, self.key = redis, key
        self.draining = False
        self._task: asyncio.Task[None] | None = None

    def is_draining(self) -> bool:
        return self.draining

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # Redis down: keep the last known state
                self.draining = bool(await self.redis.exists(self.key))
            await asyncio.sleep(POLL_S)


def set_draining(settings: Settings, on: bool) -> None:
    """Raise (or clear) the flag; a failure is logged, and shutdown goes on without it."""
    import redis

    assert settings.redis_url
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
        if on:
            client.set(drain_key(settings), "1", ex=600)
        else:
            client.delete(drain_key(settings))
        client.close()
    except Exception:  # shutdown must proceed even when Redis is gone
        log.warning("could not %s the drain flag", "set" if on else "clear", exc_info=True)
