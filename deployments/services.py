"""The replica's services: one typed ``Services`` object, built once, in one place.

``build_services(ctx)`` runs in the ingress before the app is built, and is the only code
that decides which implementation each area gets. The app holds the result
(``request.app.state.services``); each route module reads its own service through a
typed accessor (``services(request).cart``). Guarantees:

- one ``InventoryClient`` per replica, shared by flash sales, catalog and cart
  availability and the inventory routes, so its per-shard lanes batch everyone's
  operations together;
- the roles and grants exist before any area serves (``raymall serve`` on a fresh
  database);
- what the areas need of actors reaches them through their ports: ``OrderShardClient``
  is ``raymall.orders.ports.OrderShards``, the payment provider deployment is wrapped as
  a ``PaymentGateway``, the inventory client is the catalog's ``LiveStock`` and
  ``StockOwner``;
- one ``RedisHealth`` over the replica's feed, by which the rate limits go
  replica-local (``LimitFallback``) and the Redis-backed writes answer 503 at once while
  Redis is unreachable; ``close()`` stops the feed when the replica shuts down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy.exc import IntegrityError

from actors import registry
from actors.inventory_client import InventoryClient
from actors.order_client import OrderShardClient
from deployments.context import AppContext, ReadinessCheck
from raymall import tracing
from raymall.auth.profile import ProfileService
from raymall.auth.service import AuthService
from raymall.bootstrap import ensure_reference_data
from raymall.cart import CartService
from raymall.catalog.runtime import CatalogRuntime
from raymall.catalog.stock_admin import StockAdmin
from raymall.coupons.admin import CouponAdmin
from raymall.coupons.pricing import Pricer
from raymall.coupons.service import CouponService
from raymall.db import read_sessions
from raymall.feed import Feed, RedisHealth
from raymall.flash.live import SaleHub
from raymall.flash.public import PublicSales
from raymall.flash.service import FlashService
from raymall.logs import get_logger
from raymall.orders.service import OrderService
from raymall.ratelimit import LimitFallback
from raymall.returns.service import AfterSalesService
from raymall.reviews.service import ReviewService
from raymall.settings import Settings
from raymall.shipping.service import ShippingService
from recommend.service import RecommendService

log = get_logger("services")
FEED_START_WAIT_S = 5.0  # how long a starting replica waits for its feed's first resync


@dataclass
class Services:
    """Everything a replica's routes call, by area."""

    ctx: AppContext
    inventory: InventoryClient
    auth: AuthService
    profile: ProfileService
    catalog: CatalogRuntime
    stock: StockAdmin
    cart: CartService
    orders: OrderService
    flash: FlashService
    # coupon claims and the wallet; campaigns and promotions administration
    coupons: CouponService
    coupon_admin: CouponAdmin
    recommend: RecommendService
    # reviews from verified buyers and their moderation (products' ratings)
    reviews: ReviewService
    # refunds through the payment provider, cancels after payment, returns (RMAs)
    aftersales: AfterSalesService
    # shipping methods, shipments and the carrier's tracking callback
    shipping: ShippingService
    # the payment provider deployment, as orders reach it (None: not deployed)
    payments: ServeGateway | None
    # the replica's one Redis pub/sub connection: pushed read models (raymall.feed)
    feed: Feed
    # flash sales for the public: the listing, and the live view of watched sales
    flash_public: PublicSales
    flash_live: SaleHub
    # name -> async check answering {"ok": bool, ...}, shown by /readyz after its own
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    # background work started with the services (kept referenced so it is not collected)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # whether Redis is usable now, as this replica sees it (raymall.feed.RedisHealth)
    redis_health: RedisHealth | None = None

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    async def close(self) -> None:
        """Stop what the services started (the replica is shutting down)."""
        await self.feed.stop()


class ServeGateway:
    """The payment provider deployment (a Serve handle) as a ``PaymentGateway``."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def charge(self, charge: dict[str, Any]) -> None:
        if tracing.enabled and (span := tracing.recording_span()) is not None:
            # the provider sends it back on its callback, which joins this trace
            charge = {**charge, "traceparent": tracing.traceparent(span)}
        await self.handle.charge.remote(charge)

    async def refund(self, refund: dict[str, Any]) -> None:
        await self.handle.refund.remote(refund)


class ServeCarrier:
    """The carrier deployment (a Serve handle) as a ``CarrierGateway``."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def track(self, shipment: dict[str, Any]) -> None:
        await self.handle.track.remote(shipment)


async def ensure_roles(ctx: AppContext) -> None:
    """Roles and grants must exist before anyone registers. Idempotent; replicas starting
    together may race, so one retry."""
    for attempt in range(2):
        try:
            await asyncio.to_thread(ensure_reference_data, ctx.settings)
            return
        except IntegrityError:
            if attempt:
                raise


