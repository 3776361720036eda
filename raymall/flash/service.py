"""FlashService: a replica's side of flash sales (built once per replica).

Purchases are decided here as far as they can be without the shard, and otherwise sent
to it in batches; creating, ending and reading sales is ``raymall.flash.admin``'s, and the
replica's copy of the sales ``raymall.flash.cache``'s. Guarantees:

- refusals that need no shard are decided in the replica: before the start
  (``sale_not_started``), after the end (``sale_ended``) from the cached sale, and, once the
  shard has said the sale is sold out, ``sold_out`` from a local flag: the shard's
  sold-out *lease* (``raymall.domain.flash_desk``), which runs ``flash_sold_out_ttl_s`` (less a
  small margin for clock rates) from the moment the request that earned it was sent, and
  during which the shard sells nothing of the sale (then one request asks the shard
  again, so units given back by unpaid orders become purchasable);
- a request that carries its own ``Idempotency-Key`` and is refused locally is checked
  against the sale's purchases first, so a retry of a successful purchase still gets its
  order: under a lease, from this replica's snapshot of the sale's client-keyed purchase
  records, read from the database once per number of records the shard reports (they are
  all committed before the lease is granted, and no new one can appear while it runs);
  after the end, or for sales with more than ``SNAPSHOT_MAX_RECORDS`` records, by a
  database lookup (batched);
- concurrent purchases are batched (``raymall.batching.Batcher``): one Redis call decides
  the rate limits of a whole batch (``raymall.flash.limits``) and one call per shard
  carries its purchases; the shard commits them in one transaction before answering
  (durable before ack);
- every purchase carries a key: the client's ``Idempotency-Key`` or, without one, a key
  made up per request, so the internal retries of a shard call (actor restart) take effect
  exactly once; a 503 is retriable with the same ``Idempotency-Key``;
- a sale with ``require_token`` sells only to a valid flash token of the buyer's
  (``raymall.flash.tokens``: checked here, before any rate limit or shard call), whose
  nonce is the purchase's key, so a token buys at most once; a sale without it costs
  nothing more than before.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from raymall import metrics
from raymall.batching import Batcher
from raymall.domain import outcomes
from raymall.domain.outcomes import BUY, UNREAD
from raymall.domain.sale import Sale
from raymall.domain.shard_ops import BuyResult, FlashBuy, Result
from raymall.errors import (
    DomainError,
    FlashTokenInvalid,
    IdempotencyMismatch,
    RateLimited,
    Unavailable,
    ValidationFailed,
)
from raymall.flash import sales as repo
from raymall.flash.admin import SaleAdmin
from raymall.flash.cache import SaleCache
from raymall.flash.limits import BatchLimiter
from raymall.flash.ports import FlashShards
from raymall.flash.returns import hold_key
from raymall.flash.tokens import FlashTokens, issue, token_key, token_required, token_used
from raymall.ids import now_ms
from raymall.ratelimit import Limit, LimitFallback
from raymall.settings import Settings
from raymall.singleflight import SingleFlight

MAX_INFLIGHT = 2  # purchase batches in flight per replica
CLIENT_KEY = "k:"  # prefix of the purchase keys that clients chose (Idempotency-Key)
SNAPSHOT_MAX_RECORDS = 50_000  # bigger sales are looked up key by key
Snapshot = dict[tuple[int, str], dict[str, Any]]  # (user, client key) -> replay answer
SNAPSHOT_KEEP_S = 60.0  # a snapshot is dropped this long after its sale's last lease
# a lease is ended this much early: two hosts' monotonic clocks may run at rates up to
# 500 ppm apart (NTP slewing), so a replica's second can be a little longer than a shard's
LEASE_MARGIN_S, LEASE_MARGIN_RATE = 0.001, 0.002
Answer = Result | BaseException


class _Request(NamedTuple):
    sale: Sale
    user_id: int
    key: str
    qty: int
    checks: list[tuple[Limit, str]]


class FlashService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis: Any,
        inventory: FlashShards,
        clock: Callable[[], float] | None = None,
        limit_fallback: LimitFallback | None = None,
    ) -> None:
        """``limit_fallback``: decide the rate limits in the replica while Redis is
        unreachable (``raymall.ratelimit``), so purchases go on through an outage."""
        self.settings = settings
        self.sessions = sessions
        self.inventory = inventory
        self.clock = clock if clock is not None else time.monotonic  # monotonic seconds
        self.limiter = BatchLimiter(redis, fallback=limit_fallback)
        s = settings
        self.user_limit = _limit("flash_user", s.flash_rate_user_per_s, s.flash_rate_user_burst)
        self.ip_limit = _limit("flash_ip", s.flash_rate_ip_per_s, s.flash_rate_ip_per_s * 2)
        self.event_limit = _limit("flash_event", s.flash_rate_event_per_s, s.flash_rate_event_per_s)
        self.cache = SaleCache(sessions, inventory, s.flash_sale_cache_ttl_s, self.clock)
        self.admin = SaleAdmin(sessions, inventory, self.cache)
        # the cache's and the administration's, as this service's
        self.sale, self.remember = self.cache.get, self.cache.remember
        self.warm, self.keep_warm = self.cache.warm, self.cache.keep_warm
        self.create, self.end, self.view = self.admin.create, self.admin.end, self.admin.view
        self.list, self.mine = self.admin.list, self.admin.mine
        # sale -> (end of the sold-out lease on this replica's monotonic clock, records)
        self._leases: dict[int, tuple[float, int]] = {}
        # sale -> (records, client-keyed purchases by (user, key)) and the loads under way
        self._snapshots: dict[int, tuple[int, Snapshot]] = {}
        self._snapshot_loads = SingleFlight()
        self.snapshot_loads = 0  # snapshots read from the database by this replica
        self._buys: Batcher[_Request, Result] = Batcher(
            self._decide,
            max_batch=s.flash_batch_max,
            max_inflight=MAX_INFLIGHT,
            window_s=s.flash_batch_window_ms / 1000,
        )
        self.shard_calls = 0  # purchase batches sent to shards by this replica
        self._tokens: FlashTokens | None = None  # made on first use (the secret's check)
        self._lookups: Batcher[tuple[int, int, str], dict[str, Any] | None] = Batcher(
            self._lookup_batch, max_batch=500, max_inflight=2
        )

    async def _lookup_batch(
        self, keys: Sequence[tuple[int, int, str]]
    ) -> list[dict[str, Any] | None]:
        def run() -> list[dict[str, Any] | None]:
            with self.sessions() as session:
                return repo.purchases_by_keys(session, keys)

        return await asyncio.to_thread(run)

    # ---- flash tokens -----------------------------------------------------------------------
    @property
    def tokens(self) -> FlashTokens:
        if self._tokens is None:
            self._tokens = FlashTokens.from_settings(self.settings)
        return self._tokens

    async def mint_token(self, sale_id: int, user_id: int) -> dict[str, Any]:
        """A purchase token for ``user_id`` in a running sale (``raymall.flash.tokens``)."""
        return issue(self.tokens, await self.cache.get(sale_id), user_id, now_ms())

    async def _token_purchase(
        self, sale: Sale, user_id: int, raw: str | None, ip: str | None, qty: int, now: int
    ) -> dict[str, Any]:
        """A purchase in a sale that requires a token: refused without a valid one; the
        token's nonce is the key, and a purchase it already made is ``flash_token_used``."""
        if raw is None:
            _outcome("token_required")
            raise token_required(sale.id)
        try:
            token = self.tokens.verify(
                raw, sale_id=sale.id, user_id=user_id, starts_ms=sale.starts_ms, now_ms=now
            )
        except FlashTokenInvalid:
            _outcome("token_invalid")
            raise
        try:
            result = await self._purchase(sale, user_id, token_key(token), ip, qty, now)
        except IdempotencyMismatch as exc:
            raise token_used(exc.details.get("order_id")) from None
        if result["replayed"]:
            raise token_used(result["order_id"])
        return result

    # ---- purchase -------------------------------------------------------------------------
    async def purchase(
        self,
        user_id: int,
        sale_id: int,
        client_key: str | None,
        ip: str | None,
        qty: int = 1,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Buy ``qty`` of the sale; ``token``: the ``X-Flash-Token`` header, if any (used
        only when the sale requires one)."""
        sale = await self.cache.get(sale_id)
        now = now_ms()
        if now < sale.starts_ms:
            _outcome("not_started")
            raise outcomes.error_for("not_started", BUY, starts_at_ms=sale.starts_ms)
        if sale.require_token:
            return await self._token_purchase(sale, user_id, token, ip, qty, now)
        key = f"k:{client_key}" if client_key is not None else ""  # "": none given
        return await self._purchase(sale, user_id, key, ip, qty, now)

    async def _purchase(
        self, sale: Sale, user_id: int, key: str, ip: str | None, qty: int, now: int
    ) -> dict[str, Any]:
        sale_id = sale.id
        if qty > sale.per_user_limit:
            raise ValidationFailed(f"at most {sale.per_user_limit} per customer")
        if sale.ended or now >= sale.ends_ms:
            return await self._refused_locally(sale, user_id, key, qty, "ended")
        lease = self._leases.get(sale_id)
        if lease is not None and lease[0] > self.clock():
            return await self._refused_locally(sale, user_id, key, qty, "sold_out_local", lease[1])
        checks = []
        if self.user_limit is not None:
            checks.append((self.user_limit, f"{sale_id}:{user_id}"))
        if self.ip_limit is not None and ip is not None:
            checks.append((self.ip_limit, ip))
        if self.event_limit is not None:
            checks.append((self.event_limit, str(sale_id)))
        key = key or f"a:{secrets.token_hex(8)}"  # no client key: this attempt's own
        result = await self._buys.put(_Request(sale, user_id, key, qty, checks))
        return self._answer(sale, qty, result)

    async def _refused_locally(
        self,
        sale: Sale,
        user_id: int,
        key: str,
        qty: int,
        why: str,
        records: int | None = None,
    ) -> dict[str, Any]:
        """Refuse (ended or sold out), unless the client's key is that of a purchase made:
        then answer it again, as the shard would (another quantity under the same key is
        refused). ``records``: the purchase records of the lease in force."""
        if key:  # the client's key: maybe a retry of a purchase that succeeded
            if records is not None and records <= SNAPSHOT_MAX_RECORDS:
                found = (await self._snapshot(sale.id, records)).get((user_id, key))
            else:
                found = await self._lookups.submit((sale.id, user_id, key))
            if found is not None and found["quantity"] != qty:
                _outcome("key_reused")
                raise outcomes.error_for("key_reused", BUY, order_id=str(found["order_id"]))
            if found is not None:
                _outcome("replayed")
                return _success(sale, found["order_id"], qty, found["expires_ms"], True)
        _outcome(why)
        if why == "ended":
            raise outcomes.error_for("ended", BUY, ends_at_ms=sale.ends_ms)
        raise outcomes.error_for("sold_out", BUY)

    def _answer(self, sale: Sale, qty: int, result: Result) -> dict[str, Any]:
        if type(result) is not BuyResult:  # a bare code: the shard could not read it
            _outcome("invalid")
            raise outcomes.error_for(str(result), UNREAD)
        code = result.code
        if code == "ok":
            _outcome("replayed" if result.replayed else "ok")
            return _success(sale, result.order_id, qty, result.expires_ms, result.replayed)
        _outcome(code)
        if code == "ended":
            self.cache.mark_ended(sale)
        raise outcomes.error_for(
            code,
            BUY,
            sale_id=sale.id,
            per_user_limit=sale.per_user_limit,
            order_id=str(result.order_id),
        )

    # ---- sold-out leases and purchase snapshots --------------------------------------------
    def _grant(self, sale_id: int, until: float, records: int) -> None:
        """Hold a sold-out lease from the shard until ``until`` (monotonic seconds)."""
        held = self._leases.get(sale_id)
        if held is None or until > held[0]:
            self._leases[sale_id] = (until, records)
        self._prune()

    def _prune(self) -> None:
        """Forget leases that ended over SNAPSHOT_KEEP_S ago, with their snapshots."""
        stale = self.clock() - SNAPSHOT_KEEP_S
        for sid in [sid for sid, (end, _) in self._leases.items() if end < stale]:
            del self._leases[sid]
        for sid in [sid for sid in self._snapshots if sid not in self._leases]:
            del self._snapshots[sid]

    async def _snapshot(self, sale_id: int, records: int) -> Snapshot:
        """The sale's client-keyed purchases, read once per number of ``records`` (one read
        at a time per sale; callers of the same count share it)."""
        held = self._snapshots.get(sale_id)
        if held is not None and held[0] == records:
            return held[1]

        async def load() -> Snapshot:
            found = await repo.in_tx(
                self.sessions, lambda s: repo.client_keyed_purchases(s, sale_id, CLIENT_KEY)
            )
            self.snapshot_loads += 1
            if sale_id in self._leases:  # kept while its lease is (see _prune)
                self._snapshots[sale_id] = (records, found)
            self._prune()
            return found

        return await self._snapshot_loads.do((sale_id, records), load)

    # ---- one batch of purchases -------------------------------------------------------------
    async def _decide(self, batch: list[_Request]) -> list[Answer]:
        """The rate limits of the whole batch in one Redis call, then one call per shard;
        one answer per request (a refusal is its own error). A failure of the batch as a
        whole reaches every request as a domain error (Unavailable if it is none)."""
        try:
            return await self._decide_batch(batch)
        except Exception as exc:
            raise (exc if isinstance(exc, DomainError) else _unavailable(exc)) from None

    async def _decide_batch(self, batch: list[_Request]) -> list[Answer]:
        answers: list[Answer] = [_NO_ANSWER] * len(batch)  # each is set below
        if not any(req.checks for req in batch):
            admitted = list(range(len(batch)))
        else:
            decisions = await self.limiter.check([req.checks for req in batch])
            admitted = []
            for i, decision in enumerate(decisions):
                if decision.allowed:
                    admitted.append(i)
                else:
                    _outcome("rate_limited")
                    answers[i] = RateLimited(
                        f"rate limit '{decision.refused_by}' exceeded; retry later",
                        retry_after=decision.retry_after_header,
                    )
        by_shard: dict[int, list[int]] = {}
        shard_of = self.inventory.shard_of
        for i in admitted:
            by_shard.setdefault(shard_of(batch[i].sale.sku_id), []).append(i)
        await asyncio.gather(
            *(self._call(shard, batch, idx, answers) for shard, idx in by_shard.items())
        )
        return answers

    async def _call(
        self, shard: int, batch: list[_Request], idx: list[int], answers: list[Answer]
    ) -> None:
        """One shard's purchases of a batch, as one call; their answers go to ``answers``."""
        reqs = [batch[i] for i in idx]
        ops: list[Any] = [
            FlashBuy(f"{hold_key(r.sale.id)}@{shard}", r.sale.id, r.user_id, r.key, r.qty)
            for r in reqs
        ]
        self.shard_calls += 1
        sent = self.clock()  # a lease in the answer runs from here (see the desk)
        try:
            results = await self.inventory.send_batch(shard, ops)
        except Exception as exc:
            err = exc if isinstance(exc, DomainError) else _unavailable(exc)
            if isinstance(err, Unavailable):
                _outcome("unavailable", len(reqs))
            for i in idx:
                answers[i] = err
            return
        for i, req, result in zip(idx, reqs, results, strict=True):
            if type(result) is BuyResult and result.lease_ms > 0:
                lease_s = result.lease_ms / 1000
                until = sent + lease_s - LEASE_MARGIN_S - lease_s * LEASE_MARGIN_RATE
                self._grant(req.sale.id, until, result.records)
            answers[i] = result


_NO_ANSWER: Answer = Unavailable("the purchase was not answered")


def _limit(name: str, per_s: int, burst: int) -> Limit | None:
    return Limit(name, per_s, 1.0, max(1, burst)) if per_s > 0 else None


def _outcome(outcome: str, n: int = 1) -> None:
    metrics.FLASH_OUTCOMES.labels(outcome).inc(n)


def _unavailable(exc: BaseException) -> Unavailable:
    return Unavailable(f"the flash sale is unavailable ({type(exc).__name__}); retry")


def _success(
    sale: Sale, order_id: Any, qty: int, expires_ms: int | None, replayed: bool
) -> dict[str, Any]:
    return {
        "order_id": str(order_id),
        "sale_id": sale.id,
        "status": "pending_payment",
        "quantity": qty,
        "price_cents": sale.price_cents,
        "total_cents": sale.price_cents * qty,
        "expires_ms": expires_ms,
        "replayed": replayed,
    }
