"""Draining for a graceful shutdown, and the run-time tracing ratio.

``raymall serve`` sets a drain flag in Redis when it receives SIGINT/SIGTERM. Every replica
polls the flag (``ReplicaWatch``: one MGET every ``POLL_S``, never on the request path) and,
once it is set, the edge answers new requests with 503 ``unavailable`` + ``Retry-After``
while requests already in flight complete. Only then is the app deleted, so no client sees
a half-torn-down app: ``raymall.launcher.app.stop`` waits ``DRAIN_GRACE_S`` (at least twice
``POLL_S``, a unit test checks it) after raising the flag.

The same poll reads the sampling ratio an operator set with ``PUT /admin/tracing``
(``deployments.tracing_routes``) and hands it to ``raymall.tracing.set_sample_ratio``, so
every replica samples at the new ratio within one poll, without a restart; no key means
the settings' ``trace_sample_ratio``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from raymall import tracing
from raymall.logs import get_logger
from raymall.settings import Settings

POLL_S = 0.5  # an idle replica's only Redis traffic; see DRAIN_GRACE_S
log = get_logger("drain")


def drain_key(settings: Settings) -> str:
    return f"raymall:{settings.namespace}:draining"


def trace_ratio_key(settings: Settings) -> str:
    return f"raymall:{settings.namespace}:trace_sample_ratio"


class ReplicaWatch:
    """The drain flag and the run-time sampling ratio, read together every ``POLL_S``."""

    def __init__(self, redis: Any, settings: Settings) -> None:
        self.redis = redis
        self.keys = (drain_key(settings), trace_ratio_key(settings))
        self.draining = False
        self._ratio: Any = None  # the key's last value as read
        self._task: asyncio.Task[None] | None = None

    def is_draining(self) -> bool:
        return self.draining

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # Redis down: keep the last known state
                await self.read()
            await asyncio.sleep(POLL_S)

    async def read(self) -> None:
        draining, ratio = await self.redis.mget(self.keys)
        self.draining = draining is not None
        if ratio != self._ratio:
            self._ratio = ratio
            tracing.set_sample_ratio(None if ratio is None else float(ratio))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


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
