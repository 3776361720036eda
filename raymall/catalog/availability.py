"""The availability read model: what the inventory owners publish, and each replica's
mirror of it.

An inventory shard decides every change to its SKUs' stock; reads do not ask it. After
each group commit the shard publishes the committed ``available`` of every SKU the batch
touched (``actors.availability_publisher``): one Redis transaction writes them into the
shard's hash ``inv:avail:<shard>`` together with the shard's epoch (one per actor
incarnation) and sequence number, and publishes the same change on the channel
``inv:avail``. A shard with nothing to publish sends a heartbeat every
``availability_heartbeat_ms``. On start and after every reload from the database a shard
publishes its whole state (a reset).

Each replica keeps ``AvailabilityMirror``: the hashes loaded on (re)subscription, then
kept current by the channel's messages, in sequence order. Guarantees:

- **only the owner writes it**, and only committed values (after the transaction that
  holds them returned), in commit order;
- **a page never guesses**: a shard's values are served only while the mirror is
  subscribed, holds the shard's current epoch with no gap in its sequence, and has heard
  from the shard within ``availability_trust_ms``. Otherwise (and for a SKU the mirror
  does not hold) the owner is asked, as before the read model existed; if the owner cannot
  answer, the caller reads the last committed value from the database;
- **staleness**: in steady operation a value is behind the commit by the time the shard
  takes to publish and the replica to receive (a few milliseconds; the histogram
  ``raymall_availability_lag_seconds`` measures it per message). If a shard cannot
  publish (Redis unreachable from it), its heartbeats stop and readers stop trusting it
  within ``availability_trust_ms``;
- a gap (a missed message: a lost connection, a new epoch) reloads that shard's hash;
  messages that arrive during the reload are applied after it, by sequence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from raymall import metrics
from raymall.hashing import shard_for
from raymall.ids import now_ms
from raymall.logs import get_logger

log = get_logger("catalog.availability")

CHANNEL = "inv:avail"
EPOCH_FIELD = "_e"
SEQ_FIELD = "_q"
CHANGE, RESET, BEAT = 0, 1, 2


def hash_key(shard: int) -> str:
    return f"inv:avail:{shard}"


@dataclass(frozen=True)
class Message:
    """One publication of a shard: a change (``pairs`` of sku id and available), a reset
    (the hash was rewritten whole: reload it) or a heartbeat, at sequence ``seq``."""

    shard: int
    epoch: str
    seq: int
    kind: int
    sent_ms: int
    pairs: tuple[tuple[int, int], ...] = ()

    def encode(self) -> bytes:
        flat = [v for pair in self.pairs for v in pair]
        return msgpack.packb(  # type: ignore[no-any-return]
            [self.shard, self.epoch, self.seq, self.kind, self.sent_ms, flat]
        )

    @staticmethod
    def decode(data: bytes) -> Message:
        shard, epoch, seq, kind, sent_ms, flat = msgpack.unpackb(data)
        pairs = tuple(zip(flat[0::2], flat[1::2], strict=True))
        return Message(int(shard), str(epoch), int(seq), int(kind), int(sent_ms), pairs)


class LiveStock(Protocol):
    """The inventory owner's live availability per SKU (``InventoryClient``)."""

    async def availability(self, sku_ids: list[int]) -> Mapping[int, int]: ...


@dataclass
class _Shard:
    epoch: str | None = None
    seq: int = 0
    heard: float = float("-inf")  # monotonic time of the last message or load
    values: dict[int, int] = field(default_factory=dict)
    loading: asyncio.Task[None] | None = None
    buffer: list[Message] = field(default_factory=list)


