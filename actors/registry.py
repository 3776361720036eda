"""Names and lifecycle of raymall's long-lived actors.

Every actor is named in the app's namespace, detached (so it outlives a driver that
reconnects to a cluster), and runs with ``max_restarts=-1``: a crashed actor is
restarted by Ray and rebuilds its state from the database. ``launch_all`` is idempotent
(``get_if_exists``), and ``stop_all`` asks each actor to drain before killing it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from raymall import tracing
from raymall.logs import get_logger
from raymall.settings import Settings

log = get_logger("actors")
_checked: dict[tuple[str, str], Any] = {}  # (namespace, name) -> handle, for check_all


@dataclass(frozen=True)
class ActorGroup:
    kind: str
    count: Callable[[Settings], int]
    cls: Callable[[], Any]  # returns the undecorated actor class (imported lazily)

    def name(self, index: int) -> str:
        return f"{self.kind}-{index}"

    def names(self, settings: Settings) -> list[str]:
        return [self.name(i) for i in range(self.count(settings))]


def _inventory_shard() -> Any:
    from actors.inventory_shard import InventoryShard

    return InventoryShard


def _order_shard() -> Any:
    from actors.order_shard import OrderShard

    return OrderShard


def _outbox_relay() -> Any:
    from actors.outbox_relay import OutboxRelay

    return OutboxRelay


def _recommender() -> Any:
    from recommend.actor import Recommender

    return Recommender


def _groups() -> list[ActorGroup]:
    groups: list[ActorGroup] = [
        ActorGroup("inventory", lambda s: s.inventory_shards, _inventory_shard),
        ActorGroup("order", lambda s: s.order_shards, _order_shard),
        ActorGroup("outbox-relay", lambda s: 1, _outbox_relay),
        ActorGroup("recommender", lambda s: 1 if s.recommender else 0, _recommender),
    ]
    return groups


def actor_options(settings: Settings, name: str, **extra: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "name": name,
        "namespace": settings.namespace,
        "lifetime": "detached",
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": 0,
        "num_cpus": settings.actor_num_cpus,
        "max_concurrency": 1000,
        # shards of one kind land on different nodes when the cluster has several
        "scheduling_strategy": "SPREAD",
    }
    opts.update(extra)
    return opts


def launch_all(settings: Settings) -> dict[str, Any]:
    """Create (or find) every actor and wait until each answers ``check_alive``."""
    handles: dict[str, Any] = {}
    for group in _groups():
        # each actor configures tracing for its process and answers traced_call
        cls = ray.remote(tracing.traced_actor(group.cls(), group.kind))
        for index in range(group.count(settings)):
            name = group.name(index)
            handles[name] = cls.options(**actor_options(settings, name)).remote(settings, index)
    if handles:
        ray.get([h.check_alive.remote() for h in handles.values()], timeout=300)
    return handles


def expected_names(settings: Settings) -> list[str]:
    return [n for g in _groups() for n in g.names(settings)]


def get(settings: Settings, name: str) -> Any:
    return ray.get_actor(name, namespace=settings.namespace)


async def check_all(settings: Settings, kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Readiness: every expected actor (of the given kinds, or all) is found by name and
    answers ``check_alive`` within ``settings.readiness_timeout_s``.

    A name is looked up once and its handle kept (``_checked``): a restarted actor keeps
    its handle, and a lookup asks the GCS from a worker thread, which a burst of probes
    would queue behind each other. A handle that fails is forgotten, so the next check
    looks the name up again, at once if the actor behind it is gone for good (one may
    have been created anew under the name)."""

    async def alive(name: str) -> None:
        key = (settings.namespace, name)
        kept: Any = _checked.get(key)
        if kept is not None:
            try:
                await kept.check_alive.remote()
                return
            except ray.exceptions.RayActorError:  # gone for good: is there a new one?
                _checked.pop(key, None)
        # the name lookup asks the GCS: off the event loop of the replica serving /readyz
        handle = await asyncio.to_thread(get, settings, name)
        _checked[key] = handle
        await handle.check_alive.remote()

    async def one(name: str) -> tuple[str, bool]:
        try:
            await asyncio.wait_for(alive(name), settings.readiness_timeout_s)
            return name, True
        except Exception:  # missing, dead or restarting: not ready
            _checked.pop((settings.namespace, name), None)
            return name, False

    names = [n for g in _groups() if kinds is None or g.kind in kinds for n in g.names(settings)]
    results = dict(await asyncio.gather(*(one(n) for n in names)))
    down = sorted(n for n, ok in results.items() if not ok)
    return {"ok": not down, "actors": len(results), "down": down}


def running_names(settings: Settings, kinds: tuple[str, ...] | None = None) -> list[str]:
    """Names of this app's live named actors (of the given kinds, or all), whatever shard
    counts they were started with: an instance launched before a reshard is found too."""
    groups = [g for g in _groups() if kinds is None or g.kind in kinds]
    out = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] != settings.namespace:
            continue
        name = entry["name"]
        kind, _, index = name.rpartition("-")
        if index.isdigit() and any(g.kind == kind for g in groups):
            out.append(name)
    return sorted(out)


def stop_all(
    settings: Settings,
    drain_timeout_s: float = 10.0,
    kinds: tuple[str, ...] | None = None,
    wait_s: float = 0.0,
) -> None:
    """Drain (flush pending batches) and kill every actor this app runs (of the given
    kinds, or all), as launched with any shard counts. With ``wait_s``, wait until their
    names are free (a new actor of the same name then is a new one: the resharding
    stop-the-world needs every old owner gone before the new ones load)."""
    handles = []
    for name in sorted({*running_names(settings, kinds), *_expected(settings, kinds)}):
        try:
            handles.append((name, get(settings, name)))
        except ValueError:
            continue
    drains = [h.drain.remote() for _, h in handles if hasattr(h, "drain")]
    if drains:
        try:
            ray.get(drains, timeout=drain_timeout_s)
        except Exception:  # report and go on killing: shutdown must finish
            log.warning("some actors did not drain in time", exc_info=True)
    for name, handle in handles:
        ray.kill(handle, no_restart=True)
        log.info("stopped actor %s", name)
    if wait_s > 0:
        wait_gone(settings, [name for name, _ in handles], wait_s)


def _expected(settings: Settings, kinds: tuple[str, ...] | None) -> list[str]:
    return [n for g in _groups() if kinds is None or g.kind in kinds for n in g.names(settings)]


def wait_gone(settings: Settings, names: list[str], timeout_s: float) -> None:
    """Wait until none of ``names`` is a live actor; TimeoutError if one still is."""
    deadline = time.monotonic() + timeout_s
    left = list(names)
    while True:
        left = [name for name in left if _named(settings, name)]
        if not left:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"actors still alive after {timeout_s:g}s: {left}")
        time.sleep(0.1)


def _named(settings: Settings, name: str) -> bool:
    """Whether a live actor holds ``name`` (Ray frees a name when its actor is dead)."""
    try:
        get(settings, name)
    except ValueError:
        return False
    return True
