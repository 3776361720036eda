"""The signed-in user's own data: profile fields, avatar and shipping addresses.

Every method takes the caller's user id from the verified token, never from the request
body or path, so a user can only ever reach their own rows (see
``raymall.auth.addresses`` for the address guarantees). An avatar is an uploaded image
with the checks of every upload (``raymall.catalog.media``: type, magic bytes, size), kept
in the same store as product images (local disk or the object store) and named by its
content; the profile keeps its URL.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from models import User
from raymall.auth import addresses, users
from raymall.auth.txn import in_tx
from raymall.catalog.media import ImageStore
from raymall.errors import Unavailable
from raymall.ids import now_ms


def profile_view(user: User) -> dict[str, Any]:
    """The account as its owner sees it: the public shape plus the avatar."""
    return {**users.user_view(user), "avatar_url": user.avatar_url}


def _set_avatar(session: Session, user_id: int, url: str | None, now: int) -> User:
    user = users.get_user(session, user_id, for_update=True)
    user.avatar_url = url
    user.updated_ms = now
    session.flush()
    return user


class ProfileService:
    def __init__(self, sessions: sessionmaker[Session], media: ImageStore | None = None) -> None:
        self.sessions = sessions
        self.media = media

    async def me(self, user_id: int) -> dict[str, Any]:
        user = await in_tx(self.sessions, users.get_user, user_id)
        return profile_view(user)

    async def update_me(self, user_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        user = await in_tx(self.sessions, users.update_profile, user_id, changes, now_ms())
        return profile_view(user)

    def avatar_limit(self, content_type: str | None) -> int:
        """The most bytes an avatar of this declared type may have, or 415 for a type no
        image store accepts (checked before the body is read)."""
        media = self._media()
        media.check_declared(content_type)
        return media.max_bytes

    async def set_avatar(
        self, user_id: int, data: bytes, content_type: str | None
    ) -> dict[str, Any]:
        """Store the image (413/415 as any upload) and make it the user's avatar."""
        stored = await asyncio.to_thread(self._media().save, data, content_type)
        user = await in_tx(self.sessions, _set_avatar, user_id, str(stored["url"]), now_ms())
        return profile_view(user)

    async def remove_avatar(self, user_id: int) -> dict[str, Any]:
        """The profile without an avatar (the image stays: another user may share it)."""
        user = await in_tx(self.sessions, _set_avatar, user_id, None, now_ms())
        return profile_view(user)

    def _media(self) -> ImageStore:
        if self.media is None:  # a wiring fault, not the caller's
            raise Unavailable("image uploads are not available on this replica")
        return self.media

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
