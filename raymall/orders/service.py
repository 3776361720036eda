"""OrderService: the per-replica side of orders and payments.

Routes call it; it validates, prices on the server, and hands every state change to the
OrderShard that owns the order, through the ``OrderShards`` port
(``raymall.orders.ports``). Guarantees:

- prices come from the catalog rows read here, never from the request; promotions and
  the coupons the request names are applied here too (``raymall.coupons.pricing``), and
  the order stores each line's share of the discount and locks the coupons in the
  transaction that stores it;
- the shipping address is one of the caller's (404 otherwise) and is copied into the
  order, so later address edits do not rewrite history;
- shipping (an optional ``shipping_method_id``) is priced here too, from the method's
  terms read now and the address's region (``raymall.shipping.fees``): free over the
  method's threshold of the goods after discounts, or with a free-shipping promotion. The
  fee is stored as ``shipping_cents`` and is part of ``total_cents``, which is what the
  payment must be;
- ``Idempotency-Key``: the same key and the same (normalized) body give the same order;
  the same key with another body answers 409 ``idempotency_key_reused``. Without a key the
  replica makes one up for the request, so its own retries after a shard restart cannot
  create a second order;
- ordered cart lines leave the cart only after the order is stored;
- payment callbacks are believed only after the signature, the timestamp window and the
  amount check out; anything else is refused and written to ``payment_audit``, with the
  limits of ``raymall.orders.callbacks``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from raymall.cart import CartOwner, CartStore
from raymall.coupons.locks import held_coupons
from raymall.coupons.pricing import Pricer
from raymall.db import transaction
from raymall.domain import order_state as st
from raymall.domain.pricing import CURRENCY, Quote, normalize_lines, price, request_hash
from raymall.errors import (
    DomainError,
    IdempotencyMismatch,
    Unavailable,
    ValidationFailed,
)
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.orders import payments as pay
from raymall.orders import repository as repo
from raymall.orders.callbacks import PaymentCallbacks
from raymall.orders.consumers import list_notifications
from raymall.orders.ports import AUTO_KEY_PREFIX, OrderShards, PaymentGateway, PlaceOrder
from raymall.orders.queries import OrderFilters, list_orders
from raymall.orders.quotes import QuoteReader
from raymall.ratelimit import RateLimiter
from raymall.settings import Settings
from raymall.shipping.fees import shipping_fee
from raymall.shipping.methods import ShippingMethods
from raymall.shipping.shipments import shipments_of

log = get_logger("orders.service")
T = TypeVar("T")


@dataclass(frozen=True)
class OrderRequest:
    """What a client may ask for: explicit items, or cart lines (all when ``cart_sku_ids``
    is empty and ``items`` is None)."""

    items: tuple[tuple[int, int], ...] | None
    cart_sku_ids: tuple[int, ...]
    address_id: int | None
    coupon_ids: tuple[int, ...] = ()
    shipping_method_id: int | None = None


class OrderService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        shards: OrderShards,
        cart: CartStore,
        provider: PaymentGateway | None,
        engine: Engine,
        redis: Any = None,
        pricer: Pricer | None = None,
    ) -> None:
        """``pricer``: promotions and coupons (None: orders are priced without them)."""
        self.settings = settings
        self.sessions = sessions
        self.shards = shards
        # refused payment callbacks are rate-limited in Redis (without it: not limited)
        self.callbacks = PaymentCallbacks(
            settings,
            shards,
            read=self._read,
            tx=self._tx,
            limiter=RateLimiter(redis) if redis is not None else None,
        )
        self.cart = cart
        self.provider = provider
        self.quotes = QuoteReader(engine)
        self.pricer = pricer
        self.shipping = ShippingMethods(sessions)

    async def _read(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.sessions() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    async def _tx(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with transaction(self.sessions) as session:
                return fn(session)

        return await asyncio.to_thread(run)

    # ---- placement ------------------------------------------------------------------
    async def place(
        self, user_id: int, req: OrderRequest, idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Answer (order, created)."""
        normalized: dict[str, Any] = {"address_id": req.address_id}
        if req.items is not None:
            normalized["items"] = sorted(req.items)
        else:
            normalized["cart_sku_ids"] = sorted(set(req.cart_sku_ids))
        if req.coupon_ids:
            normalized["coupon_ids"] = sorted(set(req.coupon_ids))
        if req.shipping_method_id is not None:
            normalized["shipping_method_id"] = req.shipping_method_id
        rhash = request_hash(normalized)
        owner = CartOwner(f"cart:{user_id}", user_id=user_id)
        try:
            quote, address, existing = await self._quote(user_id, req, owner, idempotency_key)
        except DomainError:
            # A replay may no longer price (the cart was emptied by the first attempt, a
            # SKU went off sale): the stored order is still the answer.
            if idempotency_key is not None:
                found = await self._replay(user_id, idempotency_key, rhash)
                if found is not None:
                    return found, False
            raise
        if existing is not None:
            if existing[1] != rhash:
                raise IdempotencyMismatch(
                    "this Idempotency-Key was used for a different request",
                    details={"order_id": str(existing[0])},
                )
            return await self.get(user_id, existing[0]), False
        discounts: tuple[tuple[int, int], ...] = ()
        coupon_ids = tuple(sorted(set(req.coupon_ids)))
        free_shipping = False
        if self.pricer is not None:
            priced = await self.pricer.for_order(user_id, quote.lines, coupon_ids)
            discounts = tuple(sorted((s, c) for s, c in priced.line_discounts.items() if c))
            coupon_ids = tuple(sorted(c.ref for c in priced.coupons))
            free_shipping = priced.free_shipping
        elif coupon_ids:
            raise ValidationFailed("coupons are not available")
        shipping_cents = 0
        if req.shipping_method_id is not None:
            terms = await self.shipping.terms(req.shipping_method_id)
            goods = quote.total_cents - sum(cents for _, cents in discounts)
            shipping_cents = shipping_fee(
                terms, address, goods_cents=goods, free_shipping=free_shipping
            )
        cmd = PlaceOrder(
            user_id=user_id,
            idempotency_key=idempotency_key or f"{AUTO_KEY_PREFIX}{uuid.uuid4().hex}",
            request_hash=rhash,
            lines=quote.lines,
            currency=CURRENCY,
            address=address,
            checked=True,
            line_discounts=discounts,
            coupon_ids=coupon_ids,
            shipping_method_id=req.shipping_method_id,
            shipping_cents=shipping_cents,
        )
        placed = await self.shards.place(cmd)
        if placed.created and req.items is None:
            try:
                await self.cart.subtract(owner, quote.items)
            except Exception:  # the order stands; the lines stay in the cart
                log.warning("could not remove ordered lines from cart %s", owner.key)
        return placed.order, placed.created

    async def _quote(
        self, user_id: int, req: OrderRequest, owner: CartOwner, key: str | None
    ) -> tuple[Quote, dict[str, Any], tuple[int, str] | None]:
        """Price the request, pick the address, and see whether ``key`` is taken."""
        s = self.settings
        if req.items is not None:
            lines = normalize_lines(
                req.items, max_qty=s.cart_max_qty_per_line, max_lines=s.order_max_lines
            )
        else:
            lines = await self._cart_lines(owner, req.cart_sku_ids)

        data = await self.quotes.read(user_id, req.address_id, list(lines), key)
        if data.existing is not None:
            return Quote(()), data.address, data.existing
        return price(lines, data.catalog), data.address, None

    async def quote(self, user_id: int, req: OrderRequest) -> dict[str, Any]:
        """What the order would cost now: lines, promotions, the named coupons (or, with
        none named, the best combination of the user's coupons) and why the others are not
        used; nothing is reserved or locked."""
        owner = CartOwner(f"cart:{user_id}", user_id=user_id)
        s = self.settings
        if req.items is not None:
            lines = normalize_lines(
                req.items, max_qty=s.cart_max_qty_per_line, max_lines=s.order_max_lines
            )
        else:
            lines = await self._cart_lines(owner, req.cart_sku_ids)
        catalog = await self._read(lambda ses: repo.load_skus(ses, list(lines)))
        quote = price(lines, catalog)
        view: dict[str, Any] = {"items": [ln.as_dict() for ln in quote.lines]}
        if self.pricer is None:
            view.update(subtotal_cents=quote.total_cents, discount_cents=0)
            view["total_cents"] = quote.total_cents
        else:
            priced = await self.pricer.quote(user_id, quote.lines, req.coupon_ids or None)
            view.update(priced.view())
            view["coupon_ids"] = [str(c.ref) for c in priced.coupons]
        return await self._quote_shipping(user_id, req, view)

    async def _quote_shipping(
        self, user_id: int, req: OrderRequest, view: dict[str, Any]
    ) -> dict[str, Any]:
        """Add the shipping fee (0 without a method) to a quote's total."""
        view["shipping_method_id"] = req.shipping_method_id
        view["shipping_cents"] = 0
        if req.shipping_method_id is None:
            return view
        method_id = req.shipping_method_id
        terms = await self.shipping.terms(method_id)
        address = await self._read(lambda ses: repo.shipping_address(ses, user_id, req.address_id))
        goods = int(view["total_cents"])
        fee = shipping_fee(
            terms, address, goods_cents=goods, free_shipping=bool(view.get("free_shipping"))
        )
        view["shipping_cents"] = fee
        view["total_cents"] = goods + fee
        return view

    async def _replay(self, user_id: int, key: str, rhash: str) -> dict[str, Any] | None:
        found = await self._read(lambda ses: repo.find_by_key(ses, user_id, key))
        if found is None:
            return None
        if found.request_hash != rhash:
            raise IdempotencyMismatch(
                "this Idempotency-Key was used for a different request",
                details={"order_id": str(found.id)},
            )
        return await self.get(user_id, int(found.id))

    async def _cart_lines(self, owner: CartOwner, selected: tuple[int, ...]) -> dict[int, int]:
        in_cart = await self.cart.lines(owner)
        if selected:
            missing = sorted(set(selected) - set(in_cart))
            if missing:
                raise ValidationFailed(
                    "some selected SKUs are not in the cart", details={"sku_ids": missing}
                )
            in_cart = {k: v for k, v in in_cart.items() if k in set(selected)}
        if not in_cart:
            raise ValidationFailed("the cart is empty")
        return normalize_lines(
            in_cart.items(),
            max_qty=self.settings.cart_max_qty_per_line,
            max_lines=self.settings.order_max_lines,
        )

    # ---- reads ----------------------------------------------------------------------
    async def orders(
        self,
        filters: OrderFilters,
        *,
        limit: int,
        before_id: int | None,
        with_items: bool = False,
    ) -> dict[str, Any]:
        """A keyset page of orders, newest first (``raymall.orders.queries``)."""
        return await self._read(
            lambda s: list_orders(
                s, filters, limit=limit, before_id=before_id, with_items=with_items
            )
        )

    async def notifications(
        self, user_id: int, *, limit: int, before_id: int | None
    ) -> dict[str, Any]:
        return await self._read(
            lambda s: list_notifications(s, user_id, limit=limit, before_id=before_id)
        )

    async def get(self, user_id: int | None, order_id: int) -> dict[str, Any]:
        """One order with items and payments; another user's order is NotFound."""

        def read(session: Session) -> dict[str, Any]:
            order = repo.visible_order(session, order_id, user_id)
            view = repo.order_view(order, repo.items_of(session, [order_id])[order_id])
            view["payments"] = pay.payments_of(session, order_id)
            view["coupon_ids"] = held_coupons(session, order_id)
            view["shipments"] = shipments_of(session, order_id)
            return view

        return await self._read(read)

    async def history(self, user_id: int | None, order_id: int) -> list[dict[str, Any]]:
        def read(session: Session) -> list[dict[str, Any]]:
            repo.visible_order(session, order_id, user_id)
            return repo.history(session, order_id)

        return await self._read(read)

    # ---- transitions ----------------------------------------------------------------
    async def _owner(self, order_id: int, user_id: int | None) -> int:
        def read(session: Session) -> tuple[int, int]:
            order = repo.visible_order(session, order_id, user_id)
            return int(order.shard), int(order.user_id)

        shard, owner_id = await self._read(read)
        return self.shards.owner(shard, owner_id)

    async def cancel(
        self, order_id: int, *, user_id: int | None, admin_id: int | None = None
    ) -> dict:
        shard = await self._owner(order_id, user_id)
        role, actor = ("admin", f"admin:{admin_id}") if admin_id else ("user", f"user:{user_id}")
        view = await self.shards.cancel(
            shard, order_id, reason=role, actor=actor, role=role, user_id=user_id
        )
        return await self._fresh(view, order_id, user_id)

    async def move(
        self, order_id: int, to: str, *, role: str, actor_id: int, user_id: int | None = None
    ) -> dict[str, Any]:
        shard = await self._owner(order_id, user_id)
        reasons = {st.SHIPPED: "shipped", st.COMPLETED: "received", st.REFUNDED: "refund"}
        view = await self.shards.move(
            shard,
            order_id,
            to,
            reason=reasons.get(to, to),
            actor=f"{role}:{actor_id}",
            role=role,
            user_id=user_id,
        )
        return await self._fresh(view, order_id, user_id)

    async def _fresh(
        self, view: dict[str, Any], order_id: int, user_id: int | None
    ) -> dict[str, Any]:
        """A retried transition answers only its status: read the order then."""
        return await self.get(user_id, order_id) if view.get("retried") else view

    # ---- payments -------------------------------------------------------------------
    async def pay(self, user_id: int, order_id: int, outcome: str) -> dict[str, Any]:
        """Create (or reuse) a pending payment and hand it to the provider."""

        payment = await self._tx(
            lambda session: pay.start_payment(session, user_id, order_id, outcome, now_ms())
        )
        if self.provider is None:
            raise Unavailable("the payment provider is not deployed")
        charge = {
            "payment_id": payment["id"],
            "order_id": payment["order_id"],
            "amount_cents": payment["amount_cents"],
            "outcome": payment.pop("outcome"),
        }
        try:
            await self.provider.charge(charge)
        except Exception as exc:  # paying again re-sends the same pending payment
            raise Unavailable("the payment provider is unavailable; pay again") from exc
        return payment

    async def callback(
        self, raw: bytes, timestamp: str | None, signature: str | None, remote: str
    ) -> dict[str, Any]:
        """The provider's callback (``raymall.orders.callbacks``)."""
        return await self.callbacks.handle(raw, timestamp, signature, remote)
