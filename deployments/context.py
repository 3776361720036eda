"""Per-replica resources (settings, database, Redis), built once in the ingress constructor
from the resolved settings. The areas' services are built over them by
``deployments.services.build_services``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from raymall.db import make_engine, session_factory
from raymall.resp import RespClient
from raymall.settings import Settings

ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    redis: aioredis.Redis
    # the same Redis for hot, simple commands on the request path (see raymall.resp)
    hot_redis: RespClient

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        engine = make_engine(settings.resolved_database_url, pool_size=settings.db_pool_size)
        assert settings.redis_url, "settings must be resolved before building the context"
        # A blocking pool: past max_connections, commands wait for a free connection (up to
        # `timeout`) instead of failing with "Too many connections" under a burst.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=max(64, settings.max_ongoing_requests),
            timeout=5,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=15,
        )
        redis = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        return cls(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            redis=redis,
            hot_redis=RespClient(settings.redis_url, timeout_s=5, connect_timeout_s=2),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.hot_redis.aclose()
        self.engine.dispose()


def ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]
