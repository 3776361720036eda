"""The RBAC table, cached in each replica.

Grants are (role, resource, action) rows of the ``permissions`` table. Each replica keeps
the whole table in memory (it is tiny) and reloads it in the background once it is older
than ``ttl_s``; a check never waits for the database except for the very first load. A
failed reload keeps the last good table and is retried on the next check, so a database
hiccup never turns into a wave of 403s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from raymall.logs import get_logger

Grant = tuple[str, str, str]
GrantLoader = Callable[[], Awaitable[set[Grant]]]
log = get_logger("auth.permissions")


class PermissionCache:
    def __init__(self, load: GrantLoader, *, ttl_s: float) -> None:
        self._load = load
        self.ttl_s = ttl_s
        self._grants: frozenset[Grant] | None = None
        self._loaded_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._first_load = asyncio.Lock()

    @property
    def grants(self) -> frozenset[Grant]:
        return self._grants or frozenset()

    async def allowed(self, role: str, resource: str, action: str) -> bool:
        if self._grants is None:
            async with self._first_load:
                if self._grants is None:
                    await self.reload()
        elif time.monotonic() - self._loaded_at > self.ttl_s:
            self._refresh_in_background()
        return (role, resource, action) in self.grants

    async def reload(self) -> None:
        grants = await self._load()
        self._grants = frozenset(grants)
        self._loaded_at = time.monotonic()

    def _refresh_in_background(self) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._safe_reload())

    async def _safe_reload(self) -> None:
        try:
            await self.reload()
        except Exception as exc:  # keep serving the last good table
            log.warning("permission reload failed, keeping the cached table: %s", exc)
