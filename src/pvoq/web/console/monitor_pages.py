"""*Monitor > Delivery Status* on both roles (filled in by the console's monitor area)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
