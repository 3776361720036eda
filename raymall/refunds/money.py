"""What an OrderShard does with money going back: partial refunds, refund settlement and
retries, over the shard's ``OrderWorkflow`` (its sessions, its per-order lock).

Guarantees:

- **one operation at a time per order**: every refund of an order, its settlement, its
  returns and its transitions run under the order's lock in its shard, each in one
  transaction, and each bound is also a guarded UPDATE in the database
  (``raymall.refunds.ledger``), so Σ refunds <= paid and each line's refunds <= its paid
  amount hold even across a shard restart;
- **idempotent**: a refund is stored under a key naming what it refunds; asking again
  under the key answers the stored refund; a settlement is a compare-and-set, so a
  duplicate callback changes nothing (``duplicate: true``);
- a refund of a return that succeeds moves the return ``received -> refunded`` in the
  transaction that settles it.

The provider is asked by the replica after the shard answers (it sends every pending
refund of the order: ``raymall.returns.service``), so a lost request is re-sent by the
next operation on the order or by ``retry``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from raymall.errors import AmountMismatch, InvalidTransition, NotFound, RefundNotFound
from raymall.ids import now_ms
from raymall.orders import repository as repo
from raymall.orders.ports import OrderSerial
from raymall.refunds import ledger
from raymall.returns import repo as returns_repo
from raymall.returns import states as rs


def refund_rest(order_id: int, key: str, reason: str) -> Callable[[Session], None]:
    """In a transaction: a pending refund of all that is left on the order (if anything
    is), under ``key``. Used by the full refund and the cancel of a paid order, inside the
    transaction of their compare-and-set."""

    def reserve(session: Session) -> None:
        order = repo.get_order(session, order_id)
        assert order is not None
        items = repo.items_of(session, [order_id])[order_id]
        if ledger.left_to_refund(session, order, items)["left_cents"] > 0:
            ledger.reserve(
                session, order, items, key=key, amount_cents=None, reason=reason, now=now_ms()
            )

    return reserve


class MoneyBack:
    """The shard's refund operations (see the module docstring)."""

    def __init__(self, workflow: OrderSerial) -> None:
        self.wf = workflow

    async def refund(
        self,
        order_id: int,
        *,
        key: str,
        amount_cents: int,
        lines: Mapping[int, int] | None,
        reason: str,
        outcome: str = "succeed",
    ) -> dict[str, Any]:
        """An admin's partial refund: a pending refund with its money reserved; answers
        the refund's view with ``created`` (False: the key's earlier refund)."""
        async with self.wf._locked(order_id):

            def write(session: Session) -> dict[str, Any]:
                order = repo.get_order(session, order_id)
                if order is None:
                    raise NotFound(f"order {order_id} not found")
                items = repo.items_of(session, [order_id])[order_id]
                refund, created = ledger.reserve(
                    session,
                    order,
                    items,
                    key=key,
                    amount_cents=amount_cents,
                    lines=lines,
                    reason=reason,
                    outcome=outcome,
                    now=now_ms(),
                )
                return {**ledger.view(refund), "created": created}

            return await self.wf._tx(write)

    async def _order_of(self, refund_id: str) -> int:
        def read(session: Session) -> int:
            refund = ledger.get(session, refund_id)
            if refund is None:
                raise RefundNotFound(f"refund {refund_id} not found")
            return int(refund.order_id)

        return await self.wf._tx(read)

    async def settle(self, refund_id: str, *, succeeded: bool, amount_cents: int) -> dict:
        """Apply a verified refund callback (compare-and-set; duplicates change nothing)."""
        order_id = await self._order_of(refund_id)
        async with self.wf._locked(order_id):

            def write(session: Session) -> dict[str, Any]:
                refund = ledger.get(session, refund_id)
                assert refund is not None
                if amount_cents != int(refund.amount_cents):
                    raise AmountMismatch(
                        "the callback amount does not match the refund",
                        details={"expected_cents": int(refund.amount_cents)},
                    )
                order = repo.get_order(session, order_id)
                assert order is not None
                now = now_ms()
                won, refund = ledger.settle(
                    session, refund_id, succeeded=succeeded, user_id=int(order.user_id), now=now
                )
                if won and succeeded and refund.return_id is not None:
                    ret = returns_repo.get(session, int(refund.return_id))
                    if ret is not None and ret.status == rs.RECEIVED:
                        returns_repo.move(
                            session, ret, rs.REFUNDED, actor="system", note=refund.id, now=now
                        )
                return {
                    "refund_id": refund_id,
                    "refund": refund.status,
                    "order_id": str(order_id),
                    "duplicate": not won,
                }

            return await self.wf._tx(write)

    async def retry(self, refund_id: str, *, outcome: str = "succeed") -> dict[str, Any]:
        """A failed refund asked again (a new refund under its key, the same amount and
        lines); a pending one is answered as it is (the replica sends it again). Two
        retries at once make one refund."""
        order_id = await self._order_of(refund_id)
        async with self.wf._locked(order_id):

            def write(session: Session) -> dict[str, Any]:
                refund = ledger.get(session, refund_id)
                assert refund is not None
                if refund.status == ledger.PENDING:
                    return {**ledger.view(refund), "created": False}
                if refund.status != ledger.FAILED:
                    raise InvalidTransition(
                        f"the refund is {refund.status}",
                        details={"status": refund.status, "to": ledger.PENDING},
                    )
                order = repo.get_order(session, order_id)
                assert order is not None
                items = repo.items_of(session, [order_id])[order_id]
                again, created = ledger.reserve(
                    session,
                    order,
                    items,
                    key=refund.key.rsplit("~", 1)[0],
                    amount_cents=int(refund.amount_cents),
                    lines={int(k): int(v) for k, v in (refund.lines or {}).items()},
                    reason=refund.reason,
                    outcome=outcome,
                    return_id=None if refund.return_id is None else int(refund.return_id),
                    now=now_ms(),
                )
                return {**ledger.view(again), "created": created}

            return await self.wf._tx(write)
