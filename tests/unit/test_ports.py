"""Each instance's port block: Ray's port settings come from it, and a block another
process listens in (even with SO_REUSEPORT, as HAProxy and Serve replicas bind) is refused
before Ray starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from raymall import ports
from raymall.launcher.app import ray_env
from raymall.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def listener(port: int, reuse_port: bool) -> Iterator[None]:
    s = socket.socket()
    if reuse_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    try:
        yield
    finally:
        s.close()


def test_ray_port_settings_are_offsets_of_the_http_port_and_match_rays_defaults_at_8000() -> None:
    env = ports.ray_port_env(8000)
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == "8404"
    assert env["RAY_SERVE_HAPROXY_METRICS_PORT"] == "9101"
    assert env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"] == "8500"
    assert env["RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"] == "9500"
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] == "8600"
    assert env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] == "8663"
    block = ports.block(8000)
    assert block[0] == 8000 and block[-1] == 8000 + ports.SPAN - 1
    every = {int(v) for v in env.values()}
    assert every <= set(block)
    # the app's Ray environment carries them
    app_env = ray_env(Settings(http_port=21000, var_dir=Path("/tmp/x")))
    assert app_env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] == "21600"


def test_two_blocks_from_find_free_block_never_overlap_a_listening_one() -> None:
    first = ports.find_free_block()
    with listener(first + ports.REPLICA_HTTP + 3, reuse_port=True):
        assert ports.taken("127.0.0.1", ports.block(first)) == [first + ports.REPLICA_HTTP + 3]
        for _ in range(10):
            other = ports.find_free_block()
            assert other != first
            assert not set(ports.block(other)) & set(ports.block(first))


@pytest.mark.parametrize("reuse_port", [False, True])
def test_check_free_refuses_a_block_with_a_listener(reuse_port: bool) -> None:
    base = ports.find_free_block()
    ports.check_free("127.0.0.1", base)  # free: no error
    with listener(base + ports.FALLBACK_HTTP, reuse_port), pytest.raises(ports.PortsInUse) as err:
        ports.check_free("127.0.0.1", base)
    assert str(base + ports.FALLBACK_HTTP) in str(err.value)


def test_http_port_beyond_the_last_whole_block_is_a_config_error() -> None:
    Settings(http_port=ports.MAX_HTTP_PORT)
    with pytest.raises(ValueError):
        Settings(http_port=ports.MAX_HTTP_PORT + 1)


def test_serve_on_a_taken_port_exits_with_a_clear_message_before_starting_ray(
    tmp_path: Path,
) -> None:
    base = ports.find_free_block()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYMALL_")}
    env.update(RAYMALL_VAR_DIR=str(tmp_path), RAYMALL_HTTP_PORT=str(base), RAYMALL_ENV="dev")
    with listener(base, reuse_port=True):
        proc = subprocess.run(
            [sys.executable, "-m", "raymall", "serve"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"port(s) {base} of the block" in proc.stderr
    assert not (tmp_path / "runtime.json").exists()
