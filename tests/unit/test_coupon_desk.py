"""The coupon desk: exact total and per-user limit, idempotent claims, atomic batches,
sold-out leases (raymall.domain.coupon_desk), with no Ray and no database."""

from __future__ import annotations

import itertools

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from raymall.domain.coupon_desk import (
    ENDED,
    INACTIVE,
    LIMIT,
    NOT_STARTED,
    SOLD_OUT,
    UNKNOWN_CAMPAIGN,
    Claim,
    CouponDesk,
)
from raymall.domain.coupons import DAY_MS, Campaign
from raymall.domain.promotions import AMOUNT_OFF, Rule, Scope
from raymall.domain.shard_ops import ClaimResult, CouponClaim, CouponUpdate, CouponWarm

NOW = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def campaign(cid: int = 1, total: int = 3, limit: int = 1, **kw: object) -> Campaign:
    values: dict[str, object] = {
        "id": cid,
        "title": "ten off",
        "rule": Rule(AMOUNT_OFF, amount_cents=1_000),
        "scope": Scope(),
        "total": total,
        "per_user_limit": limit,
        "claim_starts_ms": 0,
        "claim_ends_ms": 2 * NOW,
    }
    values.update(kw)
    return Campaign(**values)  # type: ignore[arg-type]


def desk(*campaigns: Campaign, lease_ms: int = 1000) -> tuple[CouponDesk, Clock]:
    clock = Clock()
    ids = itertools.count(1)
    d = CouponDesk(next_id=lambda: next(ids), lease_ms=lease_ms, clock=clock)
    for c in campaigns:
        d.load(c, [])
    clock.t += 2  # past the load's lease
    return d, clock


def claim(d: CouponDesk, cid: int, user: int, key: str, now: int = NOW) -> ClaimResult | str:
    d.begin(now)
    result = d.apply(CouponClaim(cid, user, key))
    d.commit()
    return result


def code(result: ClaimResult | str) -> str:
    return result.code if isinstance(result, ClaimResult) else result


def test_claims_stop_exactly_at_the_total_and_the_per_user_limit() -> None:
    d, _ = desk(campaign(total=3, limit=2))
    assert [code(claim(d, 1, u, f"k{u}")) for u in (1, 2)] == ["ok", "ok"]
    assert code(claim(d, 1, 1, "again")) == "ok"
    assert code(claim(d, 1, 1, "third")) == LIMIT
    last = claim(d, 1, 3, "k3")
    assert isinstance(last, ClaimResult) and code(last) == SOLD_OUT and last.remaining == 0
    assert d.books[1].info.claimed == 3


def test_a_replay_answers_the_first_claim_even_after_sold_out_and_end() -> None:
    d, _ = desk(campaign(total=1))
    first = claim(d, 1, 7, "key")
    assert isinstance(first, ClaimResult) and first.coupon_id == 1 and not first.replayed
    again = claim(d, 1, 7, "key", now=3 * NOW)  # the window has closed
    assert isinstance(again, ClaimResult)
    assert (again.code, again.coupon_id, again.replayed) == ("ok", 1, True)
    assert d.books[1].info.claimed == 1


def test_refusals_before_and_after_the_window_and_when_inactive() -> None:
    d, _ = desk(campaign(claim_starts_ms=NOW + 1), campaign(2, active=False))
    assert code(claim(d, 1, 1, "a")) == NOT_STARTED
    assert code(claim(d, 1, 1, "a", now=2 * NOW)) == ENDED
    assert code(claim(d, 2, 1, "a")) == INACTIVE
    assert code(claim(d, 9, 1, "a")) == UNKNOWN_CAMPAIGN
    assert code(claim(d, 1, "x", "a")) == "invalid"  # type: ignore[arg-type]


def test_validity_is_fixed_or_counted_from_the_claim() -> None:
    d, _ = desk(campaign(1, valid_days=3), campaign(2, valid_from_ms=5, valid_until_ms=9))
    days = claim(d, 1, 1, "a")
    fixed = claim(d, 2, 1, "a")
    assert isinstance(days, ClaimResult) and isinstance(fixed, ClaimResult)
    assert (days.valid_from_ms, days.valid_until_ms) == (NOW, NOW + 3 * DAY_MS)
    assert (fixed.valid_from_ms, fixed.valid_until_ms) == (5, 9)