class AvailabilityMirror:
    """A replica's copy of the availability read model (see the module docstring).

    ``redis`` is an async client whose replies are decoded to ``str``; ``connected`` says
    whether the replica's feed is subscribed now; ``owner`` answers what the mirror cannot.
    Wire it to the feed with ``feed.subscribe(CHANNEL, mirror.on_message, mirror.resync)``.
    """

    def __init__(
        self,
        redis: Any,
        shards: int,
        *,
        trust_s: float,
        owner: LiveStock | None,
        connected: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = redis
        self.shards = shards
        self.trust_s = trust_s
        self.owner = owner
        self.connected = connected
        self.clock = clock
        self._state = [_Shard() for _ in range(shards)]
        self._shard_of: dict[int, int] = {}

    # ---- reads ----------------------------------------------------------------------
    def shard_of(self, sku_id: int) -> int:
        shard = self._shard_of.get(sku_id)
        if shard is None:
            if len(self._shard_of) > 200_000:
                self._shard_of.clear()
            shard = self._shard_of[sku_id] = shard_for(sku_id, self.shards)
        return shard

    def trusted(self, shard: int) -> bool:
        st = self._state[shard]
        return (
            st.epoch is not None
            and st.loading is None
            and self.clock() - st.heard <= self.trust_s
            and self.connected()
        )

    def local(self, sku_ids: Iterable[int]) -> tuple[dict[int, int], list[int]]:
        """What the mirror can answer now, and the SKUs it cannot (their shard is not
        trusted, or the SKU is not in its hash)."""
        found: dict[int, int] = {}
        missing: list[int] = []
        trusted: dict[int, bool] = {}
        for sku in sku_ids:
            shard = self.shard_of(sku)
            ok = trusted.get(shard)
            if ok is None:
                ok = trusted[shard] = self.trusted(shard)
            value = self._state[shard].values.get(sku) if ok else None
            if value is None:
                missing.append(sku)
            else:
                found[sku] = value
        return found, missing

    def in_stock_view(self) -> Callable[[Iterable[int]], bool | None]:
        """A function saying, as of now, whether a product with the given SKUs is in stock:
        True if any is available, False if the mirror knows every one and none is, None if
        it cannot tell (for rendering many cards: trust is decided once)."""
        trusted = [self.trusted(i) for i in range(self.shards)]
        values = [st.values for st in self._state]
        shard_of = self._shard_of

        def in_stock(sku_ids: Iterable[int]) -> bool | None:
            unknown = False
            for sku in sku_ids:
                shard = shard_of.get(sku)
                if shard is None:
                    shard = self.shard_of(sku)
                value = values[shard].get(sku) if trusted[shard] else None
                if value is None:
                    unknown = True
                elif value > 0:
                    return True
            return None if unknown else False

        return in_stock

    async def availability(self, sku_ids: Iterable[int]) -> dict[int, int]:
        """Available units per SKU: the mirror's where it can answer, the owner's for the
        rest. Raises what the owner raises (the caller falls back to the database)."""
        found, missing = self.local(sku_ids)
        if missing:
            metrics.AVAILABILITY_READS.labels("owner").inc(len(missing))
            if self.owner is None:
                raise LookupError("availability owner is not wired")
            live = await self.owner.availability(missing)
            found.update((int(k), int(v)) for k, v in live.items())
        if len(found) > len(missing):
            metrics.AVAILABILITY_READS.labels("mirror").inc(len(found) - len(missing))
        return found

    # ---- the feed -------------------------------------------------------------------
    def on_message(self, data: bytes) -> None:
        try:
            msg = Message.decode(data)
        except Exception as exc:  # a malformed message is not a reason to stop the feed
            log.warning("availability message not understood: %r", exc)
            return
        if not 0 <= msg.shard < self.shards:
            return  # another shard count (a resize in progress): its owner answers
        st = self._state[msg.shard]
        if st.loading is not None:
            st.buffer.append(msg)
            return
        self._apply(msg.shard, st, msg)

    def _apply(self, shard: int, st: _Shard, msg: Message) -> None:
        if msg.kind == RESET or msg.epoch != st.epoch or msg.seq > st.seq + (msg.kind != BEAT):
            self._reload(shard)  # a new incarnation, a rewrite, or a gap
            return
        if msg.seq < st.seq or (msg.kind == BEAT and msg.seq != st.seq):
            return  # older than what the mirror holds
        # (the same sequence again is a re-sent change: its values are absolute)
        st.values.update(msg.pairs)
        st.seq = msg.seq
        st.heard = self.clock()
        if msg.kind == CHANGE:
            metrics.AVAILABILITY_LAG.observe(max(0, now_ms() - msg.sent_ms) / 1000)

    def _reload(self, shard: int) -> None:
        st = self._state[shard]
        if st.loading is None:
            st.loading = asyncio.get_running_loop().create_task(self._load(shard))

    async def resync(self) -> None:
        """After each (re)subscription: reload every shard's hash (messages published
        while the feed was away are lost)."""
        for shard in range(self.shards):
            self._reload(shard)
        tasks = [st.loading for st in self._state if st.loading is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _load(self, shard: int) -> None:
        st = self._state[shard]
        try:
            raw: dict[str, str] = await self.redis.hgetall(hash_key(shard))
            epoch = raw.pop(EPOCH_FIELD, None)
            seq = int(raw.pop(SEQ_FIELD, 0))
            st.values = {int(k): int(v) for k, v in raw.items() if not k.startswith("_")}
            st.epoch, st.seq = epoch, seq
            st.heard = self.clock() if epoch is not None else float("-inf")
        except Exception as exc:  # untrusted until the next message or resync
            log.warning("availability of shard %s not loaded: %r", shard, exc)
            st.epoch = None
        finally:
            st.loading = None
        pending, st.buffer = st.buffer, []
        for msg in pending:
            if st.loading is None:
                self._apply(shard, st, msg)
            else:
                st.buffer.append(msg)

    def stats(self) -> dict[str, Any]:
        return {
            "trusted": [self.trusted(i) for i in range(self.shards)],
            "skus": sum(len(st.values) for st in self._state),
        }
