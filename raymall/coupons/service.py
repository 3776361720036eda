"""CouponService: a replica's side of coupon claims, codes and the wallet.

A campaign's quantity is owned by one inventory shard (``campaign_shard``), which decides
every claim in its group commit (``raymall.domain.coupon_desk``): durable before the
answer, exact total and per-user limit, idempotent. This side, as flash sales' does
(``raymall.flash.service``):

- refuses on its own what needs no shard: an unknown campaign, a claim before the window
  opens or after it closes (from its copy of the campaign, at most ``ttl_s`` old), and,
  once the shard has granted a sold-out lease, ``coupons_sold_out`` until the lease ends
  (claims still queued for the shard when the lease arrives included: they are not sent).
  In its last ``RENEW_S`` one claim at a time goes to the shard (which decides it like any
  other, and answers a campaign still sold out with a new lease) while the others are
  still refused here, so a campaign that stays sold out never sends a crowd to the shard
  when a lease ends;
  a request with its own ``Idempotency-Key`` refused locally is first looked up among the
  stored claims, so a retry of a claim that succeeded still gets its coupon, and a user at
  the limit hears ``coupon_limit_reached`` as the desk would say: under a lease from one
  snapshot of the campaign's claims per number of claims the shard reported (all
  committed before the lease, and none can be added while it runs), else by a batched
  lookup; a repeat of a claim this replica saw the shard make is answered here at once
  (its coupon: the desk answers a replay before any refusal, and a claim is never undone);
- batches concurrent claims: one shard call carries every claim of a batch for that shard;
- gives every claim a key: ``k:{Idempotency-Key}``, or one made up per request (so the
  client's internal retries after a shard restart take effect once); a 503 is retriable
  with the same ``Idempotency-Key``;
- ``redeem(code)``: a claim of the campaign with that public code, keyed by the code (a
  customer redeeming a code twice gets the first coupon again).

Campaigns with a public code are claimed by their code only (and not listed).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from sqlalchemy.orm import Session, sessionmaker

from raymall import metrics
from raymall.batching import Batcher
from raymall.coupons import repo
from raymall.db import transaction
from raymall.domain import outcomes
from raymall.domain.coupons import Campaign
from raymall.domain.outcomes import CLAIM, UNREAD
from raymall.domain.shard_ops import ClaimResult, CouponClaim, Result
from raymall.errors import CampaignNotFound, CouponCodeInvalid, DomainError, Unavailable
from raymall.flash.ports import FlashShards
from raymall.hashing import shard_for
from raymall.ids import now_ms
from raymall.singleflight import SingleFlight

MAX_INFLIGHT = 2
SNAPSHOT_MAX_RECORDS = 50_000  # bigger campaigns are looked up key by key
SNAPSHOT_KEEP_S = 60.0  # a snapshot is dropped this long after its campaign's last lease
LEASE_MARGIN_S, LEASE_MARGIN_RATE = 0.001, 0.002  # as flash sales' (raymall.flash.service)
# a lease with less than this left is renewed by one claim sent to the shard, so that a
# campaign that stays sold out is refused here without a gap (more than a shard round trip)
RENEW_S = 0.3
REPLAYS_MAX = 50_000  # claims remembered for their repeats (all forgotten past this)
Answer = Result | BaseException


class _UnderLease:
    """The answer of a queued claim that was not sent: its campaign's sold-out lease
    arrived meanwhile (``CouponService._decide``)."""


_UNDER_LEASE: Any = _UnderLease()
# (outcome, local) -> its child of COUPON_CLAIMS: ``labels()`` looks the child up under a
# lock on every call, which costs about as much as the rest of a refused claim's own work
_COUNTERS: dict[tuple[str, str], Any] = {}


def _count(outcome: str, local: str) -> None:
    child = _COUNTERS.get((outcome, local))
    if child is None:
        child = _COUNTERS[(outcome, local)] = metrics.COUPON_CLAIMS.labels(outcome, local)
    child.inc()


def campaign_shard(campaign_id: int, shards: int) -> int:
    """The inventory shard that owns a campaign's quantity."""
    return shard_for(f"coupon-campaign:{campaign_id}", shards)


