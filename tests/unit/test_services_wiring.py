"""deployments.services.build_services: one InventoryClient per replica, shared by every
area that reaches the inventory shards; readiness checks in their order; the routes'
accessor reads the app's Services. Every class it wires is replaced by a recorder (no
Ray, no database)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from deployments import services as wiring


class Recorder:
    """Stands in for a wired class: keeps its arguments."""

    made: list[Recorder]

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.args, self.kw = args, kw
        self.started = False
        self.store = SimpleNamespace(name="cart store")
        self.permissions = SimpleNamespace(grants={"user": 1}, reload=self._reload)
        self.mirror = None
        self.media = SimpleNamespace(name="image store")
        self.cache = SimpleNamespace(name="sale cache")
        self.shards = SimpleNamespace(name="order shards")
        self.shard_of = len
        self.skus = SimpleNamespace(lookup=self.availability)
        self.followed: list[Any] = []
        type(self).made.append(self)

    async def _reload(self) -> None:
        return None

    def start(self) -> None:
        self.started = True

    def follow(self, *args: Any) -> None:
        self.followed.append(args)

    async def keep_warm(self) -> None:
        await asyncio.sleep(3600)

    async def availability(self, sku_ids: list[int]) -> dict[int, int]:
        return {}

    async def ping(self) -> dict[str, Any]:
        return {"ok": True}


def recorder(name: str) -> type[Recorder]:
    return type(name, (Recorder,), {"made": []})


class FakeFeed:
    """Stands in for raymall.feed.Feed: records subscriptions, start and stop."""

    def __init__(self, url: str, *, name: str) -> None:
        self.url, self.name = url, name
        self.channels: list[str] = []
        self.connected = False
        self.stopped = False

    def subscribe(self, channel: str, *_handlers: Any) -> None:
        self.channels.append(channel)

    async def start(self) -> None:
        self.connected = True

    async def wait_connected(self, timeout_s: float) -> bool:
        return self.connected

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture()
def wired(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[Recorder]]:
    classes = {
        name: recorder(name)
        for name in (
            "InventoryClient",
            "OrderShardClient",
            "AuthService",
            "ProfileService",
            "CatalogRuntime",
            "StockAdmin",
            "CartService",
            "OrderService",
            "FlashService",
            "CouponService",
            "CouponAdmin",
            "Pricer",
            "RecommendService",
            "SaleHub",
            "PublicSales",
            "ShippingService",
            "ServeCarrier",
            "ReviewService",
            "AfterSalesService",
        )
    }
    for name, cls in classes.items():
        monkeypatch.setattr(wiring, name, cls)

    async def no_roles(ctx: Any) -> None:
        return None

    monkeypatch.setattr(wiring, "ensure_roles", no_roles)
    monkeypatch.setattr(wiring, "Feed", FakeFeed)
    return classes


def orders_pricer(wired: dict[str, type[Recorder]]) -> Any:
    return wired["OrderService"].made[0].kw["pricer"]


def context(recommender: bool) -> Any:
    settings = SimpleNamespace(
        inventory_shards=2,
        flash_sale_cache_ttl_s=5.0,
        flash_batch_max=256,
        flash_batch_window_ms=2.0,
        recommender=recommender,
        ha_proxy=False,
        trusted_proxy_hops=0,
        redis_url="redis://test/3",
        ingress_replicas=2,
    )
    return SimpleNamespace(
        settings=settings, sessions="sessions", redis="redis", hot_redis="hot", engine="engine"
    )


async def test_one_inventory_client_serves_flash_catalog_cart_and_the_stock_routes(
    wired: dict[str, type[Recorder]],
) -> None:
    svc = await wiring.build_services(context(recommender=True), payment_provider="handle")
    try:
        (inventory,) = wired["InventoryClient"].made
        assert svc.inventory is inventory
        (flash,) = wired["FlashService"].made
        assert flash.args[3] is inventory
        (hub,) = wired["SaleHub"].made  # the live sale stream reads the flash service's sales
        assert hub.args[1] is flash.cache and svc.flash_live is hub
        (shipping,) = wired["ShippingService"].made  # shipments run in the orders' shards
        assert shipping.args[2] is svc.orders.shards and svc.shipping is shipping
        (coupons,) = wired["CouponService"].made
        assert coupons.args[1] is inventory and svc.coupons is coupons
        (pricer,) = wired["Pricer"].made  # one pricing of promotions, for carts and orders
        assert orders_pricer(wired) is pricer
        (catalog,) = wired["CatalogRuntime"].made
        assert catalog.args[3] is inventory and catalog.started
        (stock,) = wired["StockAdmin"].made
        assert stock.args[1] is inventory
        (cart,) = wired["CartService"].made
        assert cart.args[3] == catalog.availability  # the cart's availability is the catalog's
        assert cart.args[4] is catalog.skus.lookup  # and its SKUs the catalog's documents
        (orders,) = wired["OrderService"].made
        assert orders.args[3] is cart.store
        assert isinstance(orders.args[4], wiring.ServeGateway)
        assert orders.args[4].handle == "handle" and svc.payments is orders.args[4]
        assert wired["RecommendService"].made[0].started
        assert list(svc.readiness) == ["milvus", "orders", "auth", "inventory", "revocations"]
        assert await svc.readiness["auth"]() == {"ok": True, "grants": 1}
        assert await svc.readiness["revocations"]() == {"ok": True, "loaded": True}
        # one feed, started once every area subscribed; one view of Redis's health,
        # shared by the auth writes and the flash rate limits' local fallback
        assert isinstance(svc.feed, FakeFeed) and svc.feed.connected
        assert catalog.followed == [(svc.feed, "redis")]
        (auth,) = wired["AuthService"].made
        assert auth.kw["feed"] is svc.feed and auth.kw["health"] is svc.redis_health
        assert flash.kw["limit_fallback"].health is svc.redis_health
        assert flash.kw["limit_fallback"].buckets.share == 2
        await svc.close()
        assert svc.feed.stopped
    finally:
        for task in svc.tasks:
            task.cancel()


async def test_without_the_recommender_or_a_provider_nothing_of_them_is_wired(
    wired: dict[str, type[Recorder]],
) -> None:
    svc = await wiring.build_services(context(recommender=False))
    try:
        assert list(svc.readiness) == ["orders", "auth", "inventory", "revocations"]
        assert not wired["RecommendService"].made[0].started
        assert wired["OrderService"].made[0].args[4] is None and svc.payments is None
    finally:
        for task in svc.tasks:
            task.cancel()


def test_routes_reach_the_services_the_app_holds() -> None:
    held = object()
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(services=held)))
    assert wiring.services(request) is held  # type: ignore[arg-type]
