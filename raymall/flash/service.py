"""FlashService: a replica's side of flash sales (built once per replica).

Guarantees:

- refusals that need no shard are decided in the replica: before the start
  (``sale_not_started``), after the end (``sale_ended``) from the cached event, and, once the
  shard has said the event is sold out, ``sold_out`` from a local flag: the shard's
  sold-out *lease* (``raymall.domain.flash_desk``), which runs ``flash_sold_out_ttl_s`` (less a
  small margin for clock rates) from the moment the request that earned it was sent, and
  during which the shard sells nothing of the event (then one request asks the shard
  again, so units given back by unpaid orders become purchasable);
- a request that carries its own ``Idempotency-Key`` and is refused locally is checked
  against the event's purchases first, so a retry of a successful purchase still gets its
  order: under a lease, from this replica's snapshot of the event's client-keyed purchase
  records, read from the database once per number of records the shard reports (they are
  all committed before the lease is granted, and no new one can appear while it runs);
  after the end, or for events with more than ``SNAPSHOT_MAX_RECORDS`` records, by a
  database lookup (coalesced);
- concurrent purchases are coalesced: one Redis call decides the rate limits of a whole
  batch (``raymall.flash.limits``) and one actor call per shard carries its purchases; the
  shard commits them in one transaction before answering (durable before ack);
- every purchase carries a key: the client's ``Idempotency-Key`` or, without one, a key
  made up per request, so the internal retries of a shard call (actor restart) take effect
  exactly once; a 503 is retriable with the same ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from actors.inventory_client import InventoryClient, raise_for
from raymall import metrics
from raymall.db import transaction
from raymall.errors import (
    DomainError,
    IdempotencyMismatch,
    LimitExceeded,
    NotFound,
    RateLimited,
    SaleEnded,
    SaleNotStarted,
    SoldOut,
    Unavailable,
    ValidationFailed,
)
from raymall.flash import sales as repo
from raymall.flash.coalesce import Coalescer
from raymall.flash.limits import BatchLimiter
from raymall.flash.returns import hold_key
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.ratelimit import Limit
from raymall.settings import Settings
from raymall.singleflight import SingleFlight

log = get_logger("flash")
T = TypeVar("T")
MAX_INFLIGHT = 2
CLIENT_KEY = "k:"  # prefix of the purchase keys that clients chose (Idempotency-Key)
SNAPSHOT_MAX_RECORDS = 50_000  # bigger events are looked up key by key
Snapshot = dict[tuple[int, str], dict[str, Any]]  # (user, client key) -> replay answer
SNAPSHOT_KEEP_S = 60.0  # a snapshot is dropped this long after its event's last lease
# a lease is ended this much early: two hosts' monotonic clocks may run at rates up to
# 500 ppm apart (NTP slewing), so a replica's second can be a little longer than a shard's
LEASE_MARGIN_S, LEASE_MARGIN_RATE = 0.001, 0.002


@dataclass
class _Request:
    sale: repo.Sale
    user_id: int
    key: str
    qty: int
    checks: list[tuple[Limit, str]]
    fut: asyncio.Future[Any] = field(repr=False)


class FlashService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis: Any,
        inventory: InventoryClient,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.inventory = inventory
        self.limiter = BatchLimiter(redis)
        self.cache_ttl_s = settings.flash_sale_cache_ttl_s
        self.window_s = settings.flash_batch_window_ms / 1000
        self.max_batch = settings.flash_batch_max
        s = settings
        self.user_limit = _limit("flash_user", s.flash_rate_user_per_s, s.flash_rate_user_burst)
        self.ip_limit = _limit("flash_ip", s.flash_rate_ip_per_s, s.flash_rate_ip_per_s * 2)
        self.event_limit = _limit("flash_event", s.flash_rate_event_per_s, s.flash_rate_event_per_s)
        self._sales: dict[int, tuple[repo.Sale, float]] = {}
        self._sale_loads = SingleFlight()
        # sale -> (end of the sold-out lease on this replica's monotonic clock, records)
        self._leases: dict[int, tuple[float, int]] = {}
        # sale -> (records, client-keyed purchases by (user, key)) and the loads under way
        self._snapshots: dict[int, tuple[int, Snapshot]] = {}
        self._snapshot_loads = SingleFlight()
        self.snapshot_loads = 0  # snapshots read from the database by this replica
        self._queue: list[_Request] = []
        self._inflight = 0
        self._timer: asyncio.TimerHandle | None = None
        self.shard_calls = 0  # purchase batches sent to shards by this replica
        self._lookups: Coalescer[tuple[int, int, str], dict[str, Any] | None] = Coalescer(
            self._lookup_batch, max_batch=500, max_inflight=2
        )

    # ---- plumbing -----------------------------------------------------------------------
    async def _tx(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with transaction(self.sessions) as session:
                return fn(session)

        return await asyncio.to_thread(run)

    async def _lookup_batch(
        self, keys: Sequence[tuple[int, int, str]]
    ) -> list[dict[str, Any] | None]:
        def run() -> list[dict[str, Any] | None]:
            with self.sessions() as session:
                return repo.purchases_by_keys(session, keys)

        return await asyncio.to_thread(run)

    def _shard_hold(self, sale: repo.Sale) -> tuple[int, str]:
        shard = self.inventory.shard_of(sale.sku_id)
        return shard, f"{hold_key(sale.id)}@{shard}"

    # ---- the event cache ----------------------------------------------------------------
    def remember(self, sale: repo.Sale) -> repo.Sale:
        self._sales[sale.id] = (sale, time.monotonic() + self.cache_ttl_s)
        return sale

    async def sale(self, sale_id: int) -> repo.Sale:
        """The event from this replica's cache (loaded once per TTL, one load at a time)."""
        hit = self._sales.get(sale_id)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]

        async def load() -> repo.Sale:
            return self.remember(await self._tx(lambda s: repo.get_sale(s, sale_id)))

        return await self._sale_loads.do(sale_id, load)

    async def warm(self, *, shards: bool = True) -> int:
        """Cache the running and upcoming events (and have their shards load them)."""
        sales = await self._tx(lambda s: repo.running_or_upcoming(s, now_ms()))
        for sale in sales:
            known = sale.id in self._sales
            self.remember(sale)
            if shards and not known:
                shard, hold = self._shard_hold(sale)
                await self.inventory.submit(shard, ("flash_warm", hold, sale.id))
        return len(sales)

    async def keep_warm(self) -> None:
        """Every cache TTL, re-read the running and upcoming events, so an event created
        through another replica is cached here before it starts. Runs until cancelled."""
        while True:
            try:
                await self.warm()
            except Exception:  # first use loads an event anyway
                log.warning("could not refresh the flash sales", exc_info=True)
            await asyncio.sleep(self.cache_ttl_s)

    def _mark_ended(self, sale: repo.Sale) -> None:
        self.remember(replace(sale, ended=True))

    # ---- purchase -------------------------------------------------------------------------
    async def purchase(
        self, user_id: int, sale_id: int, client_key: str | None, ip: str | None, qty: int = 1
    ) -> dict[str, Any]:
        sale = await self.sale(sale_id)
        now = now_ms()
        key = f"k:{client_key}" if client_key is not None else ""  # "": none given
        if now < sale.starts_ms:
            _outcome("not_started")
            raise SaleNotStarted(
                "the sale has not started", details={"starts_at_ms": sale.starts_ms}
            )
        if qty > sale.per_user_limit:
            raise ValidationFailed(f"at most {sale.per_user_limit} per customer")
        if sale.ended or now >= sale.ends_ms:
            return await self._refused_locally(sale, user_id, key, qty, "ended")
        lease = self._leases.get(sale_id)
        if lease is not None and lease[0] > time.monotonic():
            return await self._refused_locally(sale, user_id, key, qty, "sold_out_local", lease[1])
        checks = []
        if self.user_limit is not None:
            checks.append((self.user_limit, f"{sale_id}:{user_id}"))
        if self.ip_limit is not None and ip is not None:
            checks.append((self.ip_limit, ip))
        if self.event_limit is not None:
            checks.append((self.event_limit, str(sale_id)))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        key = key or f"a:{secrets.token_hex(8)}"  # no client key: this attempt's own
        self._queue.append(_Request(sale, user_id, key, qty, checks, fut))
        if len(self._queue) >= self.max_batch:
            self._flush()
        elif self._timer is None and self._inflight < MAX_INFLIGHT:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._flush)
        return self._answer(sale, qty, await fut)

    async def _refused_locally(
        self,
        sale: repo.Sale,
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
                raise IdempotencyMismatch(
                    "this Idempotency-Key was used for a different purchase",
                    details={"order_id": str(found["order_id"])},
                )
            if found is not None:
                _outcome("replayed")
                return _success(sale, found["order_id"], qty, found["expires_ms"], True)
        _outcome(why)
        if why == "ended":
            raise SaleEnded("the sale has ended", details={"ends_at_ms": sale.ends_ms})
        raise SoldOut("sold out")

    # ---- sold-out leases and purchase snapshots --------------------------------------------
    def _grant(self, sale_id: int, until: float, records: int) -> None:
        """Hold a sold-out lease from the shard until ``until`` (monotonic seconds)."""
        held = self._leases.get(sale_id)
        if held is None or until > held[0]:
            self._leases[sale_id] = (until, records)
        self._prune()

    def _prune(self) -> None:
        """Forget leases that ended over SNAPSHOT_KEEP_S ago, with their snapshots."""
        stale = time.monotonic() - SNAPSHOT_KEEP_S
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
            found = await self._tx(lambda s: repo.client_keyed_purchases(s, sale_id, CLIENT_KEY))
            self.snapshot_loads += 1
            if sale_id in self._leases:  # kept while its lease is (see _prune)
                self._snapshots[sale_id] = (records, found)
            self._prune()
            return found

        return await self._snapshot_loads.do((sale_id, records), load)

    def _answer(self, sale: repo.Sale, qty: int, result: Any) -> dict[str, Any]:
        if not isinstance(result, tuple):
            _outcome("invalid")
            raise ValidationFailed(f"the purchase was refused ({result})")
        code, order_id, expires_ms, replayed = result[:4]
        if code == "ok":
            _outcome("replayed" if replayed else "ok")
            return _success(sale, order_id, qty, expires_ms, replayed)
        _outcome(code)
        if code == "sold_out":
            raise SoldOut("sold out")
        if code == "limit_reached":
            raise LimitExceeded(
                f"at most {sale.per_user_limit} per customer",
                details={"per_user_limit": sale.per_user_limit},
            )
        if code == "not_started":
            raise SaleNotStarted("the sale has not started")
        if code == "ended":
            self._mark_ended(sale)
            raise SaleEnded("the sale has ended")
        if code == "key_reused":
            raise IdempotencyMismatch(
                "this Idempotency-Key was used for a different purchase",
                details={"order_id": str(order_id)},
            )
        if code == "unknown_sale":
            raise NotFound(f"flash sale {sale.id} not found")
        raise Unavailable(f"the purchase could not be decided ({code})")

    # ---- the batcher ----------------------------------------------------------------------
    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        while self._queue and self._inflight < MAX_INFLIGHT:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            self._inflight += 1
            loop.create_task(self._send(batch))

    async def _send(self, batch: list[_Request]) -> None:
        try:
            await self._decide(batch)
        except BaseException as exc:
            err = exc if isinstance(exc, DomainError) else _unavailable(exc)
            for req in batch:
                if not req.fut.done():
                    req.fut.set_exception(err)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._inflight -= 1
            if self._queue and self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(0, self._flush)

    async def _decide(self, batch: list[_Request]) -> None:
        admitted = batch
        if any(req.checks for req in batch):
            decisions = await self.limiter.check([req.checks for req in batch])
            admitted = []
            for req, decision in zip(batch, decisions, strict=True):
                if decision.allowed:
                    admitted.append(req)
                else:
                    _outcome("rate_limited")
                    req.fut.set_exception(
                        RateLimited(
                            f"rate limit '{decision.refused_by}' exceeded; retry later",
                            retry_after=decision.retry_after_header,
                        )
                    )
        by_shard: dict[int, list[_Request]] = {}
        for req in admitted:
            by_shard.setdefault(self.inventory.shard_of(req.sale.sku_id), []).append(req)
        await asyncio.gather(*(self._call(shard, reqs) for shard, reqs in by_shard.items()))

    async def _call(self, shard: int, reqs: list[_Request]) -> None:
        ops = [
            ("flash_buy", f"{hold_key(r.sale.id)}@{shard}", r.sale.id, r.user_id, r.key, r.qty)
            for r in reqs
        ]
        self.shard_calls += 1
        sent = time.monotonic()  # a lease in the answer runs from here (see desk)
        try:
            results = await self.inventory.send_batch(shard, ops)
        except BaseException as exc:
            err = exc if isinstance(exc, DomainError) else _unavailable(exc)
            if isinstance(err, Unavailable):
                _outcome("unavailable", len(reqs))
            for req in reqs:
                if not req.fut.done():
                    req.fut.set_exception(err)
            if not isinstance(exc, Exception):
                raise
            return
        for req, result in zip(reqs, results, strict=True):
            if isinstance(result, tuple) and len(result) >= 7 and result[5] > 0:
                lease_s = result[5] / 1000
                until = sent + lease_s - LEASE_MARGIN_S - lease_s * LEASE_MARGIN_RATE
                self._grant(req.sale.id, until, int(result[6]))
            if not req.fut.done():
                req.fut.set_result(result)

    # ---- administration -------------------------------------------------------------------
    async def create(
        self,
        *,
        sku_id: int,
        title: str,
        price_cents: int,
        quantity: int,
        per_user_limit: int,
        starts_ms: int,
        ends_ms: int,
        payment_timeout_s: int | None = None,
    ) -> dict[str, Any]:
        """Write the event and set its quantity aside in the SKU's shard (OutOfStock, and
        no event, if not enough is available)."""
        now = now_ms()
        if ends_ms <= starts_ms:
            raise ValidationFailed("ends_at_ms must be after starts_at_ms")
        if ends_ms <= now:
            raise ValidationFailed("ends_at_ms must be in the future")
        sale = await self._tx(
            lambda s: repo.insert_sale(
                s,
                sku_id=sku_id,
                title=title,
                price_cents=price_cents,
                quantity=quantity,
                per_user_limit=per_user_limit,
                starts_ms=starts_ms,
                ends_ms=ends_ms,
                now_ms=now,
                payment_timeout_s=payment_timeout_s,
            )
        )
        shard, hold = self._shard_hold(sale)
        try:
            op = ("reserve", hold, {sku_id: quantity}, ends_ms)
            code = await self.inventory.submit(shard, op)
            raise_for(code, key=hold, skus=[sku_id])
        except BaseException:
            await self._undo_create(sale, shard, hold)
            raise
        await self.inventory.submit(shard, ("flash_warm", hold, sale.id))
        return self.remember(sale).view(now_ms())

    async def _undo_create(self, sale: repo.Sale, shard: int, hold: str) -> None:
        """Tombstone the hold's key (a late reserve cannot take stock), then drop the row.
        If the shard cannot be reached the row stays: the shard alone decides whether the
        hold exists, and an event without one sells nothing."""
        try:
            await self.inventory.submit(shard, ("release", hold))
        except Exception:
            log.warning("flash sale %s: could not release %s", sale.id, hold, exc_info=True)
            return
        await self._tx(lambda s: repo.delete_sale(s, sale.id))

    async def end(self, sale_id: int) -> dict[str, Any]:
        """End the event now; the rest of its hold goes back to normal stock."""
        sale = await self._tx(lambda s: repo.get_sale(s, sale_id))
        shard, hold = self._shard_hold(sale)
        code = await self.inventory.submit(shard, ("flash_end", hold, sale_id))
        if code != "ok":
            raise Unavailable(f"the sale could not be ended ({code})")
        return await self.view(sale_id)

    # ---- reads ----------------------------------------------------------------------------
    async def view(self, sale_id: int) -> dict[str, Any]:
        sale = self.remember(await self._tx(lambda s: repo.get_sale(s, sale_id)))
        return sale.view(now_ms())

    async def list(self, limit: int, before_id: int | None) -> dict[str, Any]:
        sales = await self._tx(lambda s: repo.list_sales(s, limit=limit, before_id=before_id))
        now = now_ms()
        items = [s.view(now) for s in sales]
        return {"items": items, "next_cursor": items[-1]["id"] if len(items) == limit else None}

    async def mine(self, sale_id: int, user_id: int) -> dict[str, Any]:
        await self.sale(sale_id)  # 404 for an unknown sale
        items = await self._tx(lambda s: repo.my_purchases(s, sale_id, user_id))
        return {"sale_id": sale_id, "items": items}


def _limit(name: str, per_s: int, burst: int) -> Limit | None:
    return Limit(name, per_s, 1.0, max(1, burst)) if per_s > 0 else None


def _outcome(outcome: str, n: int = 1) -> None:
    metrics.FLASH_OUTCOMES.labels(outcome).inc(n)


def _unavailable(exc: BaseException) -> Unavailable:
    return Unavailable(f"the flash sale is unavailable ({type(exc).__name__}); retry")


def _success(
    sale: repo.Sale, order_id: int, qty: int, expires_ms: int | None, replayed: bool
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
