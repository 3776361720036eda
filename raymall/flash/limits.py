"""Rate limits for a whole batch of flash purchases in ONE Redis round trip.

The same GCRA as ``raymall.ratelimit`` (same key names ``rl:{rule}:{subject}``, same
meaning of ``Limit``), but one script call decides every request of a replica's batch, in
order: each request is all-or-nothing across its own limits (per user, per IP when known,
per event), and a key shared by several requests (the event) sees the charges of the
earlier ones. Decisions are counted in ``raymall_rate_limit_decisions_total``.

With a ``raymall.ratelimit.LimitFallback`` the batch is decided in the replica's memory
while Redis is unreachable (the same rules, each limit's share of the replicas), so
purchases go on through a Redis outage; without one a Redis fault fails the batch (503).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from raymall import metrics
from raymall.feed import REDIS_FAULTS
from raymall.ratelimit import Decision, Limit, LimitFallback, RateLimiter

# KEYS: every request's keys, flattened. ARGV[1]: number of requests; then per request:
# its key count k, then k pairs (interval_ms, burst). Returns per request: allowed,
# retry_after_ms, index (1-based, within the request) of the limit that refused.
_BATCH_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local tat_of, interval_of = {}, {}
local out = {}
local a, k = 2, 1
for r = 1, n do
  local count = tonumber(ARGV[a]); a = a + 1
  local allowed, retry, refused = 1, 0, 0
  local keys, news = {}, {}
  for i = 1, count do
    local key = KEYS[k]; k = k + 1
    local interval = tonumber(ARGV[a]); local burst = tonumber(ARGV[a + 1]); a = a + 2
    local tat = tat_of[key]
    if tat == nil then tat = tonumber(redis.call('GET', key) or '0') end
    if tat < now then tat = now end
    keys[i] = key
    news[i] = tat + interval
    tat_of[key] = tat
    interval_of[key] = interval
    local allow_at = news[i] - interval * burst
    if allow_at > now then
      allowed = 0
      if allow_at - now > retry then retry = allow_at - now; refused = i end
    end
  end
  if allowed == 1 then
    for i = 1, count do tat_of[keys[i]] = news[i] end
  end
  out[#out + 1] = allowed
  out[#out + 1] = math.ceil(retry)
  out[#out + 1] = refused
end
for key, tat in pairs(tat_of) do
  if tat > now then
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
  end
end
return out
"""

Checks = Sequence[tuple[Limit, str]]


class BatchLimiter:
    """Decides many requests' limits in one call (see the module docstring)."""

    def __init__(
        self, redis: Any, prefix: str = "rl", *, fallback: LimitFallback | None = None
    ) -> None:
        self.keys = RateLimiter(redis, prefix)  # key naming shared with the generic limiter
        self.fallback = fallback
        self._script = redis.register_script(_BATCH_GCRA)

    async def check(self, requests: Sequence[Checks]) -> list[Decision]:
        """One decision per request (a request with no checks is allowed)."""
        keys: list[str] = []
        args: list[Any] = [len(requests)]
        for checks in requests:
            args.append(len(checks))
            for limit, subject in checks:
                keys.append(self.keys.key(limit, subject))
                args += [repr(limit.interval_ms), limit.capacity]
        if not keys:
            return [Decision(True, 0.0, 0) for _ in requests]
        fb = self.fallback
        if fb is not None and fb.local():
            flat = self._local(requests)
        else:
            try:
                flat = await self._script(keys=keys, args=args)
            except REDIS_FAULTS:
                if fb is None:
                    raise
                fb.failed()
                flat = self._local(requests)
        out = []
        counts: Counter[tuple[str, str]] = Counter()
        for i, checks in enumerate(requests):
            allowed, retry_ms, refused = (int(x) for x in flat[3 * i : 3 * i + 3])
            refused_by = checks[refused - 1][0].name if refused > 0 else None
            decision = Decision(bool(allowed), retry_ms / 1000.0, 0, refused_by)
            if decision.allowed:
                counts.update((limit.name, "allowed") for limit, _ in checks)
            elif refused_by is not None:
                counts[(refused_by, "denied")] += 1
            out.append(decision)
        for (rule, verdict), n in counts.items():
            metrics.RATE_LIMIT_DECISIONS.labels(rule, verdict).inc(n)
        return out

    def _local(self, requests: Sequence[Checks]) -> list[int]:
        """The script's answer, decided by the fallback's buckets (request by request)."""
        assert self.fallback is not None
        buckets = self.fallback.buckets
        flat: list[int] = []
        for checks in requests:
            if not checks:
                flat += [1, 0, 0]
                continue
            keys = [self.keys.key(limit, subject) for limit, subject in checks]
            allowed, retry_ms, _, refused = buckets.decide(
                keys, [limit for limit, _ in checks], 1, True
            )
            flat += [int(allowed), int(retry_ms), refused]
        return flat