def test_a_rolled_back_batch_leaves_nothing_behind() -> None:
    d, _ = desk(campaign(total=2))
    d.begin(NOW)
    assert code(d.apply(CouponClaim(1, 1, "a"))) == "ok"
    assert d.changes().claims and d.changes().campaigns
    d.rollback()
    assert d.books[1].info.claimed == 0 and not d.books[1].by_key and not d.changes()
    assert code(claim(d, 1, 1, "a")) == "ok"


def test_stacked_batches_commit_oldest_first_and_roll_back_newest_first() -> None:
    d, _ = desk(campaign(total=5, limit=5))
    d.begin(NOW)
    d.apply(CouponClaim(1, 1, "a"))
    d.begin(NOW)
    d.apply(CouponClaim(1, 1, "b"))
    d.rollback()  # the newest
    d.commit()  # the oldest
    assert set(d.books[1].by_key) == {(1, "a")} and d.books[1].info.claimed == 1


def test_sold_out_grants_a_lease_and_new_coupons_wait_for_it() -> None:
    d, clock = desk(campaign(total=1, limit=5))
    first = claim(d, 1, 1, "a")
    assert isinstance(first, ClaimResult) and first.lease_ms == 1000 and first.records == 1
    d.begin(NOW)
    assert d.apply(CouponUpdate(1, 2, 5, 0, 2 * NOW, True)) == "ok"
    d.commit()
    assert code(claim(d, 1, 2, "b")) == SOLD_OUT  # the lease granted above still runs
    clock.t += 1.5
    assert code(claim(d, 1, 2, "b")) == "ok"


def test_update_refuses_a_total_below_the_claims() -> None:
    d, _ = desk(campaign(total=3, limit=3))
    claim(d, 1, 1, "a")
    claim(d, 1, 1, "b")
    d.begin(NOW)
    assert d.apply(CouponUpdate(1, 1, 1, 0, 10, True)) == "invalid"
    assert d.apply(CouponUpdate(1, 2, 1, 0, 10, False)) == "ok"
    assert d.apply(CouponWarm(1)) == "ok" and d.apply(CouponWarm(5)) == UNKNOWN_CAMPAIGN
    d.rollback()
    info = d.books[1].info
    assert (info.total, info.per_user_limit, info.active) == (3, 3, True)


def test_loading_keeps_memory_and_counts_the_claims_read() -> None:
    d, _ = desk()
    info = campaign(total=5, limit=2, claimed=2)
    d.load(info, [Claim(10, 1, "a", 0, 9, 0), Claim(11, 1, "b", 0, 9, 0)])
    d.load(campaign(total=99), [])  # already held: ignored
    assert d.books[1].info.total == 5
    assert code(claim(d, 1, 1, "c")) == LIMIT
    replay = claim(d, 1, 1, "b")
    assert isinstance(replay, ClaimResult) and replay.coupon_id == 11


class DeskMachine(RuleBasedStateMachine):
    """Random claims in random batches, some rolled back: the totals and limits hold and
    memory equals what committed batches wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.desk, self.clock = desk(campaign(total=6, limit=2), lease_ms=0)
        self.written: dict[tuple[int, str], int] = {}
        self.answers: dict[tuple[int, str], int] = {}

    @rule(
        claims=st.lists(st.tuples(st.integers(1, 5), st.sampled_from("abc")), max_size=6),
        keep=st.booleans(),
    )
    def batch(self, claims: list[tuple[int, str]], keep: bool) -> None:
        d = self.desk
        d.begin(NOW)
        results = [d.apply(CouponClaim(1, u, k)) for u, k in claims]
        changes = d.changes()
        if keep:
            d.commit()
            for _, c in changes.claims:
                assert (c.user_id, c.key) not in self.written
                self.written[(c.user_id, c.key)] = c.coupon_id
            for (u, k), r in zip(claims, results, strict=True):
                if isinstance(r, ClaimResult) and r.code == "ok":
                    first = self.answers.setdefault((u, k), r.coupon_id or 0)
                    assert first == r.coupon_id
        else:
            d.rollback()

    @invariant()
    def limits_hold_and_memory_matches_the_writes(self) -> None:
        book = self.desk.books[1]
        assert book.info.claimed == len(book.by_key) <= book.info.total
        assert all(n <= book.info.per_user_limit for n in book.per_user.values())
        assert {k: c.coupon_id for k, c in book.by_key.items()} == self.written


TestDeskMachine = DeskMachine.TestCase
TestDeskMachine.settings = settings(max_examples=60, stateful_step_count=12, deadline=None)
