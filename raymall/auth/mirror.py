"""The replica's copy of the revocation index: verifying an access token reads no Redis.

The index (``raymall.auth.revocations``) is loaded whole when the replica's feed
(``raymall.feed``) subscribes, and again after every reconnection; between loads each
write's message keeps it current. Guarantees:

- **Same answers as the index**: ``status`` says ``family_revoked``, ``superseded`` or
  ``user_blocked`` exactly when ``RevocationIndex.status`` would for the same state (a
  revocation beats any generation, a generation never goes back).
- **This replica's own writes count at once**: a writer applies its change here right
  after writing the index, before the message comes back.
- **A write returns once every replica listening has applied it**: each mirror
  acknowledges every message it applies, and ``RevocationWriter`` waits for as many
  acknowledgements as Redis had receivers (at most ``ack_timeout_s``), so a client whose
  logout has returned meets no replica that still takes the session's tokens.
- **Staleness**: a replica whose feed is connected is behind the index by the delivery
  of one pub/sub message (milliseconds). While Redis is unreachable it answers from the
  copy it had when the connection dropped; what was written meanwhile reaches it with the
  snapshot taken on reconnection. ``max_stale_s`` > 0 bounds that: past it, ``status``
  refuses (``Unavailable``) instead of answering from an old copy.
- **Fails closed**: until the first load, ``status`` raises ``Unavailable`` (503); it
  never answers "in good standing" from an empty copy.
- **A write the index missed is not lost with Redis**: a writer whose index write failed
  after the database committed (Redis went away in between) applies it here and leaves
  it in ``pending``; the next resync writes it to the index before loading the snapshot.

Flags of families expire after the index's ttl (older access tokens of the family have
expired by then); ``prune`` drops them. ``RevocationWriter`` is how the auth service writes a
committed change: this replica's mirror first, then the index.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from raymall.auth.revocations import Published, RevocationIndex
from raymall.errors import Unavailable
from raymall.feed import REDIS_FAULTS, RedisHealth, store_down
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.metrics import REVOCATION_ACK_TIMEOUTS

log = get_logger("auth.mirror")

REVOKED = -1  # a family's state: revoked, or the generation its tokens must have reached
PRUNE_EVERY_S = 10.0  # at most one sweep of expired families this often
PendingWrite = Callable[[RevocationIndex], Awaitable[Published | None]]


class RevocationMirror:
    def __init__(
        self,
        index: RevocationIndex,
        *,
        max_stale_s: float = 0.0,
        connected: Callable[[], bool] | None = None,
        down_since_ms: Callable[[], int | None] | None = None,
    ) -> None:
        """``connected`` / ``down_since_ms``: the feed's (``raymall.feed.Feed``), used
        for the ``max_stale_s`` bound and for readiness."""
        self.index = index
        self.ttl_ms = index.family_flag_ttl_s * 1000
        self.max_stale_s = max_stale_s
        self._connected = connected or (lambda: True)
        self._down_since_ms = down_since_ms or (lambda: None)
        self.families: dict[str, tuple[int, int]] = {}  # id -> (REVOKED or gen, expires ms)
        self.blocked: set[int] = set()
        self.loaded_ms: int | None = None  # wall clock of the last completed load
        self.pending: list[PendingWrite] = []
        self._pruned = time.monotonic()
        self._acking: set[asyncio.Task[None]] = set()

    # ---- reads ---------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self.loaded_ms is not None

    def status(self, family_id: str, user_id: int, generation: int = 0) -> str | None:
        """As ``RevocationIndex.status``, from memory; ``Unavailable`` if never loaded, or
        if the feed has been down longer than ``max_stale_s`` (when that is set)."""
        if self.loaded_ms is None:
            raise Unavailable(
                "token revocation state is not loaded yet; retry", details={"retry_after": 1}
            )
        if self.max_stale_s > 0:
            down = self._down_since_ms()
            if down is not None and now_ms() - down > self.max_stale_s * 1000:
                raise Unavailable(
                    "token revocation state is too old to trust; retry",
                    details={"retry_after": 1},
                )
        if user_id in self.blocked:
            return "user_blocked"
        held = self.families.get(family_id)
        if held is None:
            return None
        state, expires = held
        if expires <= now_ms():
            return None
        if state == REVOKED:
            return "family_revoked"
        return "superseded" if generation < state else None

    def view(self) -> dict[str, object]:
        """For readiness: loaded, since when, how many flags, and the feed's state."""
        return {
            "loaded": self.loaded,
            "loaded_ms": self.loaded_ms,
            "families": len(self.families),
            "blocked_users": len(self.blocked),
            "connected": self._connected(),
            "down_since_ms": self._down_since_ms(),
            "pending": len(self.pending),
        }

    # ---- changes -----------------------------------------------------------------------------
    def family_revoked(self, family_id: str) -> None:
        self.families[family_id] = (REVOKED, now_ms() + self.ttl_ms)

    def family_rotated(self, family_id: str, generation: int) -> None:
        held = self.families.get(family_id)
        if held is not None and (held[0] == REVOKED or held[0] >= generation):
            return
        self.families[family_id] = (generation, now_ms() + self.ttl_ms)

    def user_blocked(self, user_id: int) -> None:
        self.blocked.add(user_id)

    def user_unblocked(self, user_id: int) -> None:
        self.blocked.discard(user_id)

    def apply(self, message: bytes) -> None:
        """One message of the index's channel (the feed's handler), acknowledged once
        applied when it carries a sequence number."""
        text = message.decode()
        head, _, body = text.partition(" ")
        seq = int(head) if head.isdigit() else 0
        kind, _, rest = (body if seq else text).partition(" ")
        if kind == "r":
            self.family_revoked(rest)
        elif kind == "g":
            fid, _, gen = rest.rpartition(" ")
            self.family_rotated(fid, int(gen))
        elif kind == "b":
            self.user_blocked(int(rest))
        elif kind == "u":
            self.user_unblocked(int(rest))
        else:
            raise ValueError(f"unknown revocation message {message[:40]!r}")
        if seq:
            self._ack(seq)
        if time.monotonic() - self._pruned > PRUNE_EVERY_S:
            self.prune()

    def _ack(self, seq: int) -> None:
        task = asyncio.get_running_loop().create_task(self.index.ack(seq))
        self._acking.add(task)
        task.add_done_callback(self._acked)

    def _acked(self, task: asyncio.Task[None]) -> None:
        self._acking.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # the writer waits its bound out; the change itself is applied here
            log.warning("revocation message not acknowledged: %s", task.exception())

    def prune(self) -> None:
        self._pruned = time.monotonic()
        now = now_ms()
        for fid in [fid for fid, (_, expires) in self.families.items() if expires <= now]:
            del self.families[fid]

    # ---- loads -------------------------------------------------------------------------------
    async def resync(self) -> None:
        """Write what the index missed, then replace the copy with the index's snapshot
        (the feed's resync: messages that arrive meanwhile are applied after it)."""
        while self.pending:
            await self.pending[0](self.index)
            self.pending.pop(0)
        started = time.perf_counter()
        view = await self.index.snapshot()
        families: dict[str, tuple[int, int]] = {}
        for fid, (flag, expires) in view.families.items():
            families[fid] = (REVOKED if flag[:1] != "g" else int(flag[1:]), expires)
        self.families = families
        self.blocked = set(view.blocked_users)
        self.loaded_ms = now_ms()
        log.info(
            "revocation mirror loaded",
            extra={
                "families": len(families),
                "blocked_users": len(self.blocked),
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )


class RevocationWriter:
    """Writes a change the database has committed: to this replica's mirror at once (if
    there is one), then to the index, whose message reaches the other replicas; then waits
    (at most ``ack_timeout_s``; 0: not at all) until every mirror that received the message
    has applied it. If Redis fails at that moment the index write waits in the mirror for
    its next resync (without a mirror: ``Unavailable``)."""

    def __init__(
        self,
        index: RevocationIndex,
        mirror: RevocationMirror | None,
        health: RedisHealth,
        *,
        ack_timeout_s: float = 1.0,
    ) -> None:
        self.index, self.mirror, self.health = index, mirror, health
        self.ack_timeout_s = ack_timeout_s

    async def families_revoked(self, family_ids: list[str]) -> None:
        ids = list(family_ids)
        if not ids:
            return

        def local(mirror: RevocationMirror) -> None:
            for fid in ids:
                mirror.family_revoked(fid)

        await self._write(lambda index: index.families_revoked(ids), local)

    async def family_rotated(self, family_id: str, generation: int) -> None:
        await self._write(
            lambda index: index.family_rotated(family_id, generation),
            lambda mirror: mirror.family_rotated(family_id, generation),
        )

    async def user_blocked(self, user_id: int, blocked: bool) -> None:
        if blocked:
            await self._write(
                lambda index: index.user_blocked(user_id),
                lambda mirror: mirror.user_blocked(user_id),
            )
        else:
            await self._write(
                lambda index: index.user_unblocked(user_id),
                lambda mirror: mirror.user_unblocked(user_id),
            )

    async def _write(self, write: PendingWrite, local: Callable[[RevocationMirror], None]) -> None:
        if self.mirror is not None:
            local(self.mirror)
        try:
            published = await write(self.index)
        except REDIS_FAULTS as exc:
            self.health.failed()
            if self.mirror is None:
                raise store_down("the change") from exc
            self.mirror.pending.append(write)
            log.warning("revocation index write deferred to the next resync: %s", exc)
            return
        if published is None or self.ack_timeout_s <= 0:
            return
        try:
            if await self.index.acked(published, self.ack_timeout_s):
                return
            reason = "not every replica acknowledged in time"
        except REDIS_FAULTS as exc:  # the write is in the index: it reaches them anyway
            self.health.failed()
            reason = f"Redis failed while waiting: {exc}"
        REVOCATION_ACK_TIMEOUTS.inc()
        log.warning(
            "revocation message %d: %s (%d receivers)", published.seq, reason, published.receivers
        )
