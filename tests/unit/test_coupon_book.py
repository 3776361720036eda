"""Coupon claims through the shard's book on SQLite, with no Ray: a campaign loads on first
use, claims commit with their coupon rows, outbox events and the campaign's count in the
batch's one transaction, and a book rebuilt from the database (a restart) keeps the total,
the per-user limit and the replays exact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from actors import wire
from models import CouponCampaign, OutboxEvent, UserCoupon
from raymall.coupons import repo
from raymall.domain.promotions import AMOUNT_OFF, Rule, Scope
from raymall.domain.shard_ops import ClaimResult, CouponClaim, CouponUpdate, CouponWarm
from raymall.ids import now_ms
from tests.unit.test_shard_book import World


@pytest.fixture()
def world(sqlite_url: str) -> Iterator[World]:
    w = World(sqlite_url)
    yield w
    w.store.dispose()
    w.engine.dispose()


def new_campaign(world: World, total: int, limit: int) -> int:
    now = now_ms()
    values = {
        "title": "5 off",
        "rule": Rule(AMOUNT_OFF, amount_cents=500).as_dict(),
        "scope": Scope().as_dict(),
        "total": total,
        "per_user_limit": limit,
        "claim_starts_ms": now - 1_000,
        "claim_ends_ms": now + 600_000,
        "valid_days": 7,
    }
    with Session(world.engine) as session, session.begin():
        return repo.insert_campaign(session, values, now).id


async def test_claims_commit_with_their_rows_and_survive_a_restart(world: World) -> None:
    cid = new_campaign(world, total=3, limit=1)
    book = world.book()
    now = now_ms()
    assert await world.commit(book, [CouponClaim(cid, 1, "a")]) == [
        ClaimResult("inactive", None, False, 3, 0, 0, None, None)
    ]
    assert await world.commit(book, [CouponUpdate(cid, 3, 1, now - 1_000, now + 600_000, True)])
    results = await world.commit(
        book, [CouponClaim(cid, u, "a") for u in (1, 2)] + [CouponClaim(cid, 1, "b")]
    )
    codes = [r.code for r in results if isinstance(r, ClaimResult)]
    assert codes == ["ok", "ok", "limit_reached"]

    with Session(world.engine) as session:
        assert session.scalar(select(CouponCampaign.claimed).where(CouponCampaign.id == cid)) == 2
        assert session.scalar(select(CouponCampaign.active).where(CouponCampaign.id == cid))
        rows = session.scalars(select(UserCoupon).where(UserCoupon.campaign_id == cid)).all()
        assert sorted((r.user_id, r.claim_key, r.state) for r in rows) == [
            (1, "a", "available"),
            (2, "a", "available"),
        ]
        events = session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.topic == "coupon.claimed")
        )
        assert events == 2

    restarted = world.book()  # a new shard: loads the campaign and its claims on first use
    again = await world.commit(restarted, [CouponClaim(cid, 1, "a"), CouponClaim(cid, 1, "c")])
    assert isinstance(again[0], ClaimResult) and again[0].replayed
    assert again[0].coupon_id == results[0].coupon_id  # type: ignore[union-attr]
    assert isinstance(again[1], ClaimResult) and again[1].code == "limit_reached"
    last = await world.commit(restarted, [CouponClaim(cid, u, "a") for u in (3, 4)])
    assert [r.code for r in last if isinstance(r, ClaimResult)] == ["ok", "sold_out"]
    assert await world.commit(restarted, [CouponWarm(cid), CouponWarm(10**9)]) == [
        "ok",
        "unknown_campaign",
    ]


async def test_a_failed_write_undoes_the_claims_in_memory(world: World) -> None:
    cid = new_campaign(world, total=2, limit=1)
    book = world.book()
    now = now_ms()
    await world.commit(book, [CouponUpdate(cid, 2, 1, now - 1_000, now + 600_000, True)])
    stage = await book.stage([CouponClaim(cid, 1, "a")])
    book.rollback()  # as the committer does when the transaction fails
    assert book.coupons.books[cid].info.claimed == 0
    results = await world.commit(book, [CouponClaim(cid, 1, "a")])
    assert isinstance(results[0], ClaimResult) and results[0].code == "ok"
    assert stage.statements  # the undone batch had rows to write


def test_claim_ops_and_results_travel_the_wire() -> None:
    ops = [CouponClaim(1, 2, "k"), CouponUpdate(1, 5, 1, 0, 9, True), CouponWarm(3)]
    assert wire.unpack_batch(wire.pack_batch(ops)) == ops
    results = [ClaimResult("ok", 7, False, 4, 0, 1, 10, 20), "sold_out"]
    back = wire.unpack_results(wire.pack_results(results))
    assert back == results and type(back[0]) is ClaimResult
