"""HTTP routes: orders and admin order management."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
