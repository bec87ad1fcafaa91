"""`/`: the home page of each role, linking every page the user may open."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from pvoq.web.console.auth import User, page_user
from pvoq.web.console.templating import render

router = APIRouter()


@router.get("/", include_in_schema=False)
async def home(request: Request, user: Annotated[User, Depends(page_user)]) -> HTMLResponse:
    return render(request, "home.html", user=user)
