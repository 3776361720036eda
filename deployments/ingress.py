"""The ingress deployment: one FastAPI app per replica behind the pure-ASGI edge.

Routes live in one module per area (``ROUTER_MODULES``); a module may define
``async def startup(app_ctx)`` to build its service once per replica, and
``shortcuts(app_ctx)`` to answer the plainest requests of a hot public route below FastAPI
(``deployments.edge``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI
from ray import serve

from deployments import errors
from deployments.context import AppContext
from deployments.drain import DrainWatch, drain_key
from deployments.edge import Edge, Shortcut
from deployments.security import authenticate
from raymall import __version__, logs
from raymall.settings import Settings

# Hottest paths first: FastAPI matches a request against the included routers in this
# order, at about 6 us per route tried, so a route behind all 57 others costs ~0.35 ms of
# replica CPU before its handler runs. No two modules' routes can match the same request
# (tests/unit/test_http_edge.py), so the order changes only the cost.
ROUTER_MODULES = (
    "deployments.catalog_routes",
    "deployments.recommend_routes",
    "deployments.flash_routes",
    "deployments.cart_routes",
    "deployments.order_routes",
    "deployments.payment_routes",
    "deployments.auth_routes",
    "deployments.inventory_routes",
    "deployments.health",
)


def router_modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in ROUTER_MODULES]


def build_app(app_ctx: AppContext) -> FastAPI:
    app = FastAPI(
        title="raymall",
        version=__version__,
        description="E-commerce backend for flash-sale traffic, on Ray Serve.",
        dependencies=[Depends(authenticate)],
    )
    app.state.ctx = app_ctx
    app_ctx.services["app"] = app  # startup hooks install app-level hooks (e.g. auth)
    errors.install(app)
    for module in router_modules():
        app.include_router(module.router)
    return app


async def start_areas(app_ctx: AppContext) -> None:
    for module in router_modules():
        hook = getattr(module, "startup", None)
        if hook is not None:
            await hook(app_ctx)


def area_shortcuts(app_ctx: AppContext) -> list[Shortcut]:
    """The shortcuts (``deployments.edge.Shortcut``) that area modules offer through a
    ``shortcuts(app_ctx)`` function, after their startup hooks have run."""
    found: list[Shortcut] = []
    for module in router_modules():
        offer = getattr(module, "shortcuts", None)
        if offer is not None:
            found.extend(offer(app_ctx))
    return found


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """Thin HTTP shell: builds per-replica resources, then serves the app."""

    def __init__(self, settings: Settings, payment_provider: Any = None) -> None:
        logs.configure(settings.log_level)
        self.settings = settings
        self.ctx = AppContext.build(settings)
        # handle of the simulated payment provider deployment (deployments.payment_provider)
        self.ctx.services["payment_provider"] = payment_provider

    async def __serve_build_asgi_app__(self) -> Any:
        app = build_app(self.ctx)
        await start_areas(self.ctx)
        self.drain = DrainWatch(self.ctx.redis, drain_key(self.settings))
        self.drain.start()
        return Edge(
            app,
            echo_request_id=False,
            draining=self.drain.is_draining,
            shortcuts=area_shortcuts(self.ctx),
        )

    async def check_health(self) -> None:
        """Serve's replica health check: the replica is alive if its event loop runs."""
