"""The signed-in user's own data: profile fields and shipping addresses.

Every method takes the caller's user id from the verified token, never from the request
body or path, so a user can only ever reach their own rows (see
``raymall.auth.addresses`` for the address guarantees).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from raymall.auth import addresses, users
from raymall.auth.txn import in_tx
from raymall.ids import now_ms


class ProfileService:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    async def me(self, user_id: int) -> dict[str, Any]:
        user = await in_tx(self.sessions, users.get_user, user_id)
        return users.user_view(user)

    async def update_me(self, user_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        user = await in_tx(self.sessions, users.update_profile, user_id, changes, now_ms())
        return users.user_view(user)

    async def addresses(self, user_id: int) -> list[dict[str, Any]]:
        rows = await in_tx(self.sessions, addresses.list_addresses, user_id)
        return [addresses.address_view(a) for a in rows]

    async def address(self, user_id: int, address_id: int) -> dict[str, Any]:
        row = await in_tx(self.sessions, addresses.get_address, user_id, address_id)
        return addresses.address_view(row)

    async def add_address(
        self, user_id: int, fields: dict[str, Any], *, make_default: bool
    ) -> dict[str, Any]:
        row = await in_tx(
            self.sessions,
            addresses.create_address,
            user_id,
            fields,
            make_default=make_default,
            now_ms=now_ms(),
        )
        return addresses.address_view(row)

    async def update_address(
        self, user_id: int, address_id: int, changes: dict[str, Any]
    ) -> dict[str, Any]:
        row = await in_tx(
            self.sessions,
            addresses.update_address,
            user_id,
            address_id,
            changes,
            now_ms=now_ms(),
        )
        return addresses.address_view(row)

    async def make_default(self, user_id: int, address_id: int) -> dict[str, Any]:
        row = await in_tx(
            self.sessions, addresses.set_default, user_id, address_id, now_ms=now_ms()
        )
        return addresses.address_view(row)

    async def delete_address(self, user_id: int, address_id: int) -> None:
        await in_tx(self.sessions, addresses.delete_address, user_id, address_id, now_ms=now_ms())
