"""Cart rules that need no Redis: guest tokens, the listing view and its SKUs as the
products' documents describe them."""

from __future__ import annotations

from raymall.cart import cart_view, guest_token_ok, issue_guest_token
from raymall.catalog.skus import CatalogSku, from_document
from raymall.domain.pricing import SkuInfo

SECRET = "k" * 48


def test_issued_guest_tokens_verify_and_others_do_not() -> None:
    token = issue_guest_token(SECRET)
    assert guest_token_ok(SECRET, token)
    assert token != issue_guest_token(SECRET)
    assert not guest_token_ok("x" * 48, token)
    body, tag = token[2:].split(".")
    forged = f"g.{body[:-1]}{'A' if body[-1] != 'A' else 'B'}.{tag}"
    assert not guest_token_ok(SECRET, forged)
    for bad in (None, "", "g..", "cart:1", token + "0", token.upper()):
        assert not guest_token_ok(SECRET, bad)


def test_the_listing_prices_lines_live_and_flags_what_cannot_be_bought() -> None:
    catalog = {
        1: SkuInfo(1, 10, "Kettle", 1999, True),
        2: SkuInfo(2, 11, "Lamp", 500, False),
        3: SkuInfo(3, 12, "Mug", 250, True),
    }
    view = cart_view({1: 2, 2: 1, 3: 4, 9: 1}, catalog, {1: 5, 2: 9, 3: 3})
    lines = {line["sku_id"]: line for line in view["items"]}
    assert lines[1]["purchasable"] and lines[1]["line_total_cents"] == 3998
    assert lines[2]["problem"] == "sku_not_for_sale" and not lines[2]["purchasable"]
    assert lines[3]["problem"] == "out_of_stock" and lines[3]["available"] == 3
    assert lines[9]["problem"] == "unknown_sku" and "unit_price_cents" not in lines[9]
    assert view["total_cents"] == 3998  # only what can be bought now
    assert view["lines"] == 4 and view["units"] == 8


def test_an_empty_cart_lists_nothing_and_costs_nothing() -> None:
    assert cart_view({}, {}, {}) == {"items": [], "lines": 0, "units": 0, "total_cents": 0}


def test_a_sku_is_read_from_its_products_document_only_if_the_document_lists_it() -> None:
    doc = {
        "id": 10,
        "title": "Kettle",
        "status": "published",
        "category": {"id": 4, "name": "Kitchen", "path": []},
        "brand": {"id": 7, "name": "Acme", "slug": "acme"},
        "skus": [
            {
                "id": 1,
                "product_id": 10,
                "code": "K-1",
                "specs": {"size": "1l"},
                "price_cents": 1999,
            },
            {"id": 2, "product_id": 10, "code": "K-2", "specs": {}, "price_cents": 2499},
        ],
    }
    found = from_document(2, doc)
    assert found == CatalogSku(SkuInfo(2, 10, "Kettle", 2499, True, {}), 4, 7)
    assert from_document(1, doc).info.specs == {"size": "1l"}  # type: ignore[union-attr]
    assert from_document(3, doc) is None and from_document(1, None) is None
    hidden = {**doc, "status": "unpublished", "brand": None}
    assert from_document(1, hidden) == CatalogSku(
        SkuInfo(1, 10, "Kettle", 1999, False, {"size": "1l"}), 4, None
    )