class _Claim(NamedTuple):
    campaign: Campaign
    user_id: int
    key: str


class CouponService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        shards: FlashShards,
        n_shards: int,
        *,
        ttl_s: float = 5.0,
        batch_max: int = 256,
        window_s: float = 0.002,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.shards = shards
        self.n_shards = n_shards
        self.ttl_s = ttl_s
        self.clock = clock
        self._campaigns: dict[int, tuple[Campaign, float]] = {}
        self._loads = SingleFlight()
        # campaign -> (end of its sold-out lease here, the campaign's claims then)
        self._leases: dict[int, tuple[float, int]] = {}
        self._renewing: set[int] = set()  # campaigns whose lease a claim is renewing
        # campaign -> (claims, (user, key) -> coupon, user -> coupons held)
        self._snapshots: dict[int, tuple[int, dict[tuple[int, str], Any], dict[int, int]]] = {}
        self._snapshot_loads = SingleFlight()
        self.snapshot_loads = 0
        self._claims: Batcher[_Claim, Result] = Batcher(
            self._decide, max_batch=batch_max, max_inflight=MAX_INFLIGHT, window_s=window_s
        )
        self._lookups: Batcher[tuple[int, int, str], dict[str, Any]] = Batcher(
            self._lookup_batch, max_batch=500, max_inflight=2
        )
        self.shard_calls = 0
        # (campaign, user, key) -> the coupon of a claim this replica saw the shard make
        # (durable: the shard answers after its commit; a claim is never given back), so
        # that a repeat of it is answered here, as the desk answers a replay before all else
        self._replays: dict[tuple[int, int, str], tuple[str, int | None, int | None]] = {}

    async def _tx(self, fn: Callable[[Session], Any]) -> Any:
        def run() -> Any:
            with transaction(self.sessions) as session:
                return fn(session)

        return await asyncio.to_thread(run)

    # ---- the replica's copy of the campaigns ------------------------------------------------
    def shard_of(self, campaign_id: int) -> int:
        return campaign_shard(campaign_id, self.n_shards)

    def remember(self, campaign: Campaign) -> Campaign:
        self._campaigns[campaign.id] = (campaign, self.clock() + self.ttl_s)
        return campaign

    async def campaign(self, campaign_id: int) -> Campaign:
        hit = self._campaigns.get(campaign_id)
        if hit is not None and hit[1] > self.clock():
            return hit[0]

        async def load() -> Campaign:
            return self.remember(await self._tx(lambda s: repo.get_campaign(s, campaign_id)))

        return await self._loads.do(campaign_id, load)  # type: ignore[no-any-return]

    async def claimable(self) -> dict[str, Any]:
        """Open campaigns without a public code (``GET /coupon-campaigns``)."""
        now = now_ms()
        found: list[Campaign] = await self._tx(lambda s: repo.claimable(s, now))
        return {"items": [c.view(now) for c in found if c.code is None]}

    # ---- claims ---------------------------------------------------------------------------
    async def claim(self, user_id: int, campaign_id: int, client_key: str | None) -> dict[str, Any]:
        """Claim one coupon of the campaign (its own code if it has one: ``redeem``)."""
        campaign = await self.campaign(campaign_id)
        if campaign.code is not None:
            raise CampaignNotFound(
                f"coupon campaign {campaign_id} not found", details={"campaign_id": campaign_id}
            )
        key = f"k:{client_key}" if client_key is not None else ""
        return await self._claim(campaign, user_id, key)

    async def redeem(self, user_id: int, code: str) -> dict[str, Any]:
        """Claim a coupon of the campaign whose public code this is."""
        found: Campaign | None = await self._tx(lambda s: repo.campaign_by_code(s, code))
        if found is None or not found.active:
            raise CouponCodeInvalid("no campaign has this code")
        campaign = self.remember(found)
        return await self._claim(campaign, user_id, f"r:{code}")

    async def _claim(self, campaign: Campaign, user_id: int, key: str) -> dict[str, Any]:
        if key:
            made = self._replays.get((campaign.id, user_id, key))
            if made is not None:
                _count("replayed", "1")
                found = {"valid_from_ms": made[1], "valid_until_ms": made[2]}
                return _success(campaign, made[0], found, True)
        now = now_ms()
        if now < campaign.claim_starts_ms:
            return await self._refused(campaign, user_id, key, "not_started")
        if now >= campaign.claim_ends_ms:
            return await self._refused(campaign, user_id, key, "ended")
        cid = campaign.id
        lease = self._leases.get(cid)
        if lease is not None:
            left_s = lease[0] - self.clock()
            if left_s > RENEW_S or (left_s > 0 and cid in self._renewing):
                return await self._refused(campaign, user_id, key, "sold_out", lease[1])
            if left_s > 0:  # this claim renews the lease: to the shard, one at a time
                self._renewing.add(cid)
                try:
                    return await self._decided(campaign, user_id, key)
                finally:
                    self._renewing.discard(cid)
        return await self._decided(campaign, user_id, key)

    async def _decided(self, campaign: Campaign, user_id: int, key: str) -> dict[str, Any]:
        """The claim as the shard decides it, or, if a sold-out lease arrived while it was
        queued, as ``_refused`` does under that lease."""
        sent = key or f"a:{secrets.token_hex(8)}"
        result = await self._claims.put(_Claim(campaign, user_id, sent))
        if result is _UNDER_LEASE:
            lease = self._leases.get(campaign.id)
            if lease is None:  # forgotten meanwhile (an administrator's change): ask again
                return await self._claim(campaign, user_id, key)
            return await self._refused(campaign, user_id, key, "sold_out", lease[1])
        answer = self._answer(campaign, result)
        if key:
            if len(self._replays) >= REPLAYS_MAX:
                self._replays.clear()
            self._replays[(campaign.id, user_id, key)] = (
                answer["coupon_id"],
                answer["valid_from_ms"],
                answer["valid_until_ms"],
            )
        return answer

    async def _refused(
        self, campaign: Campaign, user_id: int, key: str, code: str, records: int | None = None
    ) -> dict[str, Any]:
        """Refuse here, unless the key is that of a claim made (then its coupon again); a
        sold-out refusal of a user at the limit says so, as the desk would (it checks the
        limit first)."""
        if key:
            coupon: dict[str, Any] | None
            if records is not None and records <= SNAPSHOT_MAX_RECORDS:
                _, claims, per_user = await self._snapshot(campaign.id, records)
                coupon, held = claims.get((user_id, key)), per_user.get(user_id, 0)
            else:
                found = await self._lookups.submit((campaign.id, user_id, key))
                coupon, held = found["coupon"], int(found["held"])
            if coupon is not None:
                _count("replayed", "1")
                return _success(campaign, coupon["coupon_id"], coupon, True)
            if code == "sold_out" and held >= campaign.per_user_limit:
                code = "limit_reached"
        _count(code, "1")
        raise _error(campaign, code)

    def _answer(self, campaign: Campaign, result: Result) -> dict[str, Any]:
        if type(result) is not ClaimResult:
            raise outcomes.error_for(str(result), UNREAD)
        _count("replayed" if result.replayed else result.code, "0")
        if result.code == "ok":
            found = {"valid_from_ms": result.valid_from_ms, "valid_until_ms": result.valid_until_ms}
            return _success(campaign, result.coupon_id, found, result.replayed)
        if result.code in ("inactive", "ended", "not_started"):  # the copy here is stale
            self._campaigns.pop(campaign.id, None)
        raise _error(campaign, result.code)

    async def _snapshot(
        self, campaign_id: int, records: int
    ) -> tuple[int, dict[tuple[int, str], Any], dict[int, int]]:
        """The campaign's claims, read once per number of ``records`` (callers of the same
        count share the read)."""
        held = self._snapshots.get(campaign_id)
        if held is not None and held[0] == records:
            return held

        async def load() -> tuple[int, dict[tuple[int, str], Any], dict[int, int]]:
            claims, per_user = await self._tx(lambda s: repo.campaign_claims(s, campaign_id))
            self.snapshot_loads += 1
            snap = (records, claims, per_user)
            if campaign_id in self._leases:
                self._snapshots[campaign_id] = snap
            self._prune()
            return snap

        return await self._snapshot_loads.do((campaign_id, records), load)  # type: ignore[no-any-return]

    def _prune(self) -> None:
        """Forget leases that ended over SNAPSHOT_KEEP_S ago, with their snapshots."""
        stale = self.clock() - SNAPSHOT_KEEP_S
        for cid in [c for c, (end, _) in self._leases.items() if end < stale]:
            del self._leases[cid]
        for cid in [c for c in self._snapshots if c not in self._leases]:
            del self._snapshots[cid]

    async def _lookup_batch(self, keys: Sequence[tuple[int, int, str]]) -> list[dict[str, Any]]:
        return await self._tx(lambda s: repo.claims_by_keys(s, keys))  # type: ignore[no-any-return]

    async def _decide(self, batch: list[_Claim]) -> list[Answer]:
        """One call per shard; a claim of a campaign whose sold-out lease arrived while it
        was queued (the answer of an earlier batch) is not sent: ``_UNDER_LEASE``."""
        answers: list[Answer] = [Unavailable("the claim was not answered")] * len(batch)
        by_shard: dict[int, list[int]] = {}
        leases, now = self._leases, self.clock()
        for i, req in enumerate(batch):
            lease = leases.get(req.campaign.id) if leases else None
            if lease is not None and lease[0] - now > RENEW_S:
                answers[i] = _UNDER_LEASE
                continue
            by_shard.setdefault(self.shard_of(req.campaign.id), []).append(i)
        await asyncio.gather(
            *(self._call(shard, batch, idx, answers) for shard, idx in by_shard.items())
        )
        return answers

    async def _call(
        self, shard: int, batch: list[_Claim], idx: list[int], answers: list[Answer]
    ) -> None:
        ops: list[Any] = [
            CouponClaim(batch[i].campaign.id, batch[i].user_id, batch[i].key) for i in idx
        ]
        self.shard_calls += 1
        sent = self.clock()
        try:
            results = await self.shards.send_batch(shard, ops)
        except Exception as exc:
            err = exc if isinstance(exc, DomainError) else _unavailable(exc)
            for i in idx:
                answers[i] = err
            return
        for i, result in zip(idx, results, strict=True):
            if type(result) is ClaimResult and result.lease_ms > 0:
                lease_s = result.lease_ms / 1000
                until = sent + lease_s - LEASE_MARGIN_S - lease_s * LEASE_MARGIN_RATE
                cid = batch[i].campaign.id
                held = self._leases.get(cid)
                if held is None or until > held[0]:
                    self._leases[cid] = (until, result.records)
                self._prune()
            answers[i] = result

    async def wallet(self, user_id: int, state: str | None = None) -> list[dict[str, Any]]:
        """The user's coupons (``raymall.coupons.repo.wallet``)."""
        now = now_ms()
        return await self._tx(lambda s: repo.wallet(s, user_id, now, state))  # type: ignore[no-any-return]

    def forget(self, campaign_id: int) -> None:
        """Drop the copy and any lease (an administrator changed the campaign here)."""
        self._campaigns.pop(campaign_id, None)
        self._leases.pop(campaign_id, None)

    def mark(self, campaign: Campaign) -> None:
        """Keep a fresh copy (read or written by this replica just now)."""
        self.remember(replace(campaign))


def _error(campaign: Campaign, code: str) -> DomainError:
    return outcomes.error_for(
        code,
        CLAIM,
        campaign_id=campaign.id,
        claim_starts_at_ms=campaign.claim_starts_ms,
        claim_ends_at_ms=campaign.claim_ends_ms,
        per_user_limit=campaign.per_user_limit,
    )


def _unavailable(exc: BaseException) -> Unavailable:
    return Unavailable(f"the claim is unavailable ({type(exc).__name__}); retry")


def _success(
    campaign: Campaign, coupon_id: Any, found: dict[str, Any], replayed: bool
) -> dict[str, Any]:
    return {
        "coupon_id": str(coupon_id),
        "campaign_id": campaign.id,
        "state": "available",
        "valid_from_ms": found.get("valid_from_ms"),
        "valid_until_ms": found.get("valid_until_ms"),
        "replayed": replayed,
    }
