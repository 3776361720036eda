"""Changing the shard counts: a stop-the-world hand-over from the old owners to the new.

``reshard_app(app, inventory_shards=N, order_shards=M)`` does it for an app this process
runs (``raymall.launcher.app.start``), in this order:

1. **drain**: the drain flag turns new requests away with 503 + ``Retry-After`` (retriable,
   with the same ``Idempotency-Key``) while those in flight finish; then the Serve app is
   deleted, so no replica routing by the old counts is left;
2. **stop the old owners**: every inventory shard, order shard and the outbox relay (its
   consumers route by the counts too) drains its queued operations, is killed, and its
   name is awaited free. Nothing owns any SKU or user from here on;
3. **re-own** the database in one transaction (``actors.reshard.reown``): inventory rows,
   the per-shard keys of reservations, flash holds and purchases, and ``orders.shard``;
4. **start the new owners** with the new counts (each loads what it owns, as after a
   crash), then the Serve app, and clear the drain flag.

So no SKU or user ever has two owners, and every acknowledged operation is in the
database before its owner stops. ``raymall reshard`` (``run_offline``) is steps 3 for a
stopped instance; the next ``raymall serve`` with the new ``RAYMALL_INVENTORY_SHARDS`` /
``RAYMALL_ORDER_SHARDS`` is step 4, and ``actors.reshard.check_layout`` refuses to start an
app whose counts do not match how the database is laid out (shards would find no stock of
their own).
"""

from __future__ import annotations

import os
import time
from typing import Any

from actors import registry
from actors.reshard import Layout, Report, layout_of, problems, reown
from raymall.db import make_engine
from raymall.launcher import app as app_mod
from raymall.logs import get_logger
from raymall.settings import ConfigError, Settings

log = get_logger("reshard")
# the actors whose work depends on the shard counts (the recommender's does not)
OWNER_KINDS = ("inventory", "order", "outbox-relay")
STOP_WAIT_S = 60.0


def reown_database(settings: Settings, layout: Layout) -> Report:
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        report = reown(engine, layout)
    finally:
        engine.dispose()
    log.info("re-owned the database", extra=report.as_dict())
    return report


def reshard_app(app: Any, *, inventory_shards: int, order_shards: int) -> Report:
    """Stop-the-world reshard of ``app`` (a ``RunningApp`` of this process; see the module
    docstring). ``app.settings`` and ``app.actors`` are updated in place."""
    from ray import serve

    from deployments.drain import set_draining

    old: Settings = app.settings
    new = old.model_copy(
        update={"inventory_shards": inventory_shards, "order_shards": order_shards}
    )
    started = time.monotonic()
    set_draining(old, True)
    time.sleep(app_mod.DRAIN_GRACE_S)
    serve.delete(app_mod.APP_NAME)
    registry.stop_all(old, kinds=OWNER_KINDS, wait_s=STOP_WAIT_S)
    try:
        report = reown_database(old, layout_of(new))
    except BaseException:  # one transaction: the old layout is whole, so serve it again
        log.exception("re-owning failed; starting again with the old counts")
        _start(app, old)
        raise
    _start(app, new)
    app_mod.write_runtime_file(app)
    log.info(
        "resharded to %s inventory and %s order shards in %.1f s",
        inventory_shards,
        order_shards,
        time.monotonic() - started,
    )
    return report


def _start(app: Any, settings: Settings) -> None:
    """Start the owners and the Serve app for ``settings`` and clear the drain flag."""
    from ray import serve

    from deployments.drain import set_draining

    app.actors = registry.launch_all(settings)
    # no replica of the old app is left: new replicas must not start out draining
    set_draining(settings, False)
    serve.run(
        app_mod.application(settings),
        name=app_mod.APP_NAME,
        route_prefix="/",
        logging_config=app_mod.app_logging(settings),
    )
    app.settings = settings


def instance_running(settings: Settings) -> str | None:
    """Why the instance of ``settings`` looks alive (its runtime file names a live
    process), or None."""
    import json

    path = app_mod.runtime_file(settings)
    if not path.exists():
        return None
    try:
        pid = int(json.loads(path.read_text())["pid"])
        os.kill(pid, 0)
    except (ValueError, KeyError, ProcessLookupError, json.JSONDecodeError):
        return None
    except PermissionError:
        pass
    return f"raymall serve (pid {pid}) is running ({path})"


def live_owners(settings: Settings, address: str) -> list[str]:
    """Shard actors alive in the instance's namespace on the Ray cluster at ``address``."""
    import ray

    ray.init(address=address, namespace=settings.namespace, log_to_driver=False)
    try:
        return registry.running_names(settings, OWNER_KINDS)
    finally:
        ray.shutdown()


def run_offline(
    settings: Settings, layout: Layout, *, address: str | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """``raymall reshard``: re-own the database of a stopped instance for ``layout``."""
    busy = instance_running(settings)
    if busy is None and address:
        owners = live_owners(settings, address)
        busy = f"shard actors are alive: {', '.join(owners)}" if owners else None
    if busy is not None:
        raise ConfigError(f"{busy}; stop it first (a reshard needs every old owner gone)")
    engine = make_engine(settings.resolved_database_url, pool_size=1)
    try:
        if dry_run:
            return {
                "dry_run": True,
                "now": problems(engine, layout_of(settings)) or "laid out for the settings",
                "target": problems(engine, layout) or "already laid out for the target",
            }
        report = reown(engine, layout).as_dict()
    finally:
        engine.dispose()
    report["next"] = (
        f"start raymall serve with RAYMALL_INVENTORY_SHARDS={layout.inventory_shards} "
        f"RAYMALL_ORDER_SHARDS={layout.order_shards}"
    )
    return report