async def build_services(
    ctx: AppContext, payment_provider: Any = None, carrier: Any = None
) -> Services:
    """The replica's services, on its event loop. ``payment_provider``: the handle of the
    payment provider deployment (``deployments.payment_provider``), if deployed;
    ``carrier``: the handle of the simulated carrier (``deployments.carrier``), if deployed."""
    s = ctx.settings
    await ensure_roles(ctx)
    inventory = InventoryClient(s)

    assert s.redis_url, "settings must be resolved"
    feed = Feed(s.redis_url, name="replica")
    health = RedisHealth(feed)
    limit_fallback = LimitFallback(health, s.ingress_replicas)
    catalog = CatalogRuntime(s, ctx.sessions, ctx.redis, inventory)
    catalog.follow(feed, ctx.redis)  # availability from the shards' read model
    catalog.start()  # Bloom filter upkeep

    recommend = RecommendService(s, ctx.sessions, ctx.redis, hot_redis=ctx.hot_redis)
    if s.recommender:
        recommend.start()  # this replica's copy of the index, for similar-product reads

    flash = FlashService(s, ctx.sessions, ctx.redis, inventory, limit_fallback=limit_fallback)
    warmup = asyncio.get_running_loop().create_task(flash.keep_warm())
    flash_live = SaleHub(ctx.redis, flash.cache, inventory.shard_of, s.redis_url)
    flash_live.follow(feed)  # the sales' read model (raymall.flash.live_model)

    coupons = CouponService(
        ctx.sessions,
        inventory,
        s.inventory_shards,
        ttl_s=s.flash_sale_cache_ttl_s,
        batch_max=s.flash_batch_max,
        window_s=s.flash_batch_window_ms / 1000,
    )
    pricer = Pricer(read_sessions(ctx.sessions))  # plain reads: no ROLLBACK round trip
    cart = CartService(s, ctx.sessions, ctx.redis, catalog.availability, catalog.skus.lookup)
    cart.pricer = pricer  # promotions and the best coupon on the cart
    gateway = ServeGateway(payment_provider) if payment_provider is not None else None
    orders = OrderService(
        s,
        ctx.sessions,
        OrderShardClient(s),
        cart.store,
        gateway,
        ctx.engine,
        redis=ctx.redis,  # rate limits of refused payment callbacks
        pricer=pricer,
    )
    shipping = ShippingService(
        s,
        ctx.sessions,
        orders.shards,
        ServeCarrier(carrier) if carrier is not None else None,
        redis=ctx.redis,
    )

    auth = AuthService(
        s, ctx.sessions, ctx.redis, hot_redis=ctx.hot_redis, feed=feed, health=health
    )
    if s.ha_proxy and s.trusted_proxy_hops == 0:
        log.warning(
            "per-IP sign-in limits are off: behind Serve's HAProxy ingress client addresses "
            "are unknown; set RAYMALL_TRUSTED_PROXY_HOPS behind a proxy that appends "
            "X-Forwarded-For (per-account limits still apply)"
        )
    try:
        await auth.permissions.reload()
    except Exception as exc:  # the first check retries; readiness reports it meanwhile
        log.warning("could not load the permission table at start-up: %s", exc)

    async def permissions_ready() -> dict[str, Any]:
        if not auth.permissions.grants:
            await auth.permissions.reload()
        return {"ok": bool(auth.permissions.grants), "grants": len(auth.permissions.grants)}

    readiness: dict[str, ReadinessCheck] = {}
    if s.recommender:
        readiness["milvus"] = recommend.ping
    readiness["orders"] = lambda: registry.check_all(s, kinds=("order",))
    readiness["auth"] = permissions_ready
    readiness["inventory"] = lambda: registry.check_all(s, kinds=("inventory",))
    readiness["revocations"] = revocations_ready(auth)

    await feed.start()  # every consumer has subscribed: one connection, one resync
    if not await feed.wait_connected(FEED_START_WAIT_S):
        log.warning("Redis feed not connected yet: signed-in requests answer 503 until it is")
    return Services(
        ctx=ctx,
        inventory=inventory,
        auth=auth,
        profile=ProfileService(ctx.sessions, catalog.media),
        catalog=catalog,
        stock=StockAdmin(ctx.sessions, inventory),
        cart=cart,
        orders=orders,
        flash=flash,
        flash_public=PublicSales(ctx.sessions),
        flash_live=flash_live,
        coupons=coupons,
        coupon_admin=CouponAdmin(ctx.sessions, coupons),
        recommend=recommend,
        reviews=ReviewService(ctx.sessions, media=catalog.media, products=catalog),
        aftersales=AfterSalesService(ctx.sessions, OrderShardClient(s), gateway, catalog.media),
        shipping=shipping,
        payments=gateway,
        feed=feed,
        readiness=readiness,
        tasks=[warmup],
        redis_health=health,
    )


def revocations_ready(auth: AuthService) -> ReadinessCheck:
    """Ready once the revocation mirror has loaded (until then every signed-in request
    answers 503); a mirror left behind by a Redis outage is ready, and says so."""

    async def check() -> dict[str, Any]:
        view = auth.mirror.view() if auth.mirror is not None else {"loaded": True}
        return {"ok": bool(view["loaded"]), **view}

    return check


def services(request: Request) -> Services:
    """The replica's services, for a route."""
    return request.app.state.services  # type: ignore[no-any-return]
