"""Review input: strict types, bounded lengths, no extra fields (422 otherwise)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from raymall.catalog.schemas import ImageUrl
from raymall.reviews.rules import MAX_IMAGES, MAX_RATING, MAX_TEXT, MIN_RATING

Rating = Annotated[int, Field(ge=MIN_RATING, le=MAX_RATING)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT)]
Images = Annotated[list[ImageUrl], Field(max_length=MAX_IMAGES)]
OrderItemId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class ReviewIn(BaseModel):
    """A review of one order line: ``images`` are URLs of uploaded images
    (``/media/images/...``, checked as for product images) or https URLs."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    rating: Rating
    text: Text = ""
    images: Images = Field(default_factory=list)


class ReviewOfLineIn(ReviewIn):
    """``POST /reviews``: the line named in the body (order ids travel as strings)."""

    order_id: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,18}$")]
    order_item_id: OrderItemId
