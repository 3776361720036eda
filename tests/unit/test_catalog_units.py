"""Catalog pieces that need no services: text normalisation, Bloom sizing, input
validation, image checks, cursors, singleflight and the demo generator."""

from __future__ import annotations

import asyncio
import struct
import zlib
from pathlib import Path

import pytest
from pydantic import ValidationError

from raymall.catalog.bloom import BloomSpec
from raymall.catalog.cache import SingleFlight
from raymall.catalog.demo_data import generate
from raymall.catalog.listing import decode_cursor, encode_cursor
from raymall.catalog.media import MediaStore, sniff
from raymall.catalog.schemas import CategoryUpdate, ProductCreate, SkuCreate, SkuUpdate
from raymall.catalog.text import build_search_text, query_terms, slugify
from raymall.errors import PayloadTooLarge, UnsupportedMedia, ValidationFailed


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_search_text_is_lowercase_words_of_title_brand_path_and_description() -> None:
    text = build_search_text(
        "Vacuum-Insulated Thermos, 750 ml", "Nordhaven", ["Home & Kitchen", "Thermoses"], "Hot!"
    )
    assert text == "vacuum insulated thermos 750 ml nordhaven home kitchen thermoses hot"


def test_query_terms_drop_short_words_stopwords_and_duplicates() -> None:
    assert query_terms("The noise-cancelling HEADSET for a TV, headset") == [
        "noise",
        "cancelling",
        "headset",
    ]
    assert query_terms("a tv") == []


def test_slugify_is_ascii_and_never_empty() -> None:
    assert slugify("Café & Crème Brûlée") == "cafe-creme-brulee"
    assert slugify("!!!") == "item"


def test_bloom_spec_is_sized_for_its_capacity_and_hashes_are_stable() -> None:
    spec = BloomSpec.for_capacity(1_000_000, 0.01)
    assert 9_000_000 < spec.bits < 10_000_000
    assert spec.hashes == 7
    first = spec.offsets(12345)
    assert first == spec.offsets("12345")  # ids hash by their decimal text in every process
    assert len(set(first)) == 7
    assert all(1 <= o <= spec.bits for o in first)  # bit 0 is the completeness flag
    assert spec.offsets(12346) != first


def test_product_input_is_strict_and_bounded() -> None:
    ok = ProductCreate.model_validate(
        {"title": " Mug ", "category_id": 3, "skus": [{"code": "MUG-1", "price_cents": 0}]}
    )
    assert ok.title == "Mug" and ok.skus[0].price_cents == 0
    bad_inputs = [
        {"title": "x", "category_id": "3"},  # a string where an integer belongs
        {"title": "x", "category_id": 3, "colour": "red"},  # unknown field
        {"title": "", "category_id": 3},
        {"title": "x" * 201, "category_id": 3},
        {"title": "x", "category_id": 0},
        {"title": "x", "category_id": 3, "images": ["http://insecure.example/a.png"]},
        {"title": "x", "category_id": 3, "images": ["/media/images/../../etc/passwd"]},
        {"title": "x", "category_id": 3, "attributes": {"k": "v" * 9000}},
    ]
    for data in bad_inputs:
        with pytest.raises(ValidationError):
            ProductCreate.model_validate(data)


def test_sku_prices_are_non_negative_integer_cents() -> None:
    for price in (-1, 1.5, "100", True, 10**13):
        with pytest.raises(ValidationError):
            SkuCreate.model_validate({"code": "A-1", "price_cents": price})
    with pytest.raises(ValidationError):
        SkuCreate.model_validate({"code": "has space", "price_cents": 1})
    assert SkuUpdate.model_validate({"price_cents": 250}).given() == {"price_cents": 250}


def test_patch_input_tells_absent_from_null() -> None:
    assert CategoryUpdate.model_validate({}).given() == {}
    assert CategoryUpdate.model_validate({"parent_id": None}).given() == {"parent_id": None}


