"""Reviews on SQLite and MariaDB: the verified-buyer rules against real rows, one review per
line whoever wins a race, the product's rating counters kept exactly by the guarded UPDATEs
(also under concurrent reviews of one product), hide/show, the outbox, keyset pages."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from models import Order, OrderItem, Product, User
from raymall.bootstrap import ensure_reference_data
from raymall.db import make_engine, session_factory
from raymall.domain import order_state as st
from raymall.errors import (
    AlreadyReviewed,
    NotFound,
    NotVerifiedBuyer,
    OrderNotReceived,
    ReviewNotFound,
    ValidationFailed,
)
from raymall.ids import now_ms
from raymall.launcher.shop import SkuSpec, add_category, add_product, user_values
from raymall.reviews.rules import average_x100
from raymall.reviews.schemas import ReviewIn
from raymall.reviews.service import ReviewService
from raymall.settings import Settings
from tests.conftest import SERVER_DB, make_mysql_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    drop = None
    if request.param == "sqlite":
        from raymall.launcher.migrate import upgrade

        url = f"sqlite:///{tmp_path_factory.mktemp('reviews') / 'r.db'}"
        upgrade(url)
        ensure_reference_data(Settings(database_url=url, redis_url="redis://unused"))
    else:
        if not SERVER_DB:
            pytest.skip("RAYMALL_TEST_DATABASE_URL not set")
        url, drop = make_mysql_database(SERVER_DB)
    eng = make_engine(url, pool_size=12)
    yield eng
    eng.dispose()
    if drop:
        drop()


class World:
    """Users, a product with two SKUs, and orders holding lines of it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: sessionmaker[Session] = session_factory(engine)
        self.invalidated: list[list[int]] = []
        self.svc = ReviewService(self.sessions, media=None, products=self)
        tag = secrets.token_hex(4)
        with engine.begin() as conn:
            cat = add_category(conn, f"Kettles {tag}", f"kettles-{tag}")
            self.product, self.skus = add_product(
                conn,
                cat,
                f"Kettle {tag}",
                [SkuSpec(f"K-{tag}-a", 2500, 0, {}), SkuSpec(f"K-{tag}-b", 3000, 0, {})],
                shards=4,
            )

    def invalidate_sync(self, product_ids: Sequence[int]) -> None:
        self.invalidated.append(list(product_ids))

    def user(self, name: str = "") -> int:
        name = name or f"r{secrets.token_hex(6)}"
        with self.engine.begin() as conn:
            values = user_values(name, display_name=name.title(), now=now_ms())
            return int(conn.execute(insert(User).values(**values)).inserted_primary_key[0])  # type: ignore[index]

    def order(
        self, user_id: int, status: str = st.DELIVERED, lines: int = 2
    ) -> tuple[int, list[int]]:
        oid = int(secrets.randbits(62))
        now = now_ms()
        with self.engine.begin() as conn:
            conn.execute(
                insert(Order).values(
                    id=oid, user_id=user_id, shard=0, kind="normal", status=status,
                    total_cents=5500, currency="USD", address={}, reservation_key=f"o:{oid}",
                    created_ms=now, updated_ms=now,
                )
            )  # fmt: skip
            items = []
            for sku in self.skus[:lines]:
                res = conn.execute(
                    insert(OrderItem).values(
                        order_id=oid, sku_id=sku, product_id=self.product, title="Kettle",
                        specs={}, unit_price_cents=2500, quantity=1, line_total_cents=2500,
                    )
                )  # fmt: skip
                items.append(int(res.inserted_primary_key[0]))  # type: ignore[index]
        return oid, items

    def counters(self) -> tuple[int, int, int]:
        with self.sessions() as s:
            p = s.get(Product, self.product)
            assert p is not None
            return int(p.rating_count), int(p.rating_sum), int(p.rating_x100)

    def visible(self) -> tuple[int, int]:
        """(count, sum) of the product's visible reviews, from the reviews themselves."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT COUNT(*), COALESCE(SUM(rating), 0) FROM reviews "
                    "WHERE product_id = :p AND hidden = :h"
                ),
                {"p": self.product, "h": False},
            ).one()
        return int(row[0]), int(row[1])

    def consistent(self) -> tuple[int, int, int]:
        count, total, x100 = self.counters()
        assert (count, total) == self.visible()
        assert x100 == average_x100(count, total)
        return count, total, x100


@pytest.fixture()
def world(engine: Engine) -> World:
    return World(engine)


def test_the_buyer_reviews_a_delivered_line_once_and_the_product_counts_it(world: World) -> None:
    alice = world.user()
    oid, (line, other) = world.order(alice)
    got = world.svc.create_sync(alice, oid, line, ReviewIn(rating=4, text="Boils fast."))
    assert got["rating"] == 4 and got["product_id"] == world.product and not got["hidden"]
    assert got["order_id"] == str(oid) and got["order_item_id"] == line
    assert world.consistent() == (1, 4, 400)
    assert world.invalidated == [[world.product]]
    with world.engine.connect() as conn:
        topic, payload = conn.execute(
            text("SELECT topic, payload FROM outbox WHERE aggregate_id = :a"),
            {"a": str(got["id"])},
        ).one()
    assert topic == "review.created" and f'"user_id":{alice}' in payload.replace(" ", "")
    with pytest.raises(AlreadyReviewed):
        world.svc.create_sync(alice, oid, line, ReviewIn(rating=1))
    assert world.consistent() == (1, 4, 400)
    world.svc.create_sync(alice, oid, other, ReviewIn(rating=5))
    assert world.consistent() == (2, 9, 450)


@pytest.mark.parametrize("status", [st.PENDING_PAYMENT, st.PAID, st.SHIPPED, st.CANCELLED])
def test_an_order_not_received_cannot_be_reviewed(world: World, status: str) -> None:
    bob = world.user()
    oid, (line, _) = world.order(bob, status=status)
    with pytest.raises(OrderNotReceived):
        world.svc.create_sync(bob, oid, line, ReviewIn(rating=5))
    assert world.consistent() == (0, 0, 0) and world.invalidated == []


def test_someone_who_did_not_buy_the_line_gets_not_verified_buyer(world: World) -> None:
    alice, mallory = world.user(), world.user()
    oid, (line, _) = world.order(alice, status=st.COMPLETED)
    other_oid, (other_line, _) = world.order(alice)
    for order_id, item_id, who in (
        (oid, line, mallory),  # someone else's order
        (oid, other_line, alice),  # a line of another order
        (oid + 1, line, alice),  # no such order
        (oid, 10**15, alice),  # no such line
    ):
        with pytest.raises(NotVerifiedBuyer):
            world.svc.create_sync(who, order_id, item_id, ReviewIn(rating=5))
    assert world.consistent() == (0, 0, 0)
    assert other_oid


def test_images_must_be_uploaded(world: World) -> None:
    class Media:
        def url_is_stored(self, url: str) -> bool:
            return url.endswith("a.png")

    world.svc.media = Media()  # type: ignore[assignment]
    alice = world.user()
    oid, (line, _) = world.order(alice)
    missing = "/media/images/" + "b" * 64 + ".png"
    with pytest.raises(ValidationFailed):
        world.svc.create_sync(alice, oid, line, ReviewIn(rating=5, images=[missing]))
    kept = "/media/images/" + "a" * 63 + "a.png"
    assert world.svc.create_sync(alice, oid, line, ReviewIn(rating=5, images=[kept]))["images"] == [
        kept
    ]


def test_hide_and_show_move_the_counters_once_each(world: World) -> None:
    alice, admin = world.user(), world.user()
    oid, (a, b) = world.order(alice)
    first = world.svc.create_sync(alice, oid, a, ReviewIn(rating=2))
    world.svc.create_sync(alice, oid, b, ReviewIn(rating=5))
    assert world.consistent() == (2, 7, 350)
    world.invalidated.clear()
    for _ in range(2):  # the repeat changes nothing
        assert world.svc.set_hidden_sync(first["id"], True, admin)["hidden"] is True
        assert world.consistent() == (1, 5, 500)
    assert world.invalidated == [[world.product]]
    page = world.svc.list_sync(world.product, 10, None)
    assert [r["rating"] for r in page["items"]] == [5]
    assert (page["rating_count"], page["rating_average"]) == (1, 5.0)
    for _ in range(2):
        assert world.svc.set_hidden_sync(first["id"], False, admin)["hidden"] is False
        assert world.consistent() == (2, 7, 350)
    with world.engine.connect() as conn:
        topics = (
            conn.execute(
                text("SELECT topic FROM outbox WHERE aggregate_id = :a ORDER BY id"),
                {"a": str(first["id"])},
            )
            .scalars()
            .all()
        )
    assert topics == ["review.created", "review.hidden", "review.shown"]
    with pytest.raises(ReviewNotFound):
        world.svc.set_hidden_sync(10**15, True, admin)
    # the last visible review hidden: no rating at all
    world.svc.set_hidden_sync(first["id"], True, admin)
    second = world.svc.list_sync(world.product, 10, None)["items"][0]["id"]
    world.svc.set_hidden_sync(second, True, admin)
    assert world.consistent() == (0, 0, 0)


def test_reviews_page_newest_first_by_keys_without_hidden_ones(world: World) -> None:
    admin = world.user()
    ids = []
    for n in range(7):
        buyer = world.user()
        oid, (line, _) = world.order(buyer)
        ids.append(world.svc.create_sync(buyer, oid, line, ReviewIn(rating=1 + n % 5))["id"])
    world.svc.set_hidden_sync(ids[3], True, admin)
    seen, cursor = [], None
    while True:
        page = world.svc.list_sync(world.product, 2, cursor)
        seen.extend(r["id"] for r in page["items"])
        assert all(
            set(r) >= {"author", "rating", "text", "images", "created_ms"} for r in page["items"]
        )
        cursor = page["next_cursor"]
        if cursor is None:
            break
    with world.sessions() as s:
        from models import Review

        order = (
            s.execute(
                select(Review.id)
                .where(Review.id.in_(ids))
                .order_by(Review.created_ms.desc(), Review.id.desc())
            )
            .scalars()
            .all()
        )
    assert seen == [i for i in order if i != ids[3]]
    with pytest.raises(ValidationFailed):
        world.svc.list_sync(world.product, 2, "not-a-cursor")
    with pytest.raises(NotFound):
        world.svc.list_sync(world.product + 10**9, 2, None)


def test_concurrent_reviews_of_one_product_all_count_and_one_line_is_reviewed_once(
    world: World,
) -> None:
    buyers = [world.user() for _ in range(12)]
    lines = [(b, *world.order(b)) for b in buyers]

    def review(args: tuple[int, int, list[int]]) -> Any:
        buyer, oid, items = args
        return [world.svc.create_sync(buyer, oid, i, ReviewIn(rating=1 + i % 5)) for i in items]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(review, lines))
    count, total, _ = world.consistent()
    assert count == 24
    # eight racers for one line: exactly one review
    buyer = world.user()
    oid, (line, _) = world.order(buyer)

    def once(_: int) -> str:
        try:
            world.svc.create_sync(buyer, oid, line, ReviewIn(rating=3))
            return "ok"
        except AlreadyReviewed:
            return "dup"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(once, range(8)))
    assert sorted(outcomes) == ["dup"] * 7 + ["ok"]
    assert world.consistent()[:2] == (count + 1, total + 3)


def test_best_sellers_break_ties_by_rating(world: World) -> None:
    from raymall.reviews.repository import add_rating
    from recommend.source import best_sellers

    other = World(world.engine)
    with world.sessions.begin() as s:
        for w in (world, other):
            s.get(Product, w.product).sales_count = 10**12  # type: ignore[union-attr]
        add_rating(s, world.product, 5)
        add_rating(s, other.product, 3)
    with world.sessions() as s:
        assert best_sellers(s, 2) == [world.product, other.product]  # rating beats newer id
        s.get(Product, other.product).sales_count = 10**12 + 1  # type: ignore[union-attr]
        s.flush()
        assert best_sellers(s, 2) == [other.product, world.product]  # sales come first
        s.rollback()
