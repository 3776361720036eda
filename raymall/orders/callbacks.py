"""The payment provider's callbacks (payments and refunds), as a replica receives them.

Guarantees:
- a callback is believed only after its signature, its timestamp window and its amount
  check out, and is then settled by the OrderShard that owns the order; anything else is
  refused (4xx in the one error shape) and written to ``payment_audit``, whatever its body:
  a body nested too deeply is ``malformed`` (``raymall.jsonin``), never a 500;
- refusals of callbacks that are not signed and fresh are rate-limited per client address
  (when known) and in all before they are audited: past the limits they answer 429 and
  write no row, so forgeries cannot fill the table. A callback whose signature and
  timestamp check out is never limited, so forgeries cannot crowd out the provider's. If
  the limits cannot be checked (Redis down) the refusal is audited anyway;
- a refund callback (``handle_refund``) is checked the same way (signature, window, the
  refund's amount, payment and order) and settled by the order's shard by compare-and-set;
  its refusals are audited in ``payment_audit`` under the refund id, reasons prefixed
  ``refund_``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.orm import Session

from models import Refund
from raymall import jsonin
from raymall.errors import (
    AmountMismatch,
    BadSignature,
    DomainError,
    NotFound,
    RateLimited,
    RefundNotFound,
    ValidationFailed,
)
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.orders import payments as pay
from raymall.orders import repository as repo
from raymall.orders.ports import OrderShards
from raymall.orders.signing import verify
from raymall.ratelimit import Limit, RateLimiter
from raymall.settings import Settings

log = get_logger("orders.callbacks")
# runs a function over a Session in a worker thread (a read, or one transaction)
SessionRunner = Callable[[Callable[[Session], Any]], Awaitable[Any]]


class PaymentCallbacks:
    def __init__(
        self,
        settings: Settings,
        shards: OrderShards,
        *,
        read: SessionRunner,
        tx: SessionRunner,
        limiter: RateLimiter | None,
    ) -> None:
        self.settings = settings
        self.shards = shards
        self._read = read
        self._tx = tx
        self.limiter = limiter  # None: refusals are not limited

    async def handle(
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

        def owner(session: Session) -> tuple[int, int, int]:
            found = pay.payment_owner(session, payment_id)
            if found is None:
                raise NotFound(f"payment {payment_id} not found")
            return found

        try:
            order_id, shard, owner_id = await self._read(owner)
            if str(body.get("order_id")) != str(order_id):
                raise AmountMismatch("the callback names another order")
            return await self.shards.settle(
                self.shards.owner(shard, owner_id),
                payment_id,
                succeeded=status == "succeeded",
                amount_cents=amount,
                order_id=order_id,
            )
        except (AmountMismatch, NotFound) as exc:
            await self._audit(raw, exc.code, remote, payment_id)
            raise

    async def handle_refund(
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
            await self._audit(raw, f"refund_{reason}", remote, _refund_id(raw))
            raise BadSignature(f"refund callback refused: {reason.replace('_', ' ')}")
        try:
            body = jsonin.loads(raw)
            if not isinstance(body, dict):
                raise TypeError("not an object")
            refund_id = str(body["refund_id"])[:64]
            amount = body["amount_cents"]
            status = body["status"]
            if type(amount) is not int or status not in ("succeeded", "failed"):
                raise ValueError("bad amount or status")
        except (ValueError, KeyError, TypeError) as exc:
            await self._audit(raw, "refund_malformed", remote, _refund_id(raw))
            raise ValidationFailed("malformed refund callback") from exc

        def owner(session: Session) -> tuple[int, int, str, str]:
            refund = session.get(Refund, refund_id)
            if refund is None:
                raise RefundNotFound(f"refund {refund_id} not found")
            order = repo.get_order(session, int(refund.order_id))
            assert order is not None
            return int(order.shard), int(order.user_id), str(order.id), str(refund.payment_id)

        try:
            shard, owner_id, order_id, payment_id = await self._read(owner)
            if str(body.get("order_id")) != order_id or body.get("payment_id") != payment_id:
                raise AmountMismatch("the refund callback names another order or payment")
            result: dict[str, Any] = await self.shards.call(
                self.shards.owner(shard, owner_id),
                "settle_refund",
                refund_id,
                succeeded=status == "succeeded",
                amount_cents=amount,
            )
            return result
        except (AmountMismatch, NotFound) as exc:
            reason = exc.code if exc.code.startswith("refund_") else f"refund_{exc.code}"
            await self._audit(raw, reason, remote, refund_id)
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


def _refund_id(raw: bytes) -> str | None:
    try:
        found = jsonin.loads(raw).get("refund_id")
    except (ValueError, AttributeError):
        return None
    return None if found is None else str(found)[:64]