def test_images_are_checked_by_declared_type_and_magic_bytes(tmp_path: Path) -> None:
    store = MediaStore(tmp_path, max_bytes=2048)
    png = tiny_png()
    assert sniff(png) == "png"
    saved = store.save(png, "image/png")
    name = str(saved["url"]).rsplit("/", 1)[1]
    assert store.path_for(name) is not None and store.path_for(name).read_bytes() == png  # type: ignore[union-attr]
    assert store.url_is_stored(str(saved["url"]))
    assert store.save(png, "image/png") == saved  # same content, same name
    with pytest.raises(UnsupportedMedia):
        store.save(png, "image/jpeg")  # declared jpeg, content png
    with pytest.raises(UnsupportedMedia):
        store.save(b"<svg/>", "image/svg+xml")
    with pytest.raises(UnsupportedMedia):
        store.save(b"GIF89a" + b"\x00" * 10, "image/png")
    with pytest.raises(PayloadTooLarge):
        store.save(png + b"\x00" * 4096, "image/png")
    assert store.path_for("../../etc/passwd") is None
    assert store.path_for("0" * 64 + ".png") is None


def test_cursor_round_trips_and_garbage_is_a_validation_error() -> None:
    data = {"s": "newest", "v": 123, "i": 9}
    assert decode_cursor(encode_cursor(data)) == data
    for garbage in ("%%%", "bm90IGpzb24", encode_cursor([1, 2])):  # type: ignore[arg-type]
        with pytest.raises(ValidationFailed):
            decode_cursor(garbage)


async def test_singleflight_runs_one_call_per_key_for_concurrent_callers() -> None:
    flight = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def load() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "doc"

    waiters = [asyncio.ensure_future(flight.do("k", load)) for _ in range(200)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # the first caller goes away; the others still get the result
    gate.set()
    results = await asyncio.gather(*waiters[1:])
    assert calls == 1 and set(results) == {"doc"}
    assert len(flight) == 0
    assert await flight.do("k", load) == "doc" and calls == 2  # a later call runs again


async def test_singleflight_shares_a_failure_and_then_forgets_it() -> None:
    flight = SingleFlight()

    async def boom() -> str:
        await asyncio.sleep(0)
        raise RuntimeError("db down")

    results = await asyncio.gather(
        *(flight.do("k", boom) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(flight) == 0


def test_demo_catalog_is_deterministic_and_large_enough() -> None:
    a, b = generate(), generate()
    assert a.products == b.products and a.categories == b.categories and a.brands == b.brands
    s = a.summary()
    assert s["products"] >= 300 and s["brands"] >= 15 and s["leaf_categories"] >= 20
    assert all(1 <= len(p.skus) <= 4 for p in a.products)
    codes = [sku.code for p in a.products for sku in p.skus]
    assert len(codes) == len(set(codes))
    assert len({p.title for p in a.products}) == len(a.products)
    assert any(sku.stock == 0 for p in a.products for sku in p.skus)
    parents = {c.slug: c.parent_slug for c in a.categories}

    def depth(slug: str | None) -> int:
        return 0 if slug is None else 1 + depth(parents[slug])

    assert max(depth(c.slug) for c in a.categories) >= 4
    assert {p.category_slug for p in a.products} <= set(parents)


def test_demo_catalog_has_the_everyday_items_the_recommender_relies_on() -> None:
    products = generate().products
    texts = [f"{p.title} {p.description}".lower() for p in products]
    for phrase in (
        "vacuum-insulated thermos",
        "running shoes",
        "noise-cancelling headset",
        "yoga mat",
        "cast-iron skillet",
        "desk lamp",
        "backpack",
        "phone charger",
        "rain jacket",
        "coffee grinder",
    ):
        assert any(phrase in t for t in texts), phrase


def test_demo_leaf_products_share_their_leaf_vocabulary() -> None:
    by_leaf: dict[str, list[str]] = {}
    for p in generate().products:
        by_leaf.setdefault(p.category_slug, []).append(p.description)
    thermos = by_leaf["thermoses"]
    assert all(
        ("thermos" in d.lower() or "flask" in d.lower() or "jar" in d.lower()) for d in thermos
    )
    assert not any("thermos" in d.lower() for d in by_leaf["running-shoes"])


async def test_singleflight_linger_lets_late_callers_share_a_finished_load() -> None:
    flight = SingleFlight(linger_s=1.0)
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await flight.do("k", load) == 1
    assert await flight.do("k", load) == 1  # joined the finished flight
    await asyncio.sleep(1.2)
    assert await flight.do("k", load) == 2 and calls == 2
