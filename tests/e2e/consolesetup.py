"""What the console's end-to-end tests share: a deployment with the consoles on, its users,
and where screenshots go: `docs/console/` (referenced by docs/console.md) under
`make screenshots` (`PVOQ_SCREENSHOTS=docs/console`), else nowhere (taken, not kept), so that
a test run leaves the source tree as it found it and parallel runs write no shared file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pvoq.testing.browser import chromium, trusting
from pvoq.testing.localdeploy import Deployment

ADMIN_PW = "alice's long password"
READONLY_PW = "rita's long password"
USERS = [("alice", "admin", ADMIN_PW), ("rita", "read-only", READONLY_PW)]


def console_deployment(root: Path) -> Deployment:
    dep = Deployment(root, retry_min_s=0.5, retry_max_s=2.0, console=True, users=list(USERS))
    dep.init()
    return dep


@contextmanager
def browser_page(dep: Deployment, name: str) -> Iterator[Any]:
    """A Chromium page for appliance *name*'s console, its certificate chain checked
    against the deployment's CA first."""
    with chromium() as browser:
        context = trusting(browser, dep.console_url(name), dep.ca_file,
                           viewport={"width": 1100, "height": 700})
        try:
            yield context.new_page()
        finally:
            context.close()


def screenshot(page: Any, name: str) -> None:
    """Take a small PNG of *page*; keep it for the documentation under `make screenshots`."""
    shots = os.environ.get("PVOQ_SCREENSHOTS")
    if not shots:
        assert page.screenshot(full_page=False).startswith(b"\x89PNG")
        return
    Path(shots).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=False)
