"""Admin input for the catalog: strict types, bounded lengths, no extra fields.

Money is integer cents (>= 0); ids are positive integers; strings are stripped and
bounded. A request that breaks any rule is a 422 in the one error shape.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_PRICE_CENTS = 100_000_000_00  # one hundred million in major units
MAX_IMAGES = 20
MAX_SKUS_PER_REQUEST = 100
MAX_ATTRIBUTES_JSON = 8_000
IMAGE_URL_PATTERN = r"^(/media/images/[0-9a-f]{64}\.(png|jpg|webp|gif)|https://[!-~]{4,480})$"

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Slug = Annotated[
    str, StringConstraints(min_length=1, max_length=120, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)]
SkuCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
SpecKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
SpecValue = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
Specs = Annotated[dict[SpecKey, SpecValue], Field(max_length=8)]
PriceCents = Annotated[int, Field(ge=0, le=MAX_PRICE_CENTS)]
Threshold = Annotated[int, Field(ge=0, le=1_000_000)]
SortOrder = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
ImageUrl = Annotated[str, StringConstraints(max_length=500, pattern=IMAGE_URL_PATTERN)]
Images = Annotated[list[ImageUrl], Field(max_length=MAX_IMAGES)]
AttrKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60)]
AttrScalar = str | int | Annotated[float, Field(allow_inf_nan=False)] | bool
AttrValue = AttrScalar | Annotated[list[AttrScalar], Field(max_length=50)]
Attributes = Annotated[dict[AttrKey, AttrValue], Field(max_length=50)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def given(self) -> dict[str, Any]:
        """Only the fields the caller sent (PATCH semantics: absent means unchanged)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class CategoryCreate(Input):
    name: Name
    slug: Slug | None = None
    parent_id: Id | None = None
    sort_order: SortOrder = 0


class CategoryUpdate(Input):
    """``parent_id`` present and null moves the category to the root."""

    name: Name | None = None
    slug: Slug | None = None
    parent_id: Id | None = None
    sort_order: SortOrder | None = None


class BrandCreate(Input):
    name: Name
    slug: Slug | None = None
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2_000)] = ""


class BrandUpdate(Input):
    name: Name | None = None
    slug: Slug | None = None
    description: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=2_000)] | None
    ) = None


class SkuCreate(Input):
    code: SkuCode
    specs: Specs = Field(default_factory=dict)
    price_cents: PriceCents
    low_stock_threshold: Threshold = 10


class SkuUpdate(Input):
    specs: Specs | None = None
    price_cents: PriceCents | None = None
    low_stock_threshold: Threshold | None = None


def _attributes_bounded(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(json.dumps(value)) > MAX_ATTRIBUTES_JSON:
        raise ValueError(f"attributes must serialise to at most {MAX_ATTRIBUTES_JSON} bytes")
    return value


class ProductCreate(Input):
    title: Title
    description: Description = ""
    category_id: Id
    brand_id: Id | None = None
    attributes: Attributes = Field(default_factory=dict)
    images: Images = Field(default_factory=list)
    skus: Annotated[list[SkuCreate], Field(max_length=MAX_SKUS_PER_REQUEST)] = Field(
        default_factory=list
    )

    _check_attributes = field_validator("attributes")(_attributes_bounded)


class ProductUpdate(Input):
    """``brand_id`` present and null removes the brand."""

    title: Title | None = None
    description: Description | None = None
    category_id: Id | None = None
    brand_id: Id | None = None
    attributes: Attributes | None = None
    images: Images | None = None

    _check_attributes = field_validator("attributes")(_attributes_bounded)


ProductStatus = Literal["draft", "published", "unpublished"]
