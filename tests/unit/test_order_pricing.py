"""Server-side pricing in integer cents, request hashing, and callback signatures."""

from __future__ import annotations

import pytest

from raymall.domain.pricing import SkuInfo, normalize_lines, price, request_hash
from raymall.errors import NotForSale, UnknownSku, ValidationFailed
from raymall.orders.signing import sign, signed_headers, verify

CATALOG = {
    1: SkuInfo(1, 10, "Kettle", 1999, True, {"color": "red"}),
    2: SkuInfo(2, 10, "Kettle", 2499, True, {"color": "blue"}),
    3: SkuInfo(3, 11, "Lamp", 5, True),
    4: SkuInfo(4, 12, "Hidden", 100, False),
}


def test_totals_are_exact_integer_cents_from_the_catalog() -> None:
    quote = price({1: 3, 3: 7}, CATALOG)
    assert [line.line_total_cents for line in quote.lines] == [5997, 35]
    assert quote.total_cents == 6032 and isinstance(quote.total_cents, int)
    assert quote.items == {1: 3, 3: 7}
    assert quote.lines[0].as_dict()["specs"] == {"color": "red"}


def test_the_catalog_price_wins_over_anything_else() -> None:
    cheaper = {**CATALOG, 1: SkuInfo(1, 10, "Kettle", 1, True)}
    assert price({1: 2}, CATALOG).total_cents == 3998
    assert price({1: 2}, cheaper).total_cents == 2


def test_an_unknown_sku_is_404_and_an_unpublished_one_is_409() -> None:
    with pytest.raises(UnknownSku) as unknown:
        price({99: 1}, CATALOG)
    assert unknown.value.status == 404 and unknown.value.details == {"sku_id": 99}
    with pytest.raises(NotForSale) as hidden:
        price({1: 1, 4: 1}, CATALOG)
    assert hidden.value.status == 409 and hidden.value.code == "sku_not_for_sale"


def test_repeated_skus_merge_and_lines_come_out_in_sku_order() -> None:
    lines = normalize_lines([(3, 1), (1, 2), (3, 4)], max_qty=10, max_lines=5)
    assert list(lines.items()) == [(1, 2), (3, 5)]


@pytest.mark.parametrize(
    "lines",
    [
        [],
        [(1, 0)],
        [(1, -2)],
        [(0, 1)],
        [(1, 6), (1, 5)],  # merged past the per-line maximum
        [(1, 1), (2, 1), (3, 1), (4, 1)],  # too many lines
        [(True, 1)],
        [(1, 1.5)],
    ],
)
def test_bad_lines_are_refused(lines: list) -> None:
    with pytest.raises(ValidationFailed):
        normalize_lines(lines, max_qty=10, max_lines=3)


def test_an_absurd_total_is_refused() -> None:
    huge = {1: SkuInfo(1, 1, "Yacht", 2**50, True)}
    with pytest.raises(ValidationFailed):
        price({1: 100}, huge)


def test_equal_requests_hash_equal_and_different_ones_differ() -> None:
    a = request_hash({"items": [[1, 2], [3, 1]], "address_id": 5})
    b = request_hash({"address_id": 5, "items": [[1, 2], [3, 1]]})
    c = request_hash({"address_id": 5, "items": [[1, 3], [3, 1]]})
    assert a == b != c and len(a) == 64


# ---- payment callback signatures ------------------------------------------------------
SECRET = "s" * 40
BODY = b'{"payment_id":"pay_1","amount_cents":500,"status":"succeeded"}'


def test_a_fresh_correct_signature_verifies() -> None:
    h = signed_headers(SECRET, 1_700_000_000, BODY)
    assert (
        verify(SECRET, h["X-Timestamp"], h["X-Signature"], BODY, now_s=1_700_000_010, window_s=300)
        is None
    )


def test_a_tampered_body_or_timestamp_or_key_is_a_bad_signature() -> None:
    sig = sign(SECRET, 1_700_000_000, BODY)
    now = 1_700_000_000
    assert (
        verify(SECRET, "1700000000", sig, BODY.replace(b"500", b"5"), now_s=now, window_s=300)
        == "bad_signature"
    )
    assert verify(SECRET, "1700000001", sig, BODY, now_s=now, window_s=300) == "bad_signature"
    assert verify("t" * 40, "1700000000", sig, BODY, now_s=now, window_s=300) == "bad_signature"


def test_an_old_or_future_timestamp_is_stale_even_when_signed() -> None:
    ts = 1_700_000_000
    sig = sign(SECRET, ts, BODY)
    assert verify(SECRET, str(ts), sig, BODY, now_s=ts + 301, window_s=300) == "stale_timestamp"
    assert verify(SECRET, str(ts), sig, BODY, now_s=ts - 301, window_s=300) == "stale_timestamp"


@pytest.mark.parametrize(
    "ts,sig", [(None, "ab"), ("1", None), ("", ""), ("12a", "ab"), ("-5", "ab"), ("9" * 20, "ab")]
)
def test_missing_or_malformed_headers_are_refused(ts: str | None, sig: str | None) -> None:
    assert verify(SECRET, ts, sig, BODY, now_s=1.0, window_s=300) is not None
