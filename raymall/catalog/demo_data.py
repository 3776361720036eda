"""The deterministic demo catalog: generated from a fixed seed, never downloaded.

``generate()`` returns the same categories, brands, products, SKUs and stock on every
machine and run (a private ``random.Random(SEED)``, no clock, no global state). Products
are composed from per-leaf vocabularies (``demo_vocab``): titles combine brand, model,
feature and product noun; descriptions combine sentences about that leaf's product kind,
so products in one leaf category are semantically coherent.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from raymall.catalog.demo_vocab import BRANDS, LEAVES, MODELS, Leaf
from raymall.catalog.text import slugify, words

SEED = 20_240_601
PRODUCTS_PER_LEAF = 11
BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z: demo creation times are fixed
OUT_OF_STOCK_RATE = 0.08


@dataclass(frozen=True)
class DemoCategory:
    slug: str
    name: str
    parent_slug: str | None
    sort_order: int


@dataclass(frozen=True)
class DemoBrand:
    slug: str
    name: str
    description: str


@dataclass(frozen=True)
class DemoSku:
    code: str
    specs: dict[str, str]
    price_cents: int
    stock: int


@dataclass(frozen=True)
class DemoProduct:
    title: str
    description: str
    category_slug: str
    brand_slug: str
    attributes: dict[str, Any]
    skus: tuple[DemoSku, ...]
    sales_count: int
    created_ms: int


@dataclass
class DemoCatalog:
    categories: list[DemoCategory] = field(default_factory=list)
    brands: list[DemoBrand] = field(default_factory=list)
    products: list[DemoProduct] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        leaves = {p.category_slug for p in self.products}
        return {
            "categories": len(self.categories),
            "leaf_categories": len(leaves),
            "brands": len(self.brands),
            "products": len(self.products),
            "skus": sum(len(p.skus) for p in self.products),
            "units_in_stock": sum(s.stock for p in self.products for s in p.skus),
        }


def _categories() -> list[DemoCategory]:
    out: dict[str, DemoCategory] = {}
    for leaf in LEAVES:
        parent: str | None = None
        for depth, name in enumerate(leaf.path):
            slug = slugify(name)
            if slug not in out:
                order = sum(1 for c in out.values() if c.parent_slug == parent)
                out[slug] = DemoCategory(slug, name, parent, order)
            elif out[slug].parent_slug != parent:
                raise ValueError(f"category name {name!r} is used twice at depth {depth}")
            parent = slug
    return list(out.values())


def _price(rng: random.Random, low: int, high: int) -> int:
    """A shelf price ending in 99 cents."""
    return max(99, (rng.randint(low, high) // 100) * 100 + 99)


def _skus(rng: random.Random, leaf: Leaf, number: int, base: int) -> tuple[DemoSku, ...]:
    axes = leaf.axes[:2]
    combos = list(itertools.product(*(values for _, values in axes)))
    count = min(len(combos), rng.choices((1, 2, 3, 4), weights=(3, 3, 2, 2))[0])
    picked = sorted(rng.sample(range(len(combos)), count))
    skus = []
    for n, idx in enumerate(picked, start=1):
        combo = combos[idx]
        specs = {name: value for (name, _), value in zip(axes, combo, strict=True)}
        # larger sizes/capacities (later values on the first axis) cost a little more
        step = axes[0][1].index(combo[0])
        price = base + step * max(100, base // 10 // 100 * 100)
        stock = 0 if rng.random() < OUT_OF_STOCK_RATE else rng.randint(5, 250)
        skus.append(DemoSku(f"DM-{leaf.code}-{number:03d}-{n}", specs, price, stock))
    return tuple(skus)


def _product(
    rng: random.Random, leaf: Leaf, number: int, brands: list[str], used: set[str]
) -> DemoProduct:
    for _ in range(100):
        brand, model, noun = rng.choice(brands), rng.choice(MODELS), rng.choice(leaf.nouns)
        # no feature that repeats a word of the noun ("Waterproof Waterproof Shell")
        feature = rng.choice([f for f in leaf.features if not set(words(f)) & set(words(noun))])
        material = rng.choice(leaf.materials)
        title = f"{brand} {model} {feature} {noun}"
        if title not in used:
            used.add(title)
            break
    else:  # pragma: no cover - the vocabularies are far larger than a leaf
        raise RuntimeError(f"cannot make a unique title in {leaf.path[-1]}")
    uses = rng.sample(leaf.uses, 2)
    blurbs = rng.sample(leaf.blurbs, 3)
    description = " ".join(
        [
            f"{brand} designed the {model} {noun} for {uses[0]}.",
            *blurbs,
            f"Construction: {material}. A dependable choice for {uses[0]} and {uses[1]}.",
        ]
    )
    base = _price(rng, *leaf.price)
    return DemoProduct(
        title=title,
        description=description,
        category_slug=slugify(leaf.path[-1]),
        brand_slug=slugify(brand),
        attributes={"material": material, "features": [feature], "model": model},
        skus=_skus(rng, leaf, number, base),
        sales_count=rng.randint(0, 5_000),
        created_ms=0,  # assigned below, after all products exist
    )


def generate(products_per_leaf: int = PRODUCTS_PER_LEAF) -> DemoCatalog:
    """The demo catalog; identical on every call with the same argument."""
    rng = random.Random(SEED)
    catalog = DemoCatalog(categories=_categories())
    catalog.brands = [DemoBrand(slugify(n), n, d) for n, _depts, d in BRANDS]
    by_dept: dict[str, list[str]] = {}
    for name, depts, _ in BRANDS:
        for dept in depts:
            by_dept.setdefault(dept, []).append(name)
    used: set[str] = set()
    products = []
    for leaf in LEAVES:
        for number in range(1, products_per_leaf + 1):
            products.append(_product(rng, leaf, number, by_dept[leaf.dept], used))
    # creation times spread over a year in a shuffled order, so "newest" mixes categories
    order = list(range(len(products)))
    rng.shuffle(order)
    catalog.products = [
        DemoProduct(**{**p.__dict__, "created_ms": BASE_MS + order[i] * 86_400_000})
        for i, p in enumerate(products)
    ]
    return catalog
