"""The app builder: resolve settings, prepare the stores, launch the actors, run Serve.

``start()`` expects Ray to be initialised (by ``raymall serve`` or by a test session) and
is idempotent; ``stop()`` drains and removes only what this app started.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import serve

from actors import registry
from actors.reshard import check_layout
from deployments.drain import set_draining
from raymall import logs, metrics, ports
from raymall.bootstrap import ensure_reference_data
from raymall.hashing import stable_hash
from raymall.launcher.migrate import upgrade
from raymall.logs import get_logger
from raymall.settings import Settings
from raymall.stores import EmbeddedStores, resolve

APP_NAME = "raymall"
DRAIN_GRACE_S = 1.0  # > the replicas' drain-flag poll interval
log = get_logger("app")


def haproxy_dir(settings: Settings) -> Path:
    """This instance's HAProxy files. HAProxy caps unix socket paths at 97 bytes and Ray
    nests a 56-character directory in this base, so it is a short per-instance directory
    under /tmp, made by ``prepare_environment`` (``init_ray``) and removed by
    ``remove_haproxy_dir`` once Ray is down."""
    var = Path(settings.var_dir).resolve()
    return Path(tempfile.gettempdir()) / f"raymall-hap-{stable_hash(str(var)) % 16**8:08x}"


def ray_env(settings: Settings) -> dict[str, str]:
    """Environment every Ray process of this app needs (set before ``ray.init``)."""
    var = Path(settings.var_dir).resolve()
    haproxy = haproxy_dir(settings)
    env = {
        metrics.MULTIPROC_ENV: str(var / "metrics"),
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1" if settings.ha_proxy else "0",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state"),
        **ports.ray_port_env(settings.http_port),
        "RAY_SERVE_HAPROXY_MAXCONN": "4096",
        # A replica being stopped stays reachable this long so that load balancers can
        # deregister it before it refuses connections (Serve's default: 30 s, which made
        # every stop of `raymall serve` wait 30 s). HAProxy here is told at once and
        # retries a refused connection on another replica; raymall's own drain flag
        # (``set_draining``) already turned new requests away before Serve is stopped.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": os.environ.get(
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2"
        ),
        "RAY_SERVE_HAPROXY_NBTHREAD": "2",
        # Serve's autoscaler counts requests in flight where deployment handles send them;
        # HAProxy sends them to the ingress replicas itself, so no handle sees them and an
        # autoscaled ingress would never grow. Replicas count their own instead.
        "RAY_SERVE_COLLECT_AUTOSCALING_METRICS_ON_HANDLE": os.environ.get(
            "RAY_SERVE_COLLECT_AUTOSCALING_METRICS_ON_HANDLE", "0"
        ),
        # Serve's own HTTP metrics: HAProxy writes a line per request to a socket that
        # the HAProxyManager actor parses in Python, which cost a quarter of the
        # throughput of a cheap route on 2 cores. raymall_http_* in /metrics counts every
        # request already; set the variable to 1 to get Serve's serve_http_* too.
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": os.environ.get(
            "RAY_SERVE_HAPROXY_METRICS_ENABLED", "0"
        ),
        # Ray's own metrics (core and Serve, exported through each node's dashboard agent):
        # a Serve replica records several per request, and the agent that aggregates and
        # exports them took 0.1-0.17 of the 2 cores under load; healthz went from 1,840-1,990
        # to 2,120-2,170 req/s without them. raymall_* in /metrics covers the service; set
        # the variable to 1 (here and at `ray start`) for Ray's dashboards.
        "RAY_enable_metrics_collection": os.environ.get("RAY_enable_metrics_collection", "0"),
        # Ray runs its workers at nice 15 so that its own daemons win any contention. Here
        # the workers are the service (ingress replicas, inventory and order shards), and
        # the database, Redis and HAProxy clients they wait on run at 0: at 15 every one of
        # those preempts a replica holding requests, which doubled healthz's p99 at 16
        # connections on 2 cores. Export RAY_worker_niceness=15 for Ray's default.
        "RAY_worker_niceness": os.environ.get("RAY_worker_niceness", "0"),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    # request ids checked before Serve reads them, and (unless disconnects are watched)
    # Serve's own switch set on every request (deployments/serve_http.py)
    watching = settings.serve_watch_disconnects
    callback = "proxy_middlewares_watching" if watching else "proxy_middlewares"
    env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] = f"deployments.serve_http:{callback}"
    return env


def prepare_environment(settings: Settings) -> dict[str, str]:
    """Export ``ray_env`` into this process (workers of a local cluster inherit it) and
    reset the per-node metrics directory."""
    env = ray_env(settings)
    metrics_dir = Path(env[metrics.MULTIPROC_ENV])
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    Path(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]).mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    return env


@dataclass
class RunningApp:
    settings: Settings
    stores: EmbeddedStores
    actors: dict[str, Any]

    @property
    def url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"


def resolve_settings(settings: Settings) -> tuple[Settings, EmbeddedStores]:
    resolved, stores = resolve(settings)
    upgrade(resolved.resolved_database_url)
    ensure_reference_data(resolved)
    return resolved, stores


def app_logging(settings: Settings) -> dict[str, Any]:
    """Serve's logging in the app's replicas. Without the access log, Serve's own logger
    is at WARNING: a replica builds the access record of every request at INFO and only
    then filters it out, a few percent of its CPU on the purchase path."""
    return {
        "enable_access_log": settings.access_log,
        "log_level": "INFO" if settings.access_log else "WARNING",
    }


def ingress_options(settings: Settings) -> dict[str, Any]:
    """Serve options of the ingress: a fixed replica count, or (``RAYMALL_INGRESS_AUTOSCALING``)
    Serve's autoscaler between min and max, aiming at the target requests in flight per
    replica. A replica the autoscaler or a rolling update takes away is drained first: it
    leaves HAProxy at once and finishes what it holds (up to ``graceful_shutdown_timeout_s``)."""
    options: dict[str, Any] = {
        # a live flash-sale viewer holds a slot for as long as it watches (an idle stream)
        "max_ongoing_requests": settings.max_ongoing_requests + settings.flash_stream_max_clients,
        "ray_actor_options": {
            "num_cpus": settings.ingress_num_cpus,
            "resources": dict(settings.ingress_resources),
        },
        "health_check_period_s": 5,
        "graceful_shutdown_timeout_s": 10,
        "graceful_shutdown_wait_loop_s": 0.5,
    }
    if settings.ingress_autoscaling:
        low, high = settings.ingress_min_replicas, settings.ingress_max_replicas
        options["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": high,
            "initial_replicas": min(max(settings.ingress_replicas, low), high),
            "target_ongoing_requests": settings.ingress_target_ongoing_requests,
            "upscale_delay_s": settings.ingress_upscale_delay_s,
            "downscale_delay_s": settings.ingress_downscale_delay_s,
            "look_back_period_s": settings.ingress_autoscaling_look_back_s,
        }
    else:
        options["num_replicas"] = settings.ingress_replicas
    return options


def application(settings: Settings) -> Any:
    """The Serve application (ingress over the payment provider and the carrier) for
    resolved settings."""
    from deployments.carrier import Carrier
    from deployments.ingress import Ingress
    from deployments.payment_provider import PaymentProvider

    provider = PaymentProvider.options(  # type: ignore[attr-defined]
        num_replicas=1,
        max_ongoing_requests=settings.max_ongoing_requests,
        ray_actor_options={"num_cpus": settings.actor_num_cpus},
        # Serve stops it after the ingress; it looks for requests still in flight this
        # often (Serve's default, 2 s, was a fixed 2 s of every stop)
        graceful_shutdown_wait_loop_s=0.25,
    ).bind(settings)
    carrier = Carrier.options(  # type: ignore[attr-defined]
        num_replicas=1,
        max_ongoing_requests=settings.max_ongoing_requests,
        ray_actor_options={"num_cpus": settings.actor_num_cpus},
        graceful_shutdown_wait_loop_s=0.25,
    ).bind(settings)
    return Ingress.options(**ingress_options(settings)).bind(settings, provider, carrier)  # type: ignore[attr-defined]


def deploy(settings: Settings) -> dict[str, Any]:
    """Launch actors and the Serve app for already-resolved settings (Ray is initialised)."""
    set_draining(settings, False)  # a previous instance may have stopped mid-drain
    actors = registry.launch_all(settings)
    serve.start(
        http_options={
            "host": settings.http_host,
            "port": settings.http_port,
            "location": settings.proxy_location,
        },
        logging_config={"enable_access_log": settings.access_log, "encoding": "JSON"},
    )
    serve.run(
        application(settings),
        name=APP_NAME,
        route_prefix="/",
        logging_config=app_logging(settings),
    )
    return actors


def start(settings: Settings) -> RunningApp:
    logs.configure(settings.log_level)
    resolved, stores = resolve_settings(settings)
    try:
        check_layout(resolved)  # shards would find no stock of their own otherwise
    except BaseException:
        stores.close()
        raise
    actors = deploy(resolved)
    running = RunningApp(settings=resolved, stores=stores, actors=actors)
    write_runtime_file(running)
    log.info("raymall is serving", extra={"url": running.url})
    return running


def runtime_file(settings: Settings) -> Path:
    return Path(settings.var_dir) / "runtime.json"


def write_runtime_file(app: RunningApp) -> None:
    """What a running instance resolved (no secrets): for operators and tests."""
    s = app.settings
    info = {
        "pid": os.getpid(),
        "url": app.url,
        "namespace": s.namespace,
        "ray_address": ray.get_runtime_context().gcs_address,
        "redis_url": s.redis_url if (s.redis_url or "").startswith("unix://") else "server",
        "database": s.resolved_database_url.split("://", 1)[0],
        "embedded_pids": app.stores.pids,
    }
    runtime_file(s).write_text(json.dumps(info, indent=2))


def stop(app: RunningApp) -> None:
    """Drain HTTP, then stop Serve, flush and stop the actors, stop embedded stores. Ray
    itself is left to whoever initialised it.

    Order matters: replicas answer 503 to new requests while those in flight finish; then
    Serve goes down as a whole (proxies with the app, so no client is routed to a deleted
    app); the actors, which in-flight requests may still have been calling, go last."""
    set_draining(app.settings, True)
    time.sleep(DRAIN_GRACE_S)
    try:
        serve.shutdown()
    except Exception:  # Serve may already be gone; the rest of shutdown must still run
        log.warning("serve.shutdown failed", exc_info=True)
    registry.stop_all(app.settings)
    app.stores.close()
    runtime_file(app.settings).unlink(missing_ok=True)


def remove_haproxy_dir(settings: Settings, wait_s: float = 3.0) -> bool:
    """Remove this instance's HAProxy directory: whoever set up Ray for it does, after
    ``ray.shutdown``. An HAProxy may still be exiting and creating or removing files there
    (a removal that races with it leaves the directory behind), so it is retried for up to
    ``wait_s``. True if it is gone."""
    path = haproxy_dir(settings)
    deadline = time.monotonic() + wait_s
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return True
        if time.monotonic() >= deadline:
            log.warning("could not remove %s", path)
            return False
        time.sleep(0.1)


def init_ray(settings: Settings, address: str | None = None, num_cpus: int | None = None) -> None:
    if not address:  # a local instance: its ports must be its own (see raymall.ports)
        ports.check_free(settings.http_host, settings.http_port)
    env = prepare_environment(settings)
    kwargs: dict[str, Any] = {
        "namespace": settings.namespace,
        "include_dashboard": False,
        "runtime_env": {"env_vars": env},
        "log_to_driver": True,
    }
    if address:
        kwargs["address"] = address
    else:
        # a fresh local instance, even when another cluster runs on this machine
        kwargs["address"] = "local"
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
        if settings.ray_object_store_mb:
            kwargs["object_store_memory"] = settings.ray_object_store_mb * 1024 * 1024
    ray.init(**kwargs)
