"""HTTP routes: similar products, recommendations and semantic search."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
