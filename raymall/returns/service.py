"""AfterSalesService: the per-replica side of refunds and returns.

Routes call it; it validates, finds the shard that owns the order, and hands every change
to it (``raymall.refunds.money``, ``raymall.returns.desk`` run there). Guarantees:

- **the provider is asked after the shard has stored the refund**: after each operation
  that may create a refund (a partial or full refund, a cancel after payment, a return's
  receipt, a retry) the replica sends every pending refund of the order to the provider.
  A refund whose request was lost (the replica or the provider failed) is sent again by
  the next such operation on the order or by ``POST /admin/refunds/{id}/retry``; the
  provider's callback settles each refund once;
- an admin refund's ``Idempotency-Key`` names it (``admin:{order}:{sha256(key)}``): the
  same key answers the first refund, with another amount it is 409
  ``idempotency_key_reused``;
- return photos are images of the media upload (``/media/images/...``) that exist;
- reads never cross users: another customer's order or return is 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import Refund
from raymall.catalog.media import URL_PREFIX
from raymall.errors import RefundNotFound, ReturnNotFound, ValidationFailed
from raymall.logs import get_logger
from raymall.orders import repository as repo
from raymall.orders.ports import OrderShards
from raymall.refunds import ledger
from raymall.returns import repo as rrepo
from raymall.returns import states as rs

log = get_logger("returns.service")
T = TypeVar("T")


class RefundGateway(Protocol):
    """The payment provider, as refunds reach it: takes a pending refund (``refund_id``,
    ``payment_id``, ``order_id``, ``amount_cents``, ``outcome``); the result arrives by
    the signed refund callback."""

    async def refund(self, refund: dict[str, Any]) -> None: ...


class PhotoStore(Protocol):
    def url_is_stored(self, url: str) -> bool: ...


def admin_refund_key(order_id: int, idempotency_key: str | None) -> str:
    """The refund key of an admin's partial refund (a fresh one without a client key)."""
    if idempotency_key is None:
        return f"admin:{order_id}:{uuid.uuid4().hex}"
    return f"admin:{order_id}:{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}"


