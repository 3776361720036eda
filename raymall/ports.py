"""The TCP ports one raymall instance listens on, all derived from its HTTP port.

Ray Serve's defaults are fixed numbers: the fallback proxy on 8500, replicas' direct
ingress from 30000, HAProxy stats on 8404. Ray allocates them in memory, per cluster,
without asking the operating system, and HAProxy and the replicas bind with
``SO_REUSEPORT``. So two instances on one machine would bind the same ports without an
error, and the kernel would hand each one's requests to the other's replicas. raymall
therefore gives each instance its own block, ``http_port`` to ``http_port + SPAN - 1``:

==================  ==============================  ================================
offset              what                            for the default port 8000
==================  ==============================  ================================
0                   HAProxy (the public HTTP port)  8000
404                 HAProxy stats                   8404 (Ray's default)
500                 Serve's fallback HTTP proxy     8500 (Ray's default)
600 to 663          replicas' HTTP (direct ingress) 8600-8663
700 to 763          replicas' gRPC (direct ingress) 8700-8763
1101                HAProxy metrics                 9101 (Ray's default)
1500                Serve's fallback gRPC proxy     9500 (Ray's default)
==================  ==============================  ================================

``ray_port_env`` is exported before Ray starts, so every Ray process of a local instance
reads it. ``check_free`` runs first and refuses to start an instance whose ports another
process holds.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable

HAPROXY_STATS = 404
FALLBACK_HTTP = 500
REPLICA_HTTP = 600
REPLICA_GRPC = 700
REPLICA_SLOTS = 64
HAPROXY_METRICS = 1101
FALLBACK_GRPC = 1500
SPAN = FALLBACK_GRPC + 1
MAX_HTTP_PORT = 65_535 - FALLBACK_GRPC


class PortsInUse(RuntimeError):
    """Another process listens on a port of this instance's block."""


def ray_port_env(http_port: int) -> dict[str, str]:
    """Ray Serve's port settings for the instance on ``http_port``."""
    p = http_port
    return {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(p + HAPROXY_STATS),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(p + HAPROXY_METRICS),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(p + FALLBACK_HTTP),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(p + FALLBACK_GRPC),
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(p + REPLICA_HTTP),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(p + REPLICA_HTTP + REPLICA_SLOTS - 1),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(p + REPLICA_GRPC),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(p + REPLICA_GRPC + REPLICA_SLOTS - 1),
    }


def block(http_port: int) -> list[int]:
    """Every port the instance on ``http_port`` may listen on."""
    p = http_port
    out = [p, p + HAPROXY_STATS, p + FALLBACK_HTTP, p + HAPROXY_METRICS, p + FALLBACK_GRPC]
    out += range(p + REPLICA_HTTP, p + REPLICA_HTTP + REPLICA_SLOTS)
    out += range(p + REPLICA_GRPC, p + REPLICA_GRPC + REPLICA_SLOTS)
    return sorted(out)


def taken(host: str, ports: Iterable[int]) -> list[int]:
    """The ports among ``ports`` that cannot be bound on ``host`` because a socket listens
    there (``SO_REUSEADDR`` is set, so connections lingering in TIME_WAIT do not count)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    out = []
    for port in ports:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                out.append(port)
    return out


def check_free(host: str, http_port: int) -> None:
    """Raise ``PortsInUse`` if any port of the block is held: an instance must not share
    its ports with another one, which ``SO_REUSEPORT`` would otherwise allow silently."""
    everywhere = "0.0.0.0"  # noqa: S104 - a test bind, closed at once
    held = taken(everywhere if host in ("", everywhere) else host, block(http_port))
    if held:
        shown = ", ".join(map(str, held[:8])) + (" ..." if len(held) > 8 else "")
        raise PortsInUse(
            f"port(s) {shown} of the block {http_port}-{http_port + SPAN - 1} that this "
            "instance listens on are in use (another raymall or Ray Serve instance?); "
            "stop it or choose another RAYMALL_HTTP_PORT"
        )


def find_free_block(low: int = 20_000, high: int = 32_768) -> int:
    """An HTTP port whose whole block is free, from aligned slots between ``low`` and
    ``high`` (below Linux's ephemeral range by default) tried in random order: instances
    started this way never get overlapping blocks."""
    width = SPAN + (-SPAN % 256)  # slots on a 256 grid
    slots = list(range(low, high - SPAN + 1, width))
    random.SystemRandom().shuffle(slots)
    for base in slots:
        if not taken("127.0.0.1", block(base)):
            return base
    raise PortsInUse(f"no free block of {SPAN} ports between {low} and {high}")
