"""``raymall status``: the resolved configuration (secrets masked) and whether each store
answers; with ``--address``, the Ray cluster's nodes and the Serve app's state."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text

from raymall.db import make_engine
from raymall.settings import Settings


def collect(settings: Settings, address: str | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {"env": settings.env, "var_dir": str(settings.var_dir.resolve())}
    report["database"] = _database(settings)
    report["redis"] = _redis(settings)
    report["milvus_uri"] = settings.resolved_milvus_uri
    if address:
        report["ray"] = _ray(settings, address)
    report["ok"] = all(part.get("ok", True) for part in report.values() if isinstance(part, dict))
    return report


def _database(settings: Settings) -> dict[str, Any]:
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            try:
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except Exception:  # table missing: not migrated yet
                revision = None
        return {"ok": True, "dialect": engine.dialect.name, "revision": revision}
    except Exception as exc:  # report, don't raise: status must always print
        return {"ok": False, "error": str(exc)[:200]}
    finally:
        engine.dispose()


def _redis(settings: Settings) -> dict[str, Any]:
    if settings.redis_url is None:
        return {"ok": True, "mode": "embedded (started by raymall serve)"}
    import redis

    try:
        redis.Redis.from_url(settings.redis_url, socket_timeout=2).ping()
        return {"ok": True, "mode": "server"}
    except Exception as exc:  # report, don't raise
        return {"ok": False, "error": str(exc)[:200]}


def _ray(settings: Settings, address: str) -> dict[str, Any]:
    import ray
    from ray import serve

    try:
        ray.init(address=address, namespace=settings.namespace, logging_level=logging.ERROR)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        apps = {name: str(app.status) for name, app in serve.status().applications.items()}
        return {"ok": True, "nodes": len(nodes), "applications": apps}
    except Exception as exc:  # report, don't raise
        return {"ok": False, "error": str(exc)[:200]}
    finally:
        ray.shutdown()
