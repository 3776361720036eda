"""HTTP routes: admin stock views and adjustments."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
