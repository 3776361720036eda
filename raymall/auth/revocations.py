"""The revocation index in Redis: the source of every replica's revocation mirror.

The database is the record (``refresh_families.revoked_ms``, ``users.is_blocked``); this
index holds the part of it that can still matter for access tokens. Every replica keeps a
copy in memory (``raymall.auth.mirror``), loaded from ``snapshot()`` and kept current by
the message each write publishes on the index's channel, so verifying an access token
reads no Redis at all. The keys:

- ``auth:fam:<family id>``: the family is revoked. Kept for the access-token lifetime plus
  the leeway (older access tokens of the family have expired anyway). The same key holding
  ``g<n>`` says the family was refreshed to generation ``n``: its access tokens of older
  generations are retired (a refresh ends the access token it replaces), on every
  replica, with no extra read per request. A revocation overwrites it; it never overwrites
  a revocation, nor a newer generation.
- ``auth:usr:<user id>``: the user is blocked. Kept until the user is unblocked.
- ``auth:epoch``: the index is complete. If Redis lost its data (a restart without
  persistence, a flush) the epoch is gone too; the next snapshot (or check) rebuilds the
  index from the database before answering, so a lost index fails closed, never open.
- ``auth:fams`` (sorted set: family id -> expiry ms) and ``auth:blocked`` (set of user
  ids): the catalogue of the flags, so that a snapshot reads them without a key scan.

- ``auth:seq``: the sequence number of the last message; ``auth:ack:<n>``: how many
  mirrors have applied message ``n`` (kept ``ACK_TTL_S``).

Each write sets its flag, its catalogue entry and publishes its message (``<n> r
<family>``, ``<n> g <family> <generation>``, ``<n> b <user>``, ``<n> u <user>``, ``n``
from ``auth:seq``) in one script, so a message goes out exactly when the index changed.
Messages carry state, not deltas: applying one twice, or after a snapshot that already
holds it, changes nothing. The script returns the sequence number and how many
subscribers Redis handed the message to; a mirror acknowledges each message it applies
(``ack``), so a writer can wait until every one of them has (``acked``): a logout returns
only once every replica that was listening refuses the session's tokens.

Writers update the database first and the index second, so a rebuild running alongside a
revocation or a block never loses it. (An unblock racing a rebuild can leave the user
flagged; unblocking again clears it. Rebuilds only follow a loss of Redis data.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from raymall.errors import Unavailable
from raymall.ids import now_ms
from raymall.logs import get_logger

FAMILY_PREFIX = "auth:fam:"
USER_PREFIX = "auth:usr:"
EPOCH_KEY = "auth:epoch"
FAMILIES_KEY = "auth:fams"
BLOCKED_KEY = "auth:blocked"
SEQ_KEY = "auth:seq"
ACK_PREFIX = "auth:ack:"
ACK_TTL_S = 60  # a message's acknowledgement count outlives any writer's wait
ACK_POLL_FIRST_S = 0.0005  # a writer reads the count after this, then twice as long, ...
ACK_POLL_MAX_S = 0.02  # ... up to this
log = get_logger("auth.revocations")


@dataclass(frozen=True)
class Snapshot:
    """What the database says must be flagged right now."""

    blocked_users: list[int]
    revoked_families: list[str]
    # live families refreshed recently enough that older access tokens may still be live:
    # family id -> its current generation
    generations: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    """A write's message: its sequence number and how many subscribers received it."""

    seq: int
    receivers: int


SnapshotLoader = Callable[[int], Awaitable[Snapshot]]  # (families revoked since ms) -> ...

