"""The processes of one ``raymall serve`` by kind, with their CPU time and memory.

Shared by ``bench/capacity.py`` (CPU milliseconds per request by component) and
``bench/memory_footprint.py`` (resident memory per process kind). A process's kind comes
from what it runs (``ray::InventoryShard``, ``raylet``, ``haproxy``...), not from its pid,
so the figures of two runs compare by kind. Only /proc is read: CPU time is utime + stime
of /proc/<pid>/stat (live threads and reaped ones alike), memory is VmRSS and, where the
kernel has /proc/<pid>/smaps_rollup, the proportional set size (PSS: a page shared by n
processes counts 1/n in each, so PSS adds up to what the processes really hold).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = {"mariadbd": "mariadbd", "mysqld": "mariadbd", "redis-server": "redis-server"}
# Python processes of Ray's own, known by their script
RAY_SCRIPTS = {
    "dashboard/agent.py": "Ray dashboard agent",
    "runtime_env/agent/main.py": "Ray runtime-env agent",
    "log_monitor.py": "Ray log monitor",
    "autoscaler/_private/monitor.py": "Ray autoscaler monitor",
    "dashboard/dashboard.py": "Ray dashboard",
}
# Ray worker titles (``ray::<Class>`` or ``ray::<Class>.<method>`` while a call runs)
ACTOR_KINDS = {
    "ServeController": "Serve controller",
    "ProxyActor": "Serve proxy",
    "HAProxyManager": "Serve HAProxy manager",
    "InventoryShard": "inventory shard",
    "OrderShard": "order shard",
    "Recommender": "recommender",
    "OutboxRelay": "outbox relay",
    "IDLE": "Ray idle worker",
    "DashboardAgent": "Ray dashboard agent",
    "RuntimeEnvAgent": "Ray runtime-env agent",
}
DAEMONS = ("raylet", "gcs_server", "haproxy", "wrk")


def kind(proc: psutil.Process) -> str:
    """What a process is, e.g. ``Serve replica Ingress``, ``inventory shard``, ``raylet``."""
    try:
        name = proc.name()
        cmd = proc.cmdline()
    except psutil.Error:
        return "gone"
    if name in SERVERS:
        return SERVERS[name]
    first = cmd[0] if cmd else name
    if first.startswith("ray::"):
        title = first[len("ray::") :].split()[0]
        if title.startswith("ServeReplica:"):  # ServeReplica:<app>:<deployment>[.method]
            return "Serve replica " + title.split(":")[-1].split(".")[0]
        cls = title.split(".")[0]
        return ACTOR_KINDS.get(cls, "actor " + cls)
    if name in DAEMONS:
        return name
    script = " ".join(cmd[1:3])  # python [-u] <script>: not the flags naming other scripts
    for path, label in RAY_SCRIPTS.items():
        if path in script:
            return label
    if "raymall" in cmd and "serve" in cmd:
        return "raymall serve (driver)"
    return name


def tree(root: int) -> list[psutil.Process]:
    """``root`` and every process below it."""
    try:
        top = psutil.Process(root)
        return [top, *top.children(recursive=True)]
    except psutil.Error:
        return []


def servers() -> list[psutil.Process]:
    """The MariaDB and Redis servers of the machine (shared with anything else running)."""
    out = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in SERVERS:
            out.append(proc)
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])  # guest time is already in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def busy_cores(seconds: float) -> float:
    """The machine's busy cores over the next ``seconds`` (/proc/stat)."""
    busy0, total0 = machine_busy_seconds()
    time.sleep(seconds)
    busy1, total1 = machine_busy_seconds()
    return (busy1 - busy0) / max(1e-9, total1 - total0) * (os.cpu_count() or 1)


def settle(quiet_cores: float, most_s: float = 45.0) -> float:
    """Wait until the machine is back to idle (busy below ``quiet_cores`` over a second) or
    ``most_s`` has passed: a run of writes leaves the server's outbox relay and consumers
    working through its events for a while after the load stops, and that work must not
    land in the next measurement. Answers the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < most_s and busy_cores(1.0) >= quiet_cores:
        pass
    return time.monotonic() - started


@dataclass
class CpuSample:
    """CPU seconds per pid, with each pid's kind, at one moment."""

    seconds: dict[int, float]
    kinds: dict[int, str]
    busy: float
    total: float


def sample_cpu(procs: Iterable[psutil.Process]) -> CpuSample:
    seconds, kinds = {}, {}
    for proc in procs:
        seconds[proc.pid] = cpu_seconds(proc.pid)
        kinds[proc.pid] = kind(proc)
    busy, total = machine_busy_seconds()
    return CpuSample(seconds, kinds, busy, total)


def cpu_by_kind(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPU seconds spent between two samples, summed by kind. A process that started
    between them counts from 0; one that ended counts up to the first sample only."""
    out: dict[str, float] = defaultdict(float)
    for pid, sec in after.seconds.items():
        used = sec - before.seconds.get(pid, 0.0)
        if used > 0:
            out[after.kinds[pid]] += used
    return dict(out)


def memory_kb(pid: int) -> tuple[int, int | None]:
    """(RSS, PSS) of ``pid`` in KiB; PSS is None where smaps_rollup is missing."""
    rss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    except OSError:
        return 0, None
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return rss, int(line.split()[1])
    except OSError:
        pass
    return rss, None


def memory_by_kind(procs: Iterable[psutil.Process]) -> dict[str, dict[str, float]]:
    """Per kind: processes, RSS MiB and PSS MiB (summed over the kind's processes)."""
    out: dict[str, dict[str, float]] = {}
    for proc in procs:
        rss, pss = memory_kb(proc.pid)
        if not rss:
            continue
        row = out.setdefault(kind(proc), {"processes": 0, "rss_mb": 0.0, "pss_mb": 0.0})
        row["processes"] += 1
        row["rss_mb"] += rss / 1024
        row["pss_mb"] += (pss if pss is not None else rss) / 1024
    return out


def serve_pid(var: Path) -> int:
    """The pid of the ``raymall serve`` using ``var`` (the harness does not expose it)."""
    for line in subprocess.run(
        ["ps", "-eo", "pid=,args="], capture_output=True, text=True
    ).stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if "raymall serve" in args and int(pid) != os.getpid():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if f"RAYMALL_VAR_DIR={var}".encode() in environ.split(b"\0"):
                return int(pid)
    raise RuntimeError(f"no raymall serve with var dir {var}")
