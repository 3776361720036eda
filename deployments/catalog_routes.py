"""HTTP routes: catalog: categories, brands, products, SKUs, listing, search, images."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
