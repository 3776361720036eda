"""Shipping methods: admin CRUD, the public list, and the terms an order is priced with.

Plain functions over a SQLAlchemy ``Session`` plus ``ShippingMethods``, the replica's
async face over them. Guarantees:

- a method's ``code`` is unique (a second one is ``AlreadyExists``, 409);
- an order is priced with the method's terms read from the database at request time
  (never cached, never from the client); an unknown or inactive method is
  ``ShippingMethodNotFound`` (404);
- deleting a method leaves the orders that used it intact: an order keeps its
  ``shipping_method_id`` and the fee it was charged (``shipping_cents``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models import ShippingMethod
from raymall.db import transaction
from raymall.errors import AlreadyExists, ShippingMethodNotFound
from raymall.ids import now_ms
from raymall.shipping.fees import MethodTerms

T = TypeVar("T")
FIELDS = ("code", "name", "fee_cents", "free_over_cents", "region_fees", "active")


def terms_of(row: ShippingMethod) -> MethodTerms:
    return MethodTerms(
        id=int(row.id),
        code=row.code,
        name=row.name,
        fee_cents=int(row.fee_cents),
        free_over_cents=None if row.free_over_cents is None else int(row.free_over_cents),
        region_fees={str(k): int(v) for k, v in (row.region_fees or {}).items()},
        active=bool(row.active),
    )


def method_view(row: ShippingMethod) -> dict[str, Any]:
    return {
        **terms_of(row).view(),
        "created_ms": int(row.created_ms),
        "updated_ms": int(row.updated_ms),
    }


def list_methods(session: Session, *, include_inactive: bool) -> list[dict[str, Any]]:
    stmt = select(ShippingMethod).order_by(ShippingMethod.fee_cents, ShippingMethod.id)
    if not include_inactive:
        stmt = stmt.where(ShippingMethod.active.is_(True))
    return [method_view(m) for m in session.scalars(stmt)]


def get_method(session: Session, method_id: int) -> ShippingMethod:
    row = session.get(ShippingMethod, method_id)
    if row is None:
        raise ShippingMethodNotFound(f"shipping method {method_id} not found")
    return row


def active_terms(session: Session, method_id: int) -> MethodTerms:
    """The terms an order is priced with; an inactive method is not found."""
    row = session.get(ShippingMethod, method_id)
    if row is None or not row.active:
        raise ShippingMethodNotFound(f"shipping method {method_id} not found")
    return terms_of(row)


def create_method(session: Session, data: dict[str, Any], now: int) -> dict[str, Any]:
    row = ShippingMethod(
        **{k: data[k] for k in FIELDS if k in data}, created_ms=now, updated_ms=now
    )
    row.region_fees = dict(data.get("region_fees") or {})
    row.active = bool(data.get("active", True))
    session.add(row)
    session.flush()
    return method_view(row)


def update_method(
    session: Session, method_id: int, data: dict[str, Any], now: int
) -> dict[str, Any]:
    row = get_method(session, method_id)
    for name in FIELDS:
        if name in data:
            setattr(row, name, data[name])
    row.updated_ms = now
    session.flush()
    return method_view(row)


def delete_method(session: Session, method_id: int) -> None:
    session.delete(get_method(session, method_id))
    session.flush()


class ShippingMethods:
    """The replica's shipping methods (admin CRUD, public list, terms for pricing)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    async def _read(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.sessions() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    async def _tx(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            try:
                with transaction(self.sessions) as session:
                    return fn(session)
            except IntegrityError as exc:
                raise AlreadyExists("a shipping method with this code exists") from exc

        return await asyncio.to_thread(run)

    async def list(self, *, include_inactive: bool = False) -> list[dict[str, Any]]:
        return await self._read(lambda s: list_methods(s, include_inactive=include_inactive))

    async def get(self, method_id: int) -> dict[str, Any]:
        return await self._read(lambda s: method_view(get_method(s, method_id)))

    async def terms(self, method_id: int) -> MethodTerms:
        return await self._read(lambda s: active_terms(s, method_id))

    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self._tx(lambda s: create_method(s, data, now_ms()))

    async def update(self, method_id: int, data: dict[str, Any]) -> dict[str, Any]:
        return await self._tx(lambda s: update_method(s, method_id, data, now_ms()))

    async def delete(self, method_id: int) -> None:
        await self._tx(lambda s: delete_method(s, method_id))