# Each script returns {sequence number, receivers} of the message it published ({0, 0}
# when it published none): see ``Published``.
#
# KEYS: the family's flag, the family catalogue, the sequence; ARGV: family id, the new
# generation, ttl (s), channel ("" for none). Never lowers a generation, never replaces a
# revocation (any value that is not g<n>). Each write also drops the catalogue's expired
# entries.
_ROTATED = """
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 1) ~= 'g' then return {0, 0} end
  if tonumber(string.sub(v, 2)) >= tonumber(ARGV[2]) then return {0, 0} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], 'g' .. ARGV[2], 'EX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + ttl * 1000, ARGV[1])
if ARGV[4] == '' then return {0, 0} end
local seq = redis.call('INCR', KEYS[3])
return {seq, redis.call('PUBLISH', ARGV[4], seq .. ' g ' .. ARGV[1] .. ' ' .. ARGV[2])}
"""

# KEYS: the family catalogue, the sequence, then one flag per family; ARGV: ttl (s),
# channel, then the family ids.
_REVOKED = """
local t = redis.call('TIME')
local ttl = tonumber(ARGV[1])
local expires = tonumber(t[1]) * 1000 + ttl * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(t[1]) * 1000)
local seq, receivers = 0, 0
if ARGV[2] ~= '' then seq = redis.call('INCR', KEYS[2]) end
for i = 3, #KEYS do
  local fid = ARGV[i]
  redis.call('SET', KEYS[i], '1', 'EX', ttl)
  redis.call('ZADD', KEYS[1], expires, fid)
  if ARGV[2] ~= '' then
    receivers = receivers + redis.call('PUBLISH', ARGV[2], seq .. ' r ' .. fid)
  end
end
return {seq, receivers}
"""

# KEYS: the user's flag, the blocked catalogue, the sequence; ARGV: user id, "1" block /
# "0" unblock, channel.
_BLOCKED = """
if ARGV[2] == '1' then
  redis.call('SET', KEYS[1], '1')
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[1])
end
if ARGV[3] == '' then return {0, 0} end
local seq = redis.call('INCR', KEYS[3])
local message = seq .. ' ' .. (ARGV[2] == '1' and 'b ' or 'u ') .. ARGV[1]
return {seq, redis.call('PUBLISH', ARGV[3], message)}
"""

SNAPSHOT_CHUNK = 1000  # flags read per MGET when a snapshot is taken


@dataclass(frozen=True)
class IndexView:
    """The index as a snapshot read it: family id -> flag (``"1"`` revoked, ``"g<n>"``
    refreshed to generation n) with its expiry (wall-clock ms), and the blocked users."""

    families: dict[str, tuple[str, int]]
    blocked_users: set[int]


