"""``raymall profile``: a flame graph of one running actor or Serve replica, by py-spy.

    raymall profile --actor inventory-0 --seconds 10          # a named actor
    raymall profile --replica 0 --seconds 10 --out r0.svg     # the first ingress replica

The process is found in Ray's actor table (by name, or the N-th live Serve replica by
name), then sampled with ``py-spy record --nonblocking`` (the target is never paused, so
this is safe on a live shop; it costs the target nothing but py-spy's own CPU) for the
given seconds, written as an SVG flame graph (or ``--format speedscope``/``raw``); a target
idle for the whole window is sampled again with its idle stacks, to show where it waits. py-spy
reads the process's memory, so it runs on the node that hosts the actor, as a user
allowed to ptrace it (root, or ``kernel.yama.ptrace_scope=0``); for an actor on another
node the command says which node to run it on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPLICA_PREFIX = "ServeReplica:"
INGRESS_REPLICA_CLASS = REPLICA_PREFIX + "raymall:Ingress"  # ServeReplica:<app>:<deployment>


class ProfileError(Exception):
    """The target cannot be profiled from here (not found, elsewhere, no py-spy)."""


@dataclass(frozen=True)
class Target:
    name: str
    pid: int
    node_id: str
    node_ip: str


def live_actors() -> list[dict[str, Any]]:
    """Ray's actor table (from the GCS: no dashboard needed), live actors only."""
    from ray._private import state

    table = state.actors()
    return [a for a in table.values() if a.get("State") == "ALIVE" and a.get("Pid")]


def find_target(
    actors: list[dict[str, Any]], *, actor: str | None = None, replica: int | None = None
) -> Target:
    """The actor named ``actor``, or the ``replica``-th live replica of the ingress by name
    (the payment provider's and the carrier's replicas are not the app's: not counted)."""
    if actor is not None:
        found = [a for a in actors if a.get("Name") == actor]
        if not found:
            names = sorted(a["Name"] for a in actors if a.get("Name"))
            raise ProfileError(f"no live actor named {actor!r}; live: {', '.join(names)}")
    else:
        replicas = sorted(
            (a for a in actors if str(a.get("ActorClassName", "")) == INGRESS_REPLICA_CLASS),
            key=lambda a: str(a.get("Name")),
        )
        index = replica or 0
        if index >= len(replicas):
            raise ProfileError(f"replica {index} not found: {len(replicas)} live replicas")
        found = [replicas[index]]
    info = found[0]
    address = info.get("Address") or {}
    return Target(
        name=str(info.get("Name") or info.get("ActorClassName")),
        pid=int(info["Pid"]),
        node_id=str(address.get("NodeID", "")),
        node_ip=str(address.get("IPAddress", "")),
    )


def py_spy() -> str:
    """The py-spy executable (installed with raymall, beside this Python)."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise ProfileError("py-spy is not installed: pip install py-spy")
    return found


IDLE_TARGET = "No stack counts found"


def record(target: Target, seconds: float, out: Path, fmt: str = "flamegraph") -> Path:
    """Sample ``target`` for ``seconds`` into ``out``; raise ProfileError if py-spy fails."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        py_spy(),
        "record",
        "--pid",
        str(target.pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "100",
        "--nonblocking",
        "--format",
        fmt,
        "--output",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)  # noqa: S603
    if done.returncode != 0 and IDLE_TARGET in done.stderr:
        # The target ran no Python for the whole window (an idle shard): py-spy drops idle
        # samples by default, so it had nothing to draw. Sample again with the idle stacks
        # kept, which shows where each thread waits.
        done = subprocess.run(  # noqa: S603
            [*cmd, "--idle"], capture_output=True, text=True, timeout=seconds + 60
        )
    if done.returncode != 0 or not out.exists():
        raise ProfileError(f"py-spy failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return out


def default_output(var_dir: Path, target: Target, fmt: str) -> Path:
    suffix = {"flamegraph": "svg", "speedscope": "json", "raw": "txt"}[fmt]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target.name)[:80]
    return var_dir / "profiles" / f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}.{suffix}"


def profile(
    *,
    address: str,
    namespace: str,
    var_dir: Path,
    actor: str | None,
    replica: int | None,
    seconds: float,
    out: Path | None,
    fmt: str = "flamegraph",
) -> tuple[Target, Path]:
    """Join the cluster at ``address``, find the target, record it; (target, output)."""
    import logging

    import ray

    ray.init(address=address, namespace=namespace, logging_level=logging.ERROR)
    try:
        target = find_target(live_actors(), actor=actor, replica=replica)
        here = ray.get_runtime_context().get_node_id()
        if target.node_id and target.node_id != here:
            raise ProfileError(
                f"{target.name} runs on node {target.node_ip} ({target.node_id[:12]}): "
                "run raymall profile there (py-spy reads the process's memory)"
            )
    finally:
        ray.shutdown()
    path = out or default_output(var_dir, target, fmt)
    return target, record(target, seconds, path, fmt)
