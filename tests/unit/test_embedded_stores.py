"""The embedded Redis of ``make run`` stops at once (a stop of ``raymall serve`` waits on it)
and leaves neither its process nor its socket directory behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from raymall.stores import start_embedded_redis, stop_embedded_redis


def test_embedded_redis_stops_within_a_second_leaving_nothing_behind(tmp_path: Path) -> None:
    server = start_embedded_redis(tmp_path / "redis.db")
    server.set("k", "v")
    pid, redis_dir = server.pid, server.redis_dir
    assert psutil.pid_exists(pid) and os.path.isdir(redis_dir)
    started = time.monotonic()
    stop_embedded_redis(server)
    took = time.monotonic() - started
    assert took < 1.0, f"stopping the embedded redis took {took:.2f} s"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not os.path.exists(redis_dir)


def test_stopping_an_embedded_redis_that_is_already_gone_is_quiet(tmp_path: Path) -> None:
    server = start_embedded_redis(tmp_path / "redis.db")
    psutil.Process(server.pid).kill()
    psutil.Process(server.pid).wait(5)
    stop_embedded_redis(server)  # no error, nothing to wait for
