"""The revocation index in Redis: what every authenticated request checks.

The database is the record (``refresh_families.revoked_ms``, ``users.is_blocked``); this
index mirrors the part of it that can still matter for access tokens, so that a revocation
takes effect at once on every replica for the price of one ``MGET`` per request:

- ``auth:fam:<family id>``: the family is revoked. Kept for the access-token lifetime plus
  the leeway (older access tokens of the family have expired anyway). The same key holding
  ``g<n>`` says the family was refreshed to generation ``n``: its access tokens of older
  generations are retired (a refresh ends the access token it replaces), on every
  replica, with no extra read per request. A revocation overwrites it; it never overwrites
  a revocation, nor a newer generation.
- ``auth:usr:<user id>``: the user is blocked. Kept until the user is unblocked.
- ``auth:epoch``: the index is complete. If Redis lost its data (a restart without
  persistence, a flush) the epoch is gone too; the next check rebuilds the index from the
  database before answering, so a lost index fails closed, never open.

Writers update the database first and the index second, so a rebuild running alongside a
revocation or a block never loses it. (An unblock racing a rebuild can leave the user
flagged; unblocking again clears it. Rebuilds only follow a loss of Redis data.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from raymall.errors import Unavailable
from raymall.ids import now_ms
from raymall.logs import get_logger

FAMILY_PREFIX = "auth:fam:"
USER_PREFIX = "auth:usr:"
EPOCH_KEY = "auth:epoch"
log = get_logger("auth.revocations")


@dataclass(frozen=True)
class Snapshot:
    """What the database says must be flagged right now."""

    blocked_users: list[int]
    revoked_families: list[str]
    # live families refreshed recently enough that older access tokens may still be live:
    # family id -> its current generation
    generations: dict[str, int] = field(default_factory=dict)


SnapshotLoader = Callable[[int], Awaitable[Snapshot]]  # (families revoked since ms) -> ...

# KEYS[1]: the family's flag; ARGV[1] the new generation, ARGV[2] ttl (s). Never lowers a
# generation, never replaces a revocation (any value that is not g<n>).
_ROTATED = """
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 1) ~= 'g' then return 0 end
  if tonumber(string.sub(v, 2)) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], 'g' .. ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""


class RevocationIndex:
    def __init__(
        self,
        redis: Any,
        *,
        family_flag_ttl_s: int,
        load: SnapshotLoader,
        hot_redis: Any = None,
    ) -> None:
        """``redis``: a redis-py asyncio client; ``hot_redis``, if given, serves the
        per-request ``MGET`` (a ``raymall.resp.RespClient`` on the same Redis)."""
        self.redis = redis
        self._reads = hot_redis if hot_redis is not None else redis
        self.family_flag_ttl_s = family_flag_ttl_s
        self._load = load
        self._rebuild_lock = asyncio.Lock()
        self._rotated = redis.register_script(_ROTATED)

    async def status(self, family_id: str, user_id: int, generation: int = 0) -> str | None:
        """``None`` if the token's family and user are in good standing, otherwise
        ``"family_revoked"``, ``"superseded"`` (an access token of a generation before
        the family's latest refresh) or ``"user_blocked"``. One round trip in the steady
        state."""
        keys = (FAMILY_PREFIX + family_id, USER_PREFIX + str(user_id), EPOCH_KEY)
        fam, usr, epoch = await self._reads.mget(keys)
        if epoch is None:
            await self.rebuild()
            fam, usr, _ = await self._reads.mget(keys)
        if usr is not None:
            return "user_blocked"
        if fam is not None:
            return _family_status(fam, generation)
        return None

    async def family_rotated(self, family_id: str, generation: int) -> None:
        """Retire the family's access tokens of generations before ``generation``."""
        await self._rotated(
            keys=[FAMILY_PREFIX + family_id], args=[generation, self.family_flag_ttl_s]
        )

    async def families_revoked(self, family_ids: Iterable[str]) -> None:
        ids = list(family_ids)
        if not ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        for fid in ids:
            pipe.set(FAMILY_PREFIX + fid, "1", ex=self.family_flag_ttl_s)
        await pipe.execute()

    async def user_blocked(self, user_id: int) -> None:
        await self.redis.set(USER_PREFIX + str(user_id), "1")

    async def user_unblocked(self, user_id: int) -> None:
        await self.redis.delete(USER_PREFIX + str(user_id))

    async def rebuild(self) -> None:
        """Copy the database's revocations into Redis, then mark the index complete."""
        async with self._rebuild_lock:
            if await self.redis.exists(EPOCH_KEY):
                return  # another request (or replica) finished it meanwhile
            since = now_ms() - self.family_flag_ttl_s * 1000
            try:
                snapshot = await self._load(since)
            except Exception as exc:
                log.warning("cannot rebuild the revocation index: %s", exc)
                raise Unavailable("token revocation state is unavailable; retry") from exc
            pipe = self.redis.pipeline(transaction=False)
            for fid, gen in snapshot.generations.items():
                pipe.set(FAMILY_PREFIX + fid, f"g{gen}", ex=self.family_flag_ttl_s)
            for uid in snapshot.blocked_users:
                pipe.set(USER_PREFIX + str(uid), "1")
            for fid in snapshot.revoked_families:
                pipe.set(FAMILY_PREFIX + fid, "1", ex=self.family_flag_ttl_s)
            pipe.set(EPOCH_KEY, str(now_ms()))
            await pipe.execute()
            log.info(
                "revocation index rebuilt",
                extra={
                    "blocked_users": len(snapshot.blocked_users),
                    "revoked_families": len(snapshot.revoked_families),
                },
            )


def _family_status(flag: str | bytes, generation: int) -> str | None:
    text = flag.decode() if isinstance(flag, bytes) else flag
    if text[:1] != "g":
        return "family_revoked"
    return "superseded" if generation < int(text[1:]) else None