class RevocationIndex:
    def __init__(
        self,
        redis: Any,
        *,
        family_flag_ttl_s: int,
        load: SnapshotLoader,
        hot_redis: Any = None,
        channel: str = "",
    ) -> None:
        """``redis``: a redis-py asyncio client; ``hot_redis``, if given, serves the
        ``MGET`` of ``status`` (a ``raymall.resp.RespClient`` on the same Redis);
        ``channel``: where each write publishes its message ("": nowhere)."""
        self.redis = redis
        self._reads = hot_redis if hot_redis is not None else redis
        self.family_flag_ttl_s = family_flag_ttl_s
        self.channel = channel
        self._load = load
        self._rebuild_lock = asyncio.Lock()
        self._rotated = redis.register_script(_ROTATED)
        self._revoked = redis.register_script(_REVOKED)
        self._blocked = redis.register_script(_BLOCKED)

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

    async def family_rotated(self, family_id: str, generation: int) -> Published | None:
        """Retire the family's access tokens of generations before ``generation``."""
        return _published(
            await self._rotated(
                keys=[FAMILY_PREFIX + family_id, FAMILIES_KEY, SEQ_KEY],
                args=[family_id, generation, self.family_flag_ttl_s, self.channel],
            )
        )

    async def families_revoked(self, family_ids: Iterable[str]) -> Published | None:
        ids = list(family_ids)
        if not ids:
            return None
        return _published(
            await self._revoked(
                keys=[FAMILIES_KEY, SEQ_KEY, *(FAMILY_PREFIX + fid for fid in ids)],
                args=[self.family_flag_ttl_s, self.channel, *ids],
            )
        )

    async def user_blocked(self, user_id: int) -> Published | None:
        return _published(
            await self._blocked(
                keys=[USER_PREFIX + str(user_id), BLOCKED_KEY, SEQ_KEY],
                args=[user_id, "1", self.channel],
            )
        )

    async def user_unblocked(self, user_id: int) -> Published | None:
        return _published(
            await self._blocked(
                keys=[USER_PREFIX + str(user_id), BLOCKED_KEY, SEQ_KEY],
                args=[user_id, "0", self.channel],
            )
        )

    async def ack(self, seq: int) -> None:
        """A mirror has applied message ``seq``."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(ACK_PREFIX + str(seq))
        pipe.expire(ACK_PREFIX + str(seq), ACK_TTL_S)
        await pipe.execute()

    async def acked(self, published: Published, timeout_s: float) -> bool:
        """Wait until every subscriber that received ``published`` has applied it (True),
        or ``timeout_s`` has passed (False: one died, or is too slow to answer)."""
        if published.receivers <= 0:
            return True
        key = ACK_PREFIX + str(published.seq)
        deadline = time.monotonic() + timeout_s
        pause = ACK_POLL_FIRST_S
        while True:
            count = await self.redis.get(key)
            if count is not None and int(count) >= published.receivers:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, ACK_POLL_MAX_S)

    async def snapshot(self) -> IndexView:
        """The whole index, for a mirror's (re)load; rebuilt from the database first if it
        was lost (``Unavailable`` when the database cannot say)."""
        if not await self.redis.exists(EPOCH_KEY):
            await self.rebuild()
        now = now_ms()
        await self.redis.zremrangebyscore(FAMILIES_KEY, "-inf", now)
        listed = await self.redis.zrangebyscore(FAMILIES_KEY, now, "+inf", withscores=True)
        families: dict[str, tuple[str, int]] = {}
        for start in range(0, len(listed), SNAPSHOT_CHUNK):
            chunk = listed[start : start + SNAPSHOT_CHUNK]
            flags = await self.redis.mget([FAMILY_PREFIX + _str(fid) for fid, _ in chunk])
            for (fid, expires), flag in zip(chunk, flags, strict=True):
                if flag is not None:
                    families[_str(fid)] = (_str(flag), int(expires))
        blocked = {int(uid) for uid in await self.redis.smembers(BLOCKED_KEY)}
        return IndexView(families, blocked)

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
            ttl = self.family_flag_ttl_s
            expires = now_ms() + ttl * 1000
            pipe = self.redis.pipeline(transaction=False)
            for fid, gen in snapshot.generations.items():
                pipe.set(FAMILY_PREFIX + fid, f"g{gen}", ex=ttl)
                pipe.zadd(FAMILIES_KEY, {fid: expires})
            for uid in snapshot.blocked_users:
                pipe.set(USER_PREFIX + str(uid), "1")
                pipe.sadd(BLOCKED_KEY, str(uid))
            for fid in snapshot.revoked_families:
                pipe.set(FAMILY_PREFIX + fid, "1", ex=ttl)
                pipe.zadd(FAMILIES_KEY, {fid: expires})
            pipe.set(EPOCH_KEY, str(now_ms()))
            await pipe.execute()
            log.info(
                "revocation index rebuilt",
                extra={
                    "blocked_users": len(snapshot.blocked_users),
                    "revoked_families": len(snapshot.revoked_families),
                },
            )


def _published(reply: Any) -> Published | None:
    seq, receivers = (int(v) for v in reply)
    return Published(seq, receivers) if seq else None


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _family_status(flag: str | bytes, generation: int) -> str | None:
    text = flag.decode() if isinstance(flag, bytes) else flag
    if text[:1] != "g":
        return "family_revoked"
    return "superseded" if generation < int(text[1:]) else None
