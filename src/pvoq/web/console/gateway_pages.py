"""The gateway's pages: *Security Services > PVO Quarantines* (Enable) and the pipeline."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
