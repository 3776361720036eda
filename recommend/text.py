"""What a product's vector is made of.

The embedded text leads with what the product *is* (title, then the category path), then
who makes it and its key attributes, then the description. all-MiniLM-L6-v2 reads at most
256 word pieces, so the description is cut to keep the identifying parts inside that
window. ``doc_hash`` covers the text and every scalar stored beside the vector: when it is
unchanged, an update event needs no new embedding and no write.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

MAX_ATTRIBUTES = 8
MAX_ATTRIBUTE_CHARS = 60
MAX_DESCRIPTION_CHARS = 300


@dataclass(frozen=True)
class ProductDoc:
    """The part of a product the recommender indexes (read from the catalog tables)."""

    id: int
    title: str
    description: str
    category_id: int
    category_path: tuple[str, ...]
    brand_id: int | None
    brand_name: str | None
    price_cents: int
    published: bool
    attributes: dict[str, Any] = field(default_factory=dict)


def _attribute_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        text = str(value).strip()
    elif isinstance(value, list | tuple):
        text = ", ".join(str(v).strip() for v in value if isinstance(v, str | int | float))
    else:
        return None
    return text[:MAX_ATTRIBUTE_CHARS] or None


def attribute_phrases(attributes: dict[str, Any]) -> list[str]:
    """``key: value`` for the first few plain attributes, in key order (stable text)."""
    out: list[str] = []
    for key in sorted(attributes):
        value = _attribute_value(attributes[key])
        if value is not None:
            out.append(f"{str(key).replace('_', ' ')}: {value}")
        if len(out) >= MAX_ATTRIBUTES:
            break
    return out


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[:limit]
    return head[: head.rfind(" ")] if " " in head else head


def product_text(doc: ProductDoc) -> str:
    """The sentence the model embeds for ``doc``."""
    parts = [doc.title.strip()]
    if doc.category_path:
        parts.append("Category: " + " > ".join(doc.category_path))
    if doc.brand_name:
        parts.append(f"Brand: {doc.brand_name}")
    attrs = attribute_phrases(doc.attributes)
    if attrs:
        parts.append("; ".join(attrs))
    description = _cut(doc.description, MAX_DESCRIPTION_CHARS)
    if description:
        parts.append(description)
    return ". ".join(p.rstrip(".") for p in parts if p) + "."


def doc_hash(doc: ProductDoc) -> int:
    """A stable 63-bit digest of everything stored for ``doc`` (fits Milvus INT64)."""
    material = "\x1f".join(
        [
            product_text(doc),
            str(doc.category_id),
            str(doc.brand_id or 0),
            str(doc.price_cents),
            "1" if doc.published else "0",
        ]
    )
    digest = hashlib.blake2b(material.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1
