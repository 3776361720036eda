"""Shared fixtures.

- ``mysql_url`` / ``redis_url``: a fresh database and a private Redis db index on the
  servers named by RAYMALL_TEST_DATABASE_URL / RAYMALL_TEST_REDIS_URL (skipped if unset).
- ``sqlite_url``: a fresh migrated SQLite file.
- ``ray_session``: one Ray instance per test session, with raymall's environment.
- ``app`` / ``client``: the real Serve app, once per session, on the servers when they are
  configured and on the embedded stores otherwise.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from raymall.bootstrap import ensure_reference_data
from raymall.launcher.migrate import upgrade
from raymall.launcher.scratch import make_mysql_database, private_redis_db
from raymall.ports import find_free_block
from raymall.settings import Settings

SERVER_DB = os.environ.get("RAYMALL_TEST_DATABASE_URL")
SERVER_REDIS = os.environ.get("RAYMALL_TEST_REDIS_URL")
needs_servers = pytest.mark.skipif(
    not (SERVER_DB and SERVER_REDIS),
    reason="RAYMALL_TEST_DATABASE_URL / RAYMALL_TEST_REDIS_URL not set",
)


def free_port_block() -> int:
    """An HTTP port whose whole block (``raymall.ports``) is free."""
    return find_free_block()


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    if not SERVER_DB:
        pytest.skip("RAYMALL_TEST_DATABASE_URL not set")
    url, drop = make_mysql_database(SERVER_DB)
    yield url
    drop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not SERVER_REDIS:
        pytest.skip("RAYMALL_TEST_REDIS_URL not set")
    return private_redis_db(SERVER_REDIS)


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'raymall.db'}"
    upgrade(url)
    ensure_reference_data(Settings(database_url=url, redis_url="redis://unused"))
    return url


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One Ray instance for the session; yields the base settings the app will use."""
    import ray

    from raymall.launcher.app import init_ray, remove_haproxy_dir

    var_dir = tmp_path_factory.mktemp("var")
    overrides: dict[str, Any] = {
        "env": "test",
        "var_dir": var_dir,
        "namespace": f"raymall-test-{secrets.token_hex(3)}",
        "http_port": free_port_block(),
        "order_timeout_s": 8,
        "flash_order_timeout_s": 8,
        "inventory_shards": 4,
        "order_shards": 2,
        # the tests play the proxy in front: an X-Forwarded-For they send names the client
        # (tests/e2e/test_auth_attacks.py); without one the address stays unknown
        "trusted_proxy_hops": 1,
        "recommender": os.environ.get("RAYMALL_TEST_RECOMMENDER", "1") == "1",
        # tracing on, sampling nothing by itself: only requests that send a sampled
        # traceparent are traced (tests/e2e/test_observability.py reads var/traces/)
        "trace_file": True,
        "trace_sample_ratio": 0.0,
    }
    if SERVER_DB and SERVER_REDIS:
        db_url, drop = make_mysql_database(SERVER_DB)
        overrides["database_url"] = db_url
        overrides["redis_url"] = private_redis_db(SERVER_REDIS)
    else:
        drop = None
    settings = Settings(**overrides)
    init_ray(settings, num_cpus=2)
    yield settings
    ray.shutdown()
    remove_haproxy_dir(settings)
    if drop:
        drop()


@pytest.fixture(scope="session")
def app(ray_session: Settings) -> Iterator[Any]:
    from raymall.launcher import app as app_mod

    running = app_mod.start(ray_session)
    yield running
    app_mod.stop(running)


@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.url, timeout=30) as c:
        yield c
