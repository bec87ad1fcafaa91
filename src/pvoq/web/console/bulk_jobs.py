"""Bulk actions of the console: the plan a dry run shows, and the job a confirm starts.

A dry run (`QuarantineService.bulk(..., dry_run=True)`: role checked, audited)
finds the MIDs; they are kept server-side as a `Plan` under a random id, for
the user who asked, for `PLAN_TTL` seconds. Confirming that plan acts on
exactly those MIDs (never on what arrived since), through the same service
calls as the REST API (`act_slices` for release and delete; `delay`, `move`,
`copy` per MID), on the event loop, yielding between slices, as a `Job`
whose progress the job page shows. At most `MAX_PLANS` plans and `MAX_JOBS`
jobs are kept (the oldest finished go first).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pvoq.errors import Invalid, NotFound
from pvoq.quarantine.roles import Caller
from pvoq.quarantine.service import SLICE, ActionResult, QuarantineService

ACTIONS = ("release", "delete", "delay", "move", "copy")
PLAN_TTL = 15 * 60
MAX_PLANS = 32
MAX_JOBS = 32
MAX_FAILURES_KEPT = 1000


@dataclass
class Plan:
    """What a confirm would do: *action* with its options on *mids*, for *user*."""

    id: str
    user: str
    action: str
    mids: list[int]
    quarantine: str | None = None
    delay: str | None = None
    target: str | None = None
    address: str | None = None
    created: float = field(default_factory=time.monotonic)


@dataclass
class Job:
    """A running (or finished) bulk action and its progress."""

    id: str
    user: str
    action: str
    total: int
    done: int = 0
    ok: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    finished: bool = False
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def add(self, results: list[ActionResult]) -> None:
        self.done += len(results)
        for r in results:
            if r.ok:
                self.ok += 1
            elif len(self.failures) < MAX_FAILURES_KEPT:
                self.failures.append((r.mid, r.text))

    def progress(self) -> dict[str, Any]:
        return {"total": self.total, "done": self.done, "ok": self.ok,
                "failed": self.done - self.ok, "finished": self.finished,
                "error": self.error}


class BulkJobs:
    """The plans and jobs of one console (kept on `app.state`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.plans: dict[str, Plan] = {}
        self.jobs: dict[str, Job] = {}

    def add_plan(self, plan: Plan) -> Plan:
        now = self.clock()
        for key in [k for k, p in self.plans.items() if now - p.created > PLAN_TTL]:
            del self.plans[key]
        while len(self.plans) >= MAX_PLANS:
            del self.plans[min(self.plans, key=lambda k: self.plans[k].created)]
        plan.created = now
        self.plans[plan.id] = plan
        return plan

    def take_plan(self, plan_id: str, user: str) -> Plan:
        """The plan *user* confirms (it can be confirmed once)."""
        plan = self.plans.get(plan_id)
        if plan is None or plan.user != user or self.clock() - plan.created > PLAN_TTL:
            raise NotFound("This dry run has expired or was already confirmed: run the "
                           "dry run again.")
        del self.plans[plan_id]
        return plan

    def job(self, job_id: str, user: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.user != user:
            raise NotFound("No such bulk action.")
        return job

    def start(self, plan: Plan, service: QuarantineService, caller: Caller) -> Job:
        finished = [k for k, j in self.jobs.items() if j.finished]
        while len(self.jobs) >= MAX_JOBS and finished:
            del self.jobs[finished.pop(0)]
        if len(self.jobs) >= MAX_JOBS:
            raise Invalid(f"{MAX_JOBS} bulk actions are running: wait for one to finish")
        job = Job(secrets.token_urlsafe(12), plan.user, plan.action, len(plan.mids))
        self.jobs[job.id] = job
        job.task = asyncio.ensure_future(_run(job, plan, service, caller))
        return job


def new_plan_id() -> str:
    return secrets.token_urlsafe(16)


async def _run(job: Job, plan: Plan, service: QuarantineService, caller: Caller) -> None:
    try:
        if plan.action in ("release", "delete"):
            for part in service.act_slices(caller, plan.action, plan.mids, plan.quarantine):
                job.add(part)
                await asyncio.sleep(0)
        else:
            for i, mid in enumerate(plan.mids):
                if plan.action == "delay":
                    result = service.delay(caller, mid, plan.delay or "", plan.quarantine)
                elif plan.action == "move":
                    result = service.move(caller, mid, plan.quarantine or "", plan.target or "")
                else:
                    result = service.copy(caller, mid, plan.address or "")
                job.add([result])
                if (i + 1) % SLICE == 0:
                    await asyncio.sleep(0)
    except Exception as exc:  # shown on the job page; the manager goes on
        job.error = str(exc) or type(exc).__name__
    finally:
        job.finished = True
