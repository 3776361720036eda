"""HTTP routes: payments and the signed provider callback."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
