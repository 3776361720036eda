"""Who may review an order line, the review input's bounds, and the rating arithmetic."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from pydantic import ValidationError

from raymall.domain import order_state as st
from raymall.errors import NotVerifiedBuyer, OrderNotReceived
from raymall.reviews.rules import LineFacts, Rating, average_x100, check_reviewable, public_rating
from raymall.reviews.schemas import ReviewIn, ReviewOfLineIn

BUYER = 7


@pytest.mark.parametrize("status", sorted(st.RECEIVED))
def test_the_buyer_may_review_a_line_of_a_received_order(status: str) -> None:
    check_reviewable(BUYER, LineFacts(BUYER, status, line_in_order=True))


@pytest.mark.parametrize("status", sorted(set(st.STATUSES) - st.RECEIVED))
def test_the_buyer_waits_until_the_order_is_received(status: str) -> None:
    with pytest.raises(OrderNotReceived) as caught:
        check_reviewable(BUYER, LineFacts(BUYER, status, line_in_order=True))
    assert caught.value.status == 409 and caught.value.details["status"] == status


@pytest.mark.parametrize(
    "facts",
    [
        None,  # no such order
        LineFacts(BUYER + 1, st.DELIVERED, line_in_order=True),  # someone else's order
        LineFacts(BUYER, st.DELIVERED, line_in_order=False),  # a line of another order
        LineFacts(BUYER + 1, st.PAID, line_in_order=True),  # not theirs, not received
    ],
)
def test_anyone_but_the_buyer_gets_one_answer_that_reveals_nothing(
    facts: LineFacts | None,
) -> None:
    with pytest.raises(NotVerifiedBuyer) as caught:
        check_reviewable(BUYER, facts)
    assert (caught.value.status, caught.value.code) == (403, "not_verified_buyer")
    assert caught.value.details == {}


def test_the_average_is_rounded_half_up_to_hundredths() -> None:
    assert average_x100(0, 0) == 0
    assert average_x100(1, 5) == 500
    assert average_x100(3, 13) == 433  # 4.333...
    assert average_x100(3, 14) == 467  # 4.666...
    assert average_x100(8, 33) == 413  # 4.125 -> 4.13
    assert average_x100(200, 999) == 500  # 4.995 -> 5.00


def test_the_average_x100_is_the_exact_mean_rounded_for_any_ratings() -> None:
    rng = random.Random(25)
    for _ in range(2_000):
        ratings = [rng.randint(1, 5) for _ in range(rng.randint(1, 400))]
        exact = Fraction(100 * sum(ratings), len(ratings))
        got = average_x100(len(ratings), sum(ratings))
        assert got - Fraction(1, 2) <= exact < got + Fraction(1, 2)
        assert 100 <= got <= 500


def test_adding_and_removing_ratings_are_inverses_and_never_go_negative() -> None:
    rng = random.Random(5)
    rating, shown = Rating(), []
    for _ in range(1_000):
        if shown and rng.random() < 0.4:
            stars = shown.pop(rng.randrange(len(shown)))
            rating = rating.removed(stars)
        else:
            stars = rng.randint(1, 5)
            shown.append(stars)
            rating = rating.added(stars)
        assert (rating.count, rating.total) == (len(shown), sum(shown))
        assert rating.x100 == average_x100(len(shown), sum(shown))
    for stars in list(shown):
        rating = rating.removed(stars)
    assert rating == Rating() and rating.average is None and rating.x100 == 0
    with pytest.raises(ValueError):
        rating.removed(3)


def test_documents_show_the_count_and_the_average() -> None:
    assert public_rating(0, 0) == {"rating_count": 0, "rating_average": None}
    assert public_rating(3, 433) == {"rating_count": 3, "rating_average": 4.33}


@pytest.mark.parametrize(
    "body",
    [
        {"rating": 0},
        {"rating": 6},
        {"rating": "5"},
        {"rating": 4.0},
        {"rating": 4, "text": "x" * 2_001},
        {"rating": 4, "images": ["/media/images/nothex.png"]},
        {"rating": 4, "images": ["http://insecure.example/a.png"]},
        {"rating": 4, "images": ["https://cdn.example/a.png"] * 10},
        {"rating": 4, "stars": 5},
        {"text": "no rating"},
    ],
)
def test_bad_review_input_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ReviewIn.model_validate(body)


def test_good_review_input_is_kept() -> None:
    image = "/media/images/" + "a" * 64 + ".png"
    got = ReviewIn.model_validate({"rating": 5, "text": "  Lovely kettle. ", "images": [image]})
    assert (got.rating, got.text, got.images) == (5, "Lovely kettle.", [image])
    assert ReviewIn.model_validate({"rating": 1}).text == ""
    line = ReviewOfLineIn.model_validate({"rating": 3, "order_id": "123", "order_item_id": 9})
    assert (line.order_id, line.order_item_id) == ("123", 9)
    with pytest.raises(ValidationError):
        ReviewOfLineIn.model_validate({"rating": 3, "order_id": 123, "order_item_id": 9})
