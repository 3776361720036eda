"""Rate limits shared by every replica, kept in Redis and decided by one Lua script.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket stored as one
number): a ``Limit(name, limit, period_s, burst)`` admits ``limit`` events per
``period_s`` on average and up to ``burst`` (default ``limit``) at once. Each key holds
only its "theoretical arrival time", so memory is one short string per active key and the
key expires by itself once the bucket is full again.

Guarantees:
- one round trip per decision, however many limits are checked together;
- several limits checked in one call are all-or-nothing: a request is charged to every
  limit only when every limit admits it (a per-user, per-IP and per-event limit never
  leak tokens to each other);
- the clock is Redis's ``TIME``, so replicas with skewed clocks agree;
- ``check`` admits and charges in one step, so a caller that charges *before* doing the
  costly thing (a password hash) lets through at most ``burst`` of any number of
  concurrent callers; ``refund`` gives a charge back, atomically too (a sign-in that
  succeeded was not a failure);
- every decision is counted in ``raymall_rate_limit_decisions_total{rule, decision}``;
- with a ``LimitFallback``, a limiter keeps deciding while Redis is unreachable: the same
  GCRA in the replica's memory (``LocalBuckets``), each limit's rate and burst divided by
  the number of ingress replicas, so the replicas together admit about what the shared
  limit would. It goes back to the shared limits as soon as Redis is usable again
  (``raymall.feed.RedisHealth``); the gauge ``raymall_ratelimit_mode{mode}`` says which
  mode is in force. A limiter without one (the sign-in guard, whose budgets must be
  shared) fails with the Redis error (503).

Usage::

    limiter = RateLimiter(app_ctx.redis)
    PER_USER = Limit("flash_user", limit=5, period_s=1)
    decision = await limiter.check((PER_USER, str(user_id)), (PER_IP, ip))
    if not decision.allowed: ...  # decision.retry_after_s
    await limiter.enforce((PER_USER, str(user_id)))  # or raise RateLimited (429)
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from raymall import metrics
from raymall.errors import RateLimited
from raymall.feed import REDIS_FAULTS, RedisHealth

MAX_KEY_CHARS = 96

# KEYS[i]: bucket keys. ARGV[1] cost, ARGV[2] "1" to charge, then (interval_ms, burst) pairs.
# Returns {allowed, retry_after_ms, remaining after this call (tightest limit), index of the
# limit that refused (1-based, 0 if none)}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cost = tonumber(ARGV[1])
local charge = ARGV[2] == '1'
local allowed, retry, refused = 1, 0, 0
local tats, new_tats = {}, {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  new_tats[i] = tat + interval * cost
  local allow_at = new_tats[i] - interval * burst
  if allow_at > now then
    allowed = 0
    if allow_at - now > retry then retry = allow_at - now; refused = i end
  end
end
local charged = allowed == 1 and charge and cost > 0
local remaining = -1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local tat = tats[i]
  if charged then
    tat = new_tats[i]
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
  end
  local left = math.floor((now - (tat - interval * burst)) / interval + 1e-9)
  if left < 0 then left = 0 end
  if remaining < 0 or left < remaining then remaining = left end
end
return {allowed, math.ceil(retry), remaining, refused}
"""

# KEYS[i]: bucket keys. ARGV[1] cost, then one interval_ms per key. Moves each key's
# theoretical arrival time back by cost intervals; a bucket that is full again is deleted.
_REFUND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cost = tonumber(ARGV[1])
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local back = tat - tonumber(ARGV[1 + i]) * cost
  if back <= now then
    redis.call('DEL', KEYS[i])
  else
    redis.call('SET', KEYS[i], string.format('%.3f', back), 'PX', math.ceil(back - now) + 1)
  end