class AfterSalesService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        shards: OrderShards,
        provider: RefundGateway | None,
        photos: PhotoStore | None = None,
    ) -> None:
        self.sessions = sessions
        self.shards = shards
        self.provider = provider
        self.photos = photos

    async def _read(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.sessions() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    async def _owner(self, order_id: int, user_id: int | None = None) -> int:
        def read(session: Session) -> tuple[int, int]:
            order = repo.visible_order(session, order_id, user_id)
            return int(order.shard), int(order.user_id)

        shard, owner_id = await self._read(read)
        return self.shards.owner(shard, owner_id)

    # ---- refunds ------------------------------------------------------------------------
    async def send_pending(self, order_id: int) -> int:
        """Hand every pending refund of the order to the provider; how many were sent.
        A refund that cannot be handed over stays pending (sent again later)."""
        if self.provider is None:
            return 0
        pending = await self._read(
            lambda s: [
                ledger.charge_of(r)
                for r in s.scalars(
                    select(Refund).where(
                        Refund.order_id == order_id, Refund.status == ledger.PENDING
                    )
                )
            ]
        )
        sent = 0
        for charge in pending:
            try:
                await self.provider.refund(charge)
                sent += 1
            except Exception:  # the refund stays pending; a retry sends it again
                log.warning("could not hand refund %s to the provider", charge["refund_id"])
        return sent

    async def refund(
        self,
        order_id: int,
        *,
        amount_cents: int,
        lines: Mapping[int, int] | None,
        reason: str,
        idempotency_key: str | None,
        outcome: str = "succeed",
    ) -> dict[str, Any]:
        """An admin's partial refund of a paid order (``lines``: order item id -> cents)."""
        shard = await self._owner(order_id)
        view: dict[str, Any] = await self.shards.call(
            shard,
            "refund",
            order_id,
            key=admin_refund_key(order_id, idempotency_key),
            amount_cents=amount_cents,
            lines=None if lines is None else dict(lines),
            reason=reason,
            outcome=outcome,
        )
        await self.send_pending(order_id)
        return view

    async def retry_refund(self, refund_id: str, *, outcome: str = "succeed") -> dict[str, Any]:
        def read(session: Session) -> int:
            refund = ledger.get(session, refund_id)
            if refund is None:
                raise RefundNotFound(f"refund {refund_id} not found")
            return int(refund.order_id)

        order_id = await self._read(read)
        shard = await self._owner(order_id)
        view: dict[str, Any] = await self.shards.call(
            shard, "retry_refund", refund_id, outcome=outcome
        )
        await self.send_pending(order_id)
        return view

    async def refunds(self, order_id: int, user_id: int | None) -> dict[str, Any]:
        """An order's refunds and what is left to refund."""

        def read(session: Session) -> dict[str, Any]:
            order = repo.visible_order(session, order_id, user_id)
            items = repo.items_of(session, [order_id])[order_id]
            left = ledger.left_to_refund(session, order, items)
            return {
                "items": [ledger.view(r) for r in ledger.of_order(session, order_id)],
                "refunded_cents": int(order.refunded_cents or 0),
                "left_cents": left["left_cents"],
                "lines": [
                    {
                        "order_item_id": str(i.id),
                        "sku_id": int(i.sku_id),
                        "quantity": int(i.quantity),
                        "paid_cents": ledger.line_paid(i),
                        "refunded_cents": int(i.refunded_cents or 0),
                        "returned_quantity": int(i.returned_quantity or 0),
                    }
                    for i in items
                ],
            }

        return await self._read(read)

    # ---- returns ------------------------------------------------------------------------
    async def _check_photos(self, photos: Sequence[str]) -> None:
        for url in photos:
            if not url.startswith(URL_PREFIX):
                raise ValidationFailed(
                    f"photos must be uploaded images ({URL_PREFIX}...)", details={"url": url}
                )
            if self.photos is not None:
                stored = await asyncio.to_thread(self.photos.url_is_stored, url)
                if not stored:
                    raise ValidationFailed("no uploaded image has this URL", details={"url": url})

    async def request_return(
        self,
        user_id: int,
        order_id: int,
        *,
        lines: Sequence[tuple[int, int]],
        reason: str,
        note: str,
        photos: Sequence[str],
        idempotency_key: str | None,
    ) -> dict[str, Any]:
        await self._check_photos(photos)
        shard = await self._owner(order_id, user_id)
        view: dict[str, Any] = await self.shards.call(
            shard,
            "request_return",
            order_id,
            user_id=user_id,
            lines=list(lines),
            reason=reason,
            note=note,
            photos=list(photos),
            idempotency_key=idempotency_key,
        )
        return view

    async def _return_owner(self, return_id: int, user_id: int | None) -> tuple[int, int]:
        def read(session: Session) -> int:
            ret = rrepo.get(session, return_id)
            if ret is None or (user_id is not None and int(ret.user_id) != user_id):
                raise ReturnNotFound(f"return {return_id} not found")
            return int(ret.order_id)

        order_id = await self._read(read)
        return order_id, await self._owner(order_id)

    async def move_return(
        self,
        return_id: int,
        to: str,
        *,
        role: str,
        actor_id: int,
        user_id: int | None = None,
        tracking: str | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """Approve, reject, ship back (the customer's tracking number) or receive."""
        order_id, shard = await self._return_owner(return_id, user_id)
        view: dict[str, Any] = await self.shards.call(
            shard,
            "move_return",
            return_id,
            to,
            _target=to,
            role=role,
            actor=f"{role}:{actor_id}",
            user_id=user_id,
            tracking=tracking,
            note=note,
        )
        if to == rs.RECEIVED:
            await self.send_pending(order_id)
        if view.get("retried"):
            return await self.get_return(return_id, user_id)
        return view

    async def refund_return(self, return_id: int) -> dict[str, Any]:
        """Ask again for a received return's refund (after a failed one)."""
        order_id, shard = await self._return_owner(return_id, None)
        view: dict[str, Any] = await self.shards.call(shard, "refund_return", return_id)
        await self.send_pending(order_id)
        return view

    async def get_return(self, return_id: int, user_id: int | None) -> dict[str, Any]:
        def read(session: Session) -> dict[str, Any]:
            view = rrepo.full_view(session, return_id)
            if view is None or (user_id is not None and view["user_id"] != user_id):
                raise ReturnNotFound(f"return {return_id} not found")
            return view

        return await self._read(read)

    async def returns(
        self, filters: rrepo.ReturnFilters, *, limit: int, before_id: int | None
    ) -> dict[str, Any]:
        """A keyset page of returns, newest first (a customer's: ``filters.user_id``)."""
        if filters.order_id is not None and filters.user_id is not None:
            await self._owner(filters.order_id, filters.user_id)  # 404 if not theirs
        return await self._read(lambda s: rrepo.page(s, filters, limit=limit, before_id=before_id))
