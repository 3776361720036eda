"""HTTP routes: accounts, auth, profile and addresses."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
