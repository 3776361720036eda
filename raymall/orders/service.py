"""OrderService: the per-replica side of orders and payments.

Routes call it; it validates, prices on the server, and hands every state change to the
OrderShard that owns the order, through the ``OrderShards`` port
(``raymall.orders.ports``). Guarantees:

- prices come from the catalog rows read here, never from the request;
- the shipping address is one of the caller's (404 otherwise) and is copied into the
  order, so later address edits do not rewrite history;
- ``Idempotency-Key``: the same key and the same (normalized) body give the same order;
  the same key with another body answers 409 ``idempotency_key_reused``. Without a key the
  replica makes one up for the request, so its own retries after a shard restart cannot
  create a second order;
- ordered cart lines leave the cart only after the order is stored;
- payment callbacks are believed only after the signature, the timestamp window and the
  amount check out; anything else is refused and written to ``payment_audit`` (a body
  nested too deeply included: it is ``malformed``, never a 500). Refusals of callbacks
  that are not signed and fresh are rate-limited per client address and in all before
  they are audited (429, no row past the limit); a callback whose signature and
  timestamp check out is never limited, so forgeries cannot crowd out the provider's.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from raymall import jsonin
from raymall.cart import CartOwner, CartStore
from raymall.db import transaction
from raymall.domain import order_state as st
from raymall.domain.pricing import CURRENCY, Quote, normalize_lines, price, request_hash
from raymall.errors import (
    AmountMismatch,
    BadSignature,
    DomainError,
    IdempotencyMismatch,
    InvalidTransition,
    NotFound,
    RateLimited,
    Unavailable,
    ValidationFailed,
)
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.orders import payments as pay
from raymall.orders import repository as repo
from raymall.orders.consumers import list_notifications
from raymall.orders.ports import AUTO_KEY_PREFIX, OrderShards, PaymentGateway, PlaceOrder
from raymall.orders.queries import OrderFilters, list_orders
from raymall.orders.quotes import QuoteReader
from raymall.orders.signing import verify
from raymall.ratelimit import Limit, RateLimiter
from raymall.settings import Settings

log = get_logger("orders.service")
T = TypeVar("T")


@dataclass(frozen=True)
class OrderRequest:
    """What a client may ask for: explicit items, or cart lines (all when ``cart_sku_ids``
    is empty and ``items`` is None)."""

    items: tuple[tuple[int, int], ...] | None
    cart_sku_ids: tuple[int, ...]
    address_id: int | None


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
    ) -> None:
        self.settings = settings
        # refused payment callbacks (None without Redis: not limited)
        self.limiter = RateLimiter(redis) if redis is not None else None
        self.sessions = sessions
        self.shards = shards
        self.cart = cart
        self.provider = provider
        self.quotes = QuoteReader(engine)

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
        cmd = PlaceOrder(
            user_id=user_id,
            idempotency_key=idempotency_key or f"{AUTO_KEY_PREFIX}{uuid.uuid4().hex}",
            request_hash=rhash,
            lines=quote.lines,
            currency=CURRENCY,
            address=address,
            checked=True,
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
            order = (
                repo.get_user_order(session, user_id, order_id)
                if user_id is not None
                else repo.get_order(session, order_id)
            )
            if order is None:
                raise NotFound(f"order {order_id} not found")
            view = repo.order_view(order, repo.items_of(session, [order_id])[order_id])
            view["payments"] = pay.payments_of(session, order_id)
            return view

        return await self._read(read)

    async def history(self, user_id: int | None, order_id: int) -> list[dict[str, Any]]:
        def read(session: Session) -> list[dict[str, Any]]:
            if user_id is not None:
                repo.get_user_order(session, user_id, order_id)
            elif repo.get_order(session, order_id) is None:
                raise NotFound(f"order {order_id} not found")
            return repo.history(session, order_id)

        return await self._read(read)

    # ---- transitions ----------------------------------------------------------------
    async def _owner(self, order_id: int, user_id: int | None) -> int:
        def read(session: Session) -> tuple[int, int]:
            order = (
                repo.get_user_order(session, user_id, order_id)
                if user_id is not None
                else repo.get_order(session, order_id)
            )
            if order is None:
                raise NotFound(f"order {order_id} not found")
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

        def create(session: Session) -> dict[str, Any]:
            order = repo.get_user_order(session, user_id, order_id)
            if order.status != st.PENDING_PAYMENT:
                raise InvalidTransition(
                    f"an order that is {order.status} cannot be paid",
                    details={"status": order.status, "to": st.PAID},
                )
            payment = pay.open_payment(session, order_id)
            if payment is None or payment.outcome != outcome:
                payment = pay.create_payment(session, order, outcome, now_ms())
            return {**pay.payment_view(payment), "outcome": payment.outcome}

        payment = await self._tx(create)
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
        s = self.settings
        reason = verify(
            s.secret("payment_secret"),
            timestamp,
            signature,
            raw,
            now_s=now_ms() / 1000,
            window_s=s.payment_callback_window_s,
        )
        if reason is not None:
            await self._limit_refusals(remote)
            await self._audit(raw, reason, remote)
            raise BadSignature(f"payment callback refused: {reason.replace('_', ' ')}")
        try:
            body = jsonin.loads(raw)
            if not isinstance(body, dict):
                raise TypeError("not an object")
            payment_id = str(body["payment_id"])
            amount = body["amount_cents"]
            status = body["status"]
            if type(amount) is not int or status not in ("succeeded", "failed"):
                raise ValueError("bad amount or status")
        except (ValueError, KeyError, TypeError) as exc:
            await self._audit(raw, "malformed", remote)
            raise ValidationFailed("malformed payment callback") from exc

        def owner(session: Session) -> tuple[int, int, str]:
            payment = pay.get_payment(session, payment_id)
            if payment is None:
                raise NotFound(f"payment {payment_id} not found")
            order = repo.get_order(session, int(payment.order_id))
            assert order is not None
            return int(order.shard), int(order.user_id), str(order.id)

        try:
            shard, owner_id, order_id = await self._read(owner)
            if str(body.get("order_id")) != order_id:
                raise AmountMismatch("the callback names another order")
            return await self.shards.settle(
                self.shards.owner(shard, owner_id),
                payment_id,
                succeeded=status == "succeeded",
                amount_cents=amount,
            )
        except (AmountMismatch, NotFound) as exc:
            await self._audit(raw, exc.code, remote, payment_id)
            raise

    async def _limit_refusals(self, remote: str) -> None:
        """429 past the refused-callback limits (per address, when known, and in all)."""
        s = self.settings
        if self.limiter is None:
            return
        checks = [(Limit("callback_refused", s.payment_callback_refusals_per_min, 60), "all")]
        if remote != "unknown":
            per_ip = s.payment_callback_refusals_per_ip_per_min
            checks.append((Limit("callback_refused_ip", per_ip, 60), remote))
        try:
            decision = await self.limiter.check(*checks)
        except Exception:  # the limits need Redis; the audit does not: audit anyway
            log.warning("payment callback limits unavailable", exc_info=True)
            return
        if not decision.allowed:  # counted by the limiter's metric; a log line each would
            # hand the flood to the logs instead
            raise RateLimited(
                "too many refused payment callbacks; retry later",
                retry_after=decision.retry_after_header,
            )

    async def _audit(
        self, raw: bytes, reason: str, remote: str, payment_id: str | None = None
    ) -> None:
        if payment_id is None:
            try:
                payment_id = str(jsonin.loads(raw).get("payment_id"))[:64]
            except (ValueError, AttributeError):
                payment_id = None
        digest = hashlib.sha256(raw).hexdigest()
        try:
            await self._tx(
                lambda ses: pay.audit(
                    ses,
                    payment_id=payment_id,
                    reason=reason,
                    remote_addr=remote,
                    body_sha256=digest,
                    now=now_ms(),
                )
            )
        except DomainError:
            raise
        except Exception:  # the refusal stands even when the audit row cannot be written
            log.error("could not write the payment audit row (%s)", reason, exc_info=True)
