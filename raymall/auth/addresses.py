"""A user's shipping addresses: plain functions over a session (run them in a thread).

Guarantees:
- a user sees and changes only their own addresses: another user's address id is
  ``NotFound``, exactly like an id that does not exist;
- whenever a user has any address, exactly one of them is the default (the first one
  becomes the default, deleting the default promotes the newest remaining one);
- mutations of one user's addresses are serialized by locking the user's row (MySQL;
  SQLite serializes all writers), so concurrent requests cannot create two defaults.

Other areas (orders) read addresses with ``get_address`` / ``default_address``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models import Address, User
from raymall.errors import Conflict, NotFound

MAX_ADDRESSES_PER_USER = 20
FIELDS = ("recipient", "phone", "line1", "line2", "city", "region", "postal_code", "country")


def address_view(address: Address) -> dict[str, Any]:
    view: dict[str, Any] = {name: getattr(address, name) for name in FIELDS}
    view.update(
        id=int(address.id),
        is_default=bool(address.is_default),
        created_ms=int(address.created_ms),
        updated_ms=int(address.updated_ms),
    )
    return view


def list_addresses(session: Session, user_id: int) -> list[Address]:
    stmt = (
        select(Address)
        .where(Address.user_id == user_id)
        .order_by(Address.is_default.desc(), Address.id)
    )
    return list(session.scalars(stmt))


def get_address(session: Session, user_id: int, address_id: int) -> Address:
    """The user's address, or NotFound (also when it belongs to someone else)."""
    address = session.scalar(
        select(Address).where(Address.id == address_id, Address.user_id == user_id)
    )
    if address is None:
        raise NotFound(f"address {address_id} not found")
    return address


def default_address(session: Session, user_id: int) -> Address | None:
    return session.scalar(
        select(Address).where(Address.user_id == user_id, Address.is_default.is_(True))
    )


def create_address(
    session: Session, user_id: int, fields: dict[str, Any], *, make_default: bool, now_ms: int
) -> Address:
    _lock_owner(session, user_id)
    count = session.scalar(select(func.count()).where(Address.user_id == user_id)) or 0
    if count >= MAX_ADDRESSES_PER_USER:
        raise Conflict(f"at most {MAX_ADDRESSES_PER_USER} addresses per account")
    is_default = make_default or count == 0
    if is_default:
        _clear_default(session, user_id)
    address = Address(
        user_id=user_id,
        is_default=is_default,
        created_ms=now_ms,
        updated_ms=now_ms,
        **{name: fields.get(name) or "" for name in FIELDS},
    )
    session.add(address)
    session.flush()
    return address


def update_address(
    session: Session, user_id: int, address_id: int, changes: dict[str, Any], *, now_ms: int
) -> Address:
    _lock_owner(session, user_id)
    address = get_address(session, user_id, address_id)
    make_default = changes.get("is_default")
    if make_default is False and address.is_default:
        raise Conflict("an account with addresses keeps one default; set another one instead")
    for name in FIELDS:
        if changes.get(name) is not None:
            setattr(address, name, changes[name])
    if make_default and not address.is_default:
        _clear_default(session, user_id)
        address.is_default = True
    address.updated_ms = now_ms
    session.flush()
    return address


def set_default(session: Session, user_id: int, address_id: int, *, now_ms: int) -> Address:
    return update_address(session, user_id, address_id, {"is_default": True}, now_ms=now_ms)


def delete_address(session: Session, user_id: int, address_id: int, *, now_ms: int) -> None:
    _lock_owner(session, user_id)
    address = get_address(session, user_id, address_id)
    was_default = bool(address.is_default)
    session.delete(address)
    session.flush()
    if was_default:
        newest = session.scalar(
            select(Address).where(Address.user_id == user_id).order_by(Address.id.desc()).limit(1)
        )
        if newest is not None:
            newest.is_default = True
            newest.updated_ms = now_ms
            session.flush()


def _lock_owner(session: Session, user_id: int) -> None:
    if session.scalar(select(User.id).where(User.id == user_id).with_for_update()) is None:
        raise NotFound(f"user {user_id} not found")


def _clear_default(session: Session, user_id: int) -> None:
    session.execute(
        update(Address)
        .where(Address.user_id == user_id, Address.is_default.is_(True))
        .values(is_default=False)
        .execution_options(synchronize_session=False)
    )
