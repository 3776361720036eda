"""Placing an order on its OrderShard: idempotent, and never leaking stock.

``Placement`` is the placement half of ``raymall.orders.workflow.OrderWorkflow``, plain
async Python over a session factory and a stock port. Guarantees:

- **one order per ``(user, Idempotency-Key)``**. Concurrent duplicates share one attempt
  in memory (the shard owns the user); across restarts the unique key in the database
  decides, and the loser releases only its own reservation. Same key with another body:
  ``IdempotencyMismatch`` (409);
- **no leaked stock**: an order's stock is reserved under ``order:{id}`` before the order
  is written; if the write fails the reservation is released (and, should that fail too,
  its deadline, set ``grace_s`` after the order's, returns it);
- **a coupon is held by one order**: the order's coupons are locked in its insert's
  transaction; if one is taken meanwhile, that order alone fails (``CouponUnavailable``)
  and its stock is released;
- placements arriving together share one lookup query and one insert transaction.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from raymall import metrics
from raymall.batching import Batcher
from raymall.db import transaction
from raymall.domain import order_state as st
from raymall.errors import CouponUnavailable, DomainError, IdempotencyMismatch, Unavailable
from raymall.ids import Snowflake, now_ms
from raymall.logs import get_logger
from raymall.orders import repository as repo
from raymall.orders.ports import AUTO_KEY_PREFIX, Placed, PlaceOrder, StockPort

log = get_logger("orders")


class Placement:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        stock: StockPort,
        *,
        shard: int,
        timeout_s: float,
        grace_s: float,
        ids: Snowflake,
    ) -> None:
        self.sessions = sessions
        self.stock = stock
        self.shard = shard
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.ids = ids
        self._inflight: dict[tuple[int, str], asyncio.Future[tuple[str, dict[str, Any]]]] = {}
        self._lookups: Batcher[tuple[int, str], tuple[str, dict[str, Any]] | None] = (
            Batcher.in_thread(self._lookup_batch, max_batch=500, max_inflight=2)
        )
        self._writes: Batcher[repo.NewOrder, None] = Batcher.in_thread(
            self._write_batch, max_batch=200, max_inflight=2
        )

    async def place(self, cmd: PlaceOrder) -> Placed:
        key = (cmd.user_id, cmd.idempotency_key)
        running = self._inflight.get(key)
        if running is not None:
            first_hash, view = await asyncio.shield(running)
            return _replay(cmd, first_hash, view)
        fut: asyncio.Future[tuple[str, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            placed, stored_hash = await self._place(cmd)
            fut.set_result((stored_hash, placed.order))
            return placed
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no warning when nobody else was waiting
            raise
        finally:
            del self._inflight[key]

    async def _existing(self, cmd: PlaceOrder) -> tuple[str, dict[str, Any]] | None:
        return await self._lookups.submit((cmd.user_id, cmd.idempotency_key))

    def _lookup_batch(self, keys: list[tuple[int, str]]) -> list[tuple[str, dict[str, Any]] | None]:
        with self.sessions() as session:
            found = repo.find_by_keys(session, keys)
            items = repo.items_of(session, [int(o.id) for o in found.values()])
            out: list[tuple[str, dict[str, Any]] | None] = []
            for key in keys:
                order = found.get(key)
                out.append(
                    None
                    if order is None
                    else (order.request_hash or "", repo.order_view(order, items[int(order.id)]))
                )
            return out

    def _write_batch(self, news: list[repo.NewOrder]) -> list[None | BaseException]:
        """One transaction for the batch; after a constraint error or a coupon taken, one
        per order, so a duplicate key or a lost coupon fails only its own order."""
        actors = [f"user:{n.user_id}" for n in news]
        try:
            with transaction(self.sessions) as session:
                repo.insert_orders(session, news, actors)
            return [None] * len(news)
        except (IntegrityError, CouponUnavailable) as exc:
            if len(news) == 1:
                return [exc]
        out: list[None | BaseException] = []
        for new, actor in zip(news, actors, strict=True):
            try:
                with transaction(self.sessions) as session:
                    repo.insert_orders(session, [new], [actor])
                out.append(None)
            except Exception as exc:
                out.append(exc)
        return out

    async def _place(self, cmd: PlaceOrder) -> tuple[Placed, str]:
        if not cmd.checked:
            found = await self._existing(cmd)
            if found is not None:
                return _replay(cmd, *found), found[0]
        order_id = self.ids.next_id()
        now = now_ms()
        new = repo.NewOrder(
            order_id=order_id,
            user_id=cmd.user_id,
            shard=self.shard,
            total_cents=sum(line.line_total_cents for line in cmd.lines)
            - sum(cents for _, cents in cmd.line_discounts)
            + cmd.shipping_cents,
            currency=cmd.currency,
            address=cmd.address,
            reservation_key=f"order:{order_id}",
            idempotency_key=cmd.idempotency_key,
            request_hash=cmd.request_hash,
            expires_ms=now + int(self.timeout_s * 1000),
            created_ms=now,
            lines=cmd.lines,
            line_discounts=cmd.line_discounts,
            coupon_ids=cmd.coupon_ids,
            shipping_method_id=cmd.shipping_method_id,
            shipping_cents=cmd.shipping_cents,
        )
        items = {line.sku_id: line.quantity for line in cmd.lines}
        try:
            await self.stock.reserve(new.reservation_key, items, self.timeout_s + self.grace_s)
        except DomainError:
            # e.g. out of stock because an order under this key, stored after the
            # replica's check, took the last units: that order is the answer
            if cmd.checked and not cmd.idempotency_key.startswith(AUTO_KEY_PREFIX):
                found = await self._existing(cmd)
                if found is not None:
                    return _replay(cmd, *found), found[0]
            raise
        try:
            await self._writes.submit(new)
            view = repo.new_order_view(new)
        except IntegrityError:
            await self._release_quietly(new.reservation_key, list(items))
            found = await self._existing(cmd)
            if found is None:
                raise Unavailable("the order could not be stored; retry") from None
            return _replay(cmd, *found), found[0]
        except BaseException as exc:
            await self._release_quietly(new.reservation_key, list(items))
            if isinstance(exc, DomainError) or not isinstance(exc, Exception):
                raise
            raise Unavailable("the order could not be stored; retry") from exc
        metrics.ORDER_TRANSITIONS.labels("none", st.PENDING_PAYMENT, "placed").inc()
        return Placed(view, True), cmd.request_hash

    async def _release_quietly(self, key: str, sku_ids: list[int]) -> None:
        try:
            await self.stock.release(key, sku_ids)
        except Exception:  # the reservation's own deadline returns the stock
            log.warning("could not release %s; its deadline will", key, exc_info=True)


def _replay(cmd: PlaceOrder, first_hash: str, view: dict[str, Any]) -> Placed:
    if first_hash != cmd.request_hash:
        raise IdempotencyMismatch(
            "this Idempotency-Key was used for a different request",
            details={"order_id": view["id"]},
        )
    return Placed(view, False)
