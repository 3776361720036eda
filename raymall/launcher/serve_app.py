"""The Serve application as an import path, for Serve's own deployment tooling: a KubeRay
``RayService`` (``import_path: raymall.launcher.serve_app:app`` in ``serveConfigV2``, see
``deploy/k8s/``) or ``serve deploy`` on any Ray cluster.

Serve runs the builder on the cluster each time the config is applied. It reads the
settings from the environment (``RAYMALL_*``: on Kubernetes the ConfigMap and Secret),
migrates the database, ensures reference data, launches the named detached actors (an
actor that exists is reused, so a re-apply does not restart shards) and returns the bound
application with its deployment options, the autoscaling ones included
(``raymall.launcher.app.ingress_options``).

Guarantees: it refuses (``ConfigError``) to build on embedded stores, which live and die
with the process that starts them: a cluster needs database and Redis servers.
"""

from __future__ import annotations

from typing import Any

from actors import registry
from deployments.drain import set_draining
from raymall import logs
from raymall.launcher.app import application, resolve_settings
from raymall.settings import ConfigError, load_settings


def app(args: dict[str, str] | None = None) -> Any:
    """The bound raymall application (``args`` from the Serve config are not used: every
    setting comes from ``RAYMALL_*``)."""
    settings = load_settings()
    logs.configure(settings.log_level)
    missing = [
        f"RAYMALL_{name.upper()}"
        for name in ("database_url", "redis_url")
        if getattr(settings, name) is None
    ]
    if missing:
        raise ConfigError(
            f"a cluster deployment needs servers: set {' and '.join(missing)} "
            "(embedded stores would stop with the process that built the app)"
        )
    resolved, _stores = resolve_settings(settings)  # nothing embedded: nothing to keep
    set_draining(resolved, False)  # a previous deployment may have stopped mid-drain
    registry.launch_all(resolved)
    return application(resolved)