end
return #KEYS
"""


@dataclass(frozen=True)
class Limit:
    """``limit`` events per ``period_s`` on average, bursts of up to ``burst`` at once."""

    name: str
    limit: int
    period_s: float
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period_s <= 0:
            raise ValueError(f"limit {self.name!r}: need limit >= 1 and period_s > 0")
        if self.burst is not None and self.burst < 1:
            raise ValueError(f"limit {self.name!r}: burst must be >= 1")

    @property
    def interval_ms(self) -> float:
        return self.period_s * 1000.0 / self.limit

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else self.limit


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float  # 0 when allowed
    remaining: int  # events the tightest limit still admits after this decision
    refused_by: str | None = None  # name of the limit that refused

    @property
    def retry_after_header(self) -> int:
        """Whole seconds for a ``Retry-After`` header (at least 1)."""
        return max(1, math.ceil(self.retry_after_s))


Check = tuple[Limit, str]
LOCAL_MAX_KEYS = 200_000  # past it, the oldest tenth of the local buckets is forgotten


class LocalBuckets:
    """The GCRA of ``_GCRA`` in this process's memory, each limit's share being
    1/``share`` of it (rate and burst, at least one event)."""

    def __init__(
        self,
        share: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = LOCAL_MAX_KEYS,
    ) -> None:
        self.share = max(1, share)
        self.clock = clock
        self.max_keys = max_keys
        self.tats: dict[str, float] = {}  # key -> theoretical arrival time (ms)

    def scaled(self, limit: Limit) -> tuple[float, int]:
        """(interval ms, burst) of this process's share of ``limit``."""
        return limit.interval_ms * self.share, max(1, math.ceil(limit.capacity / self.share))

    def decide(
        self, keys: Sequence[str], limits: Sequence[Limit], cost: int, charge: bool
    ) -> tuple[bool, float, int, int]:
        """(allowed, retry_after_ms, remaining, 1-based index of the refusing limit)."""
        now = self.clock() * 1000.0
        allowed, retry, refused = True, 0.0, 0
        shares = [self.scaled(limit) for limit in limits]
        tats = []
        for i, (key, (interval, burst)) in enumerate(zip(keys, shares, strict=True)):
            tat = max(self.tats.get(key, 0.0), now)
            tats.append(tat)
            allow_at = tat + interval * cost - interval * burst
            if allow_at > now:
                allowed = False
                if allow_at - now > retry:
                    retry, refused = allow_at - now, i + 1
        charged = allowed and charge and cost > 0
        remaining = -1
        for key, tat, (interval, burst) in zip(keys, tats, shares, strict=True):
            if charged:
                tat += interval * cost
                self._store(key, tat)
            left = max(0, math.floor((now - (tat - interval * burst)) / interval + 1e-9))
            remaining = left if remaining < 0 else min(remaining, left)
        return allowed, math.ceil(retry), max(0, remaining), refused

    def refund(self, keys: Sequence[str], limits: Sequence[Limit], cost: int) -> None:
        now = self.clock() * 1000.0
        for key, limit in zip(keys, limits, strict=True):
            back = self.tats.get(key, 0.0) - self.scaled(limit)[0] * cost
            if back <= now:
                self.tats.pop(key, None)
            else:
                self.tats[key] = back

    def reset(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.tats.pop(key, None)

    def _store(self, key: str, tat: float) -> None:
        if key not in self.tats and len(self.tats) >= self.max_keys:
            now = self.clock() * 1000.0
            for old in [k for k, t in self.tats.items() if t <= now]:
                del self.tats[old]
            if len(self.tats) >= self.max_keys:
                for old in list(islice(self.tats, max(1, self.max_keys // 10))):
                    del self.tats[old]
        self.tats[key] = tat


class LimitFallback:
    """When this replica's limiters decide locally: while ``health`` says Redis is not
    usable. One per replica, shared by its limiters (so a key's local bucket is one)."""

    def __init__(self, health: RedisHealth, replicas: int) -> None:
        self.health = health
        self.buckets = LocalBuckets(replicas)
        self.mode = ""
        self._show(self.health.usable())

    def local(self) -> bool:
        """Decide locally now? (Updates the mode gauge on a change.)"""
        usable = self.health.usable()
        self._show(usable)
        return not usable

    def failed(self) -> None:
        """A shared decision failed on a connection fault: local from now on, for a while."""
        self.health.failed()
        self._show(False)

    def _show(self, shared: bool) -> None:
        mode = "shared" if shared else "local"
        if mode != self.mode:
            self.mode = mode
            metrics.RATE_LIMIT_MODE.labels("shared").set(1 if shared else 0)
            metrics.RATE_LIMIT_MODE.labels("local").set(0 if shared else 1)


class RateLimiter:
    """Decides and charges limits for any subject key (a user id, an IP, an event id)."""

    def __init__(
        self, redis: Any, prefix: str = "rl", *, fallback: LimitFallback | None = None
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.fallback = fallback
        self._script = redis.register_script(_GCRA)
        self._refund = redis.register_script(_REFUND)

    def key(self, limit: Limit, subject: str) -> str:
        if len(subject) > MAX_KEY_CHARS:
            subject = "h:" + hashlib.sha256(subject.encode("utf-8")).hexdigest()
        return f"{self.prefix}:{limit.name}:{subject}"

    async def check(self, *checks: Check, cost: int = 1, observe: bool = True) -> Decision:
        """Admit and charge ``cost`` to every limit, or to none of them."""
        return await self._run(checks, cost, charge=True, observe=observe)

    async def peek(self, *checks: Check, observe: bool = True) -> Decision:
        """Would one more event be admitted? Charges nothing."""
        return await self._run(checks, 1, charge=False, observe=observe)

    async def enforce(self, *checks: Check, cost: int = 1) -> Decision:
        """``check``, raising ``RateLimited`` (429 with Retry-After) when refused."""
        decision = await self.check(*checks, cost=cost)
        if not decision.allowed:
            raise RateLimited(
                f"rate limit '{decision.refused_by}' exceeded; retry later",
                retry_after=decision.retry_after_header,
            )
        return decision

    async def refund(self, *checks: Check, cost: int = 1) -> None:
        """Give back ``cost`` events charged by an earlier ``check`` (never below a full
        bucket), in one atomic step."""
        if not checks:
            return
        keys = [self.key(limit, subject) for limit, subject in checks]
        fb = self.fallback
        if fb is not None and fb.local():
            fb.buckets.refund(keys, [limit for limit, _ in checks], cost)
            return
        args: list[Any] = [cost] + [repr(limit.interval_ms) for limit, _ in checks]
        try:
            await self._refund(keys=keys, args=args)
        except REDIS_FAULTS:
            if fb is None:
                raise
            fb.failed()
            fb.buckets.refund(keys, [limit for limit, _ in checks], cost)

    async def reset(self, *checks: Check) -> None:
        """Forget the history of these subjects (e.g. after a successful login)."""
        if not checks:
            return
        keys = [self.key(limit, subject) for limit, subject in checks]
        fb = self.fallback
        if fb is not None:
            fb.buckets.reset(keys)
            if fb.local():
                return
        try:
            await self.redis.delete(*keys)
        except REDIS_FAULTS:
            if fb is None:
                raise
            fb.failed()

    async def _run(
        self, checks: tuple[Check, ...], cost: int, *, charge: bool, observe: bool
    ) -> Decision:
        if not checks:
            raise ValueError("at least one (limit, subject) is needed")
        if cost < 0:
            raise ValueError("cost must be >= 0")
        keys = [self.key(limit, subject) for limit, subject in checks]
        fb = self.fallback
        if fb is not None and fb.local():
            found = fb.buckets.decide(keys, [limit for limit, _ in checks], cost, charge)
        else:
            args: list[Any] = [cost, "1" if charge else "0"]
            for limit, _ in checks:
                args += [repr(limit.interval_ms), limit.capacity]
            try:
                found = await self._script(keys=keys, args=args)
            except REDIS_FAULTS:
                if fb is None:
                    raise
                fb.failed()
                found = fb.buckets.decide(keys, [limit for limit, _ in checks], cost, charge)
        allowed, retry_ms, remaining, refused = found
        refused_by = checks[int(refused) - 1][0].name if int(refused) > 0 else None
        decision = Decision(
            allowed=bool(int(allowed)),
            retry_after_s=int(retry_ms) / 1000.0,
            remaining=max(0, int(remaining)),
            refused_by=refused_by,
        )
        if observe:
            _observe(checks, decision)
        return decision


def _observe(checks: tuple[Check, ...], decision: Decision) -> None:
    if decision.allowed:
        for limit, _ in checks:
            metrics.RATE_LIMIT_DECISIONS.labels(limit.name, "allowed").inc()
    elif decision.refused_by is not None:
        metrics.RATE_LIMIT_DECISIONS.labels(decision.refused_by, "denied").inc()
