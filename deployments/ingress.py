"""The ingress deployment: one FastAPI app per replica behind the pure-ASGI edge.

Routes live in one module per area (``ROUTER_MODULES``). The replica's services are built
once, before the app, by ``deployments.services.build_services`` and handed to the routes
through the app; a module may define ``shortcuts(services)`` to answer the plainest
requests of a hot public route below FastAPI (``deployments.edge``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI
from ray import serve

from deployments import auth_routes, errors, openapi
from deployments.context import AppContext
from deployments.drain import ReplicaWatch
from deployments.edge import Edge, Shortcut
from deployments.headers import HttpPolicy
from deployments.security import authenticate
from deployments.services import Services, build_services
from raymall import __version__, gcwatch, logs, tracing
from raymall.settings import Settings

# Hottest paths first: FastAPI matches a request against the included routers in this
# order, at about 6 us per route tried, so a route behind all 57 others costs ~0.35 ms of
# replica CPU before its handler runs. No two modules' routes can match the same request
# (tests/unit/test_http_edge.py), so the order changes only the cost.
ROUTER_MODULES = (
    "deployments.catalog_routes",
    "deployments.recommend_routes",
    "deployments.flash_routes",
    "deployments.flash_live_routes",
    "deployments.coupon_routes",
    "deployments.cart_routes",
    "deployments.order_routes",
    "deployments.review_routes",
    "deployments.payment_routes",
    "deployments.return_routes",
    "deployments.shipping_routes",
    "deployments.auth_routes",
    "deployments.inventory_routes",
    "deployments.health",
    "deployments.tracing_routes",
    "deployments.web_routes",
)


def router_modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in ROUTER_MODULES]


def routed_app() -> FastAPI:
    """The app's routes, error handlers and authentication, with no services yet."""
    app = FastAPI(
        title="raymall",
        version=__version__,
        description="E-commerce backend for flash-sale traffic, on Ray Serve.",
        dependencies=[Depends(authenticate)],
        redirect_slashes=False,  # a redirect would echo the Host header; 404 instead
    )
    errors.install(app)
    openapi.install(app)  # the one error body and every error status
    for module in router_modules():
        app.include_router(module.router)
    return app


def build_app(services: Services) -> FastAPI:
    """The replica's app over its services."""
    app = routed_app()
    app.state.ctx = services.ctx
    app.state.services = services
    auth_routes.install(app, services.auth)  # what deployments.security calls per request
    return app


def area_shortcuts(services: Services) -> list[Shortcut]:
    """The shortcuts (``deployments.edge.Shortcut``) that area modules offer through a
    ``shortcuts(services)`` function."""
    found: list[Shortcut] = []
    for module in router_modules():
        offer = getattr(module, "shortcuts", None)
        if offer is not None:
            found.extend(offer(services))
    return found


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """Thin HTTP shell: builds per-replica resources, then serves the app."""

    def __init__(
        self, settings: Settings, payment_provider: Any = None, carrier: Any = None
    ) -> None:
        logs.configure(settings.log_level)
        tracing.configure(settings, "replica")
        self.settings = settings
        self.ctx = AppContext.build(settings)
        # handle of the simulated payment provider deployment (deployments.payment_provider)
        self.payment_provider = payment_provider
        # handle of the simulated carrier deployment (deployments.carrier)
        self.carrier = carrier

    async def __serve_build_asgi_app__(self) -> Any:
        self.services = await build_services(self.ctx, self.payment_provider, self.carrier)
        app = build_app(self.services)
        self.watch = ReplicaWatch(self.ctx.redis, self.settings)
        self.watch.start()
        edge = Edge(
            app,
            echo_request_id=False,
            draining=self.watch.is_draining,
            shortcuts=area_shortcuts(self.services),
            policy=HttpPolicy.from_settings(self.settings),
        )
        gcwatch.started(
            "replica",
            freeze=self.settings.gc_freeze,
            young_threshold=self.settings.gc_young_threshold,
        )
        return edge

    async def check_health(self) -> None:
        """Serve's replica health check: the replica is alive if its event loop runs."""

    async def __del__(self) -> None:
        """Serve calls this when the replica shuts down: stop the services' background
        work (the Redis feed) before the process goes."""
        built = getattr(self, "services", None)
        if built is not None:
            await built.close()
