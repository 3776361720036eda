"""Shared bench helpers: start ``raymall serve`` as a user would, wait until it is ready,
run wrk, parse its output. Traffic goes only to 127.0.0.1 and every run is bounded."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from raymall.ports import find_free_block  # noqa: E402


def free_port() -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 60_000:
            return int(port)
    raise RuntimeError("no free port")


def raymall_env(var: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a raymall process of this bench: only our RAYMALL_* values."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAYMALL_")}
    full_env.update({"RAYMALL_VAR_DIR": str(var)})
    full_env.update(env or {})
    return full_env


def tree_env(tree: Path | None) -> dict[str, str]:
    """Environment that makes a Python process import raymall from ``tree`` (another
    checkout, e.g. a git worktree of an older commit) instead of this one; run it with
    ``cwd=tree`` too, since ``python -m`` puts the working directory first on sys.path."""
    if tree is None:
        return {}
    rest = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": str(tree) + (os.pathsep + rest if rest else "")}


@contextmanager
def raymall_server(
    env: dict[str, str] | None = None,
    timeout_s: float = 300,
    var: Path | None = None,
    tree: Path | None = None,
) -> Iterator[str]:
    """Run ``raymall serve`` (in ``var`` or a fresh var dir) from this checkout, or from
    ``tree``; yield its base URL; SIGINT it at the end."""
    owned = var is None
    var = var or Path(tempfile.mkdtemp(prefix="raymall-bench-"))
    port = find_free_block()  # the server's whole port block (raymall.ports) is free
    full_env = raymall_env(var, {"RAYMALL_HTTP_PORT": str(port), **tree_env(tree), **(env or {})})
    log = open(var / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "raymall", "serve", "--num-cpus", "2"],
        env=full_env,
        cwd=tree,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                tail = (var / "serve.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"raymall serve exited; the end of its log:\n{tail}")
            try:
                if (
                    httpx.get(base + "/readyz", timeout=5).status_code == 200
                    and (var / "runtime.json").exists()
                ):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("raymall serve did not become ready")
            time.sleep(1)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        if owned:
            shutil.rmtree(var, ignore_errors=True)


@contextmanager
def uvicorn_server(
    app: str, app_dir: Path, env: dict[str, str], probe: str = "/", timeout_s: float = 60
) -> Iterator[tuple[str, int]]:
    """Run ``uvicorn app`` as a peer is run: one worker, uvloop, httptools, no access log,
    on a free port. Ready once ``probe`` answers at all; yield (base URL, pid); SIGINT it
    at the end. Its output goes to a log file in the temp dir, named in any failure."""
    port = free_port()
    name = app.split(":")[0]
    log_path = Path(tempfile.gettempdir()) / f"peer_{name}_{os.getpid()}_{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    cmd = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning"]
    cmd += ["--no-access-log"]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited: see {log_path}")
            try:
                httpx.get(base + probe, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{app} did not answer: see {log_path}") from None
                time.sleep(0.1)
        yield base, proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(
    url: str,
    *,
    threads: int = 2,
    connections: int = 32,
    seconds: int = 20,
    script: str | None = None,
) -> dict[str, Any]:
    """Run wrk with --latency and return req/s, latency percentiles (ms) and errors."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    result: dict[str, Any] = {"raw": out}
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"(\d+) requests in", out)
    result["requests"] = int(m.group(1)) if m else 0
    return result


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")


def metric_samples(base: str, prefix: str = "raymall_") -> dict[tuple[str, str], float]:
    """The samples on the server's ``/metrics`` whose name starts with ``prefix``:
    (name, label text) -> value (subtract two reads for what happened between them)."""
    text = httpx.get(base + "/metrics", timeout=30).text
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found and found[1].startswith(prefix):
            out[(found[1], found[2] or "")] = float(found[3])
    return out


def metric_labels(text: str) -> dict[str, str]:
    """A sample's label text as a dict."""
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


def server_args(p: argparse.ArgumentParser) -> None:
    """The arguments of a bench that loads one ``raymall serve`` over its own MariaDB
    database and Redis db with wrk: users, connections, threads, stores, --json, --tree."""
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/")
    p.add_argument("--json", type=Path)
    p.add_argument("--tree", type=Path, help="run raymall from this checkout (default: this)")


def parse_server_args(p: argparse.ArgumentParser) -> argparse.Namespace:
    """``p``'s arguments (with ``server_args``), the tree resolved; stores other than this
    machine's are refused (a bench loads only 127.0.0.1)."""
    a = p.parse_args()
    a.tree = a.tree.resolve() if a.tree else None
    for url in (a.mysql, a.redis):
        if "127.0.0.1" not in url and "localhost" not in url:
            raise SystemExit("load only 127.0.0.1")
    return a
