"""Scanning in worker processes: the same results as in-process, rules reloads, dead workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scanhelpers import message, with_attachment

from pvoq.config.model import AntivirusSettings, MailPolicy, OutbreakSettings, ScanSettings
from pvoq.scan import scanner as scanner_module
from pvoq.scan import workers as workers_module
from pvoq.scan.antivirus import EICAR
from pvoq.scan.message import Envelope
from pvoq.scan.pipeline import ANTIVIRUS, OUTBREAK_FILTERS, Pipeline
from pvoq.scan.verdict import PASS, QUARANTINE, ScanError
from pvoq.scan.workers import ScanWorkers

ENVELOPE = Envelope("alice@example.org", ("bob@example.com",), "192.0.2.7", "UNKNOWNLIST")
PARCEL = message("Your parcel", "Track it: http://parcel.example/track?id=1")


def rules(path: Path, urls: list[str], version: str) -> Path:
    path.write_text(json.dumps({"version": version, "rules": [
        {"id": "OF-URL", "threat_level": 4, "urls": urls}]}))
    return path


def settings(tmp_path: Path, **changes: object) -> ScanSettings:
    base = ScanSettings(outbreak=OutbreakSettings(
        rules_file=rules(tmp_path / "rules.json", ["parcel.example/track"], "1")))
    return ScanSettings(**{**base.__dict__, **changes})


def run(workers: ScanWorkers, *bodies: bytes, **options: object) -> list[object]:
    async def main() -> list[object]:
        try:
            return await asyncio.gather(*(workers.run(b, envelope=ENVELOPE, **options)
                                          for b in bodies), return_exceptions=True)
        finally:
            await workers.aclose()
    return asyncio.run(main())


class TestResults:
    def test_a_worker_decides_as_the_pipeline_does_in_process(self, tmp_path: Path) -> None:
        """Clean, viral and outbreak messages get the verdicts and traces of the pipeline."""
        cfg = settings(tmp_path)
        bodies = [message(), with_attachment(EICAR, filename="a.com"), PARCEL]
        here = Pipeline(cfg)
        expected = [here.run(b, envelope=ENVELOPE) for b in bodies]
        here.close()
        got = run(ScanWorkers(cfg, processes=2), *bodies)
        assert got == expected
        assert [r.action for r in got] == [PASS, QUARANTINE, QUARANTINE]  # type: ignore[attr-defined]

    def test_large_messages_go_down_the_pipe_in_pieces_and_keep_their_order(
            self, tmp_path: Path) -> None:
        """Messages larger than the pipe (written a pipe's worth at a time) between small
        ones, on one worker: each gets its own verdict, in order."""
        cfg = settings(tmp_path)
        big = workers_module.PIPE_BYTES * 3
        bodies = [with_attachment(os.urandom(big) + EICAR, filename="a.bin"), message(),
                  with_attachment(os.urandom(big)), PARCEL, message()]
        here = Pipeline(cfg)
        expected = [here.run(b, envelope=ENVELOPE) for b in bodies]
        here.close()
        got = run(ScanWorkers(cfg, processes=1), *bodies)
        assert got == expected
        assert [r.action for r in got] == [  # type: ignore[attr-defined]
            QUARANTINE, PASS, PASS, QUARANTINE, PASS]

    def test_a_policy_is_scanned_with_its_own_settings(self, tmp_path: Path) -> None:
        """A named per-recipient policy without anti-virus lets EICAR through; the default not."""
        cfg = settings(tmp_path, policies=(
            MailPolicy("NoAV", (re.compile("@lab.example$"),), antivirus_enabled=False),))
        body = with_attachment(EICAR, filename="a.com")
        (default,) = run(ScanWorkers(cfg, processes=1), body)
        (lab,) = run(ScanWorkers(cfg, processes=1), body, policy="NoAV")
        assert default.action == QUARANTINE  # type: ignore[attr-defined]
        assert lab.action == PASS  # type: ignore[attr-defined]

    def test_a_stage_that_cannot_decide_is_a_scan_error_with_its_stage(
            self, tmp_path: Path) -> None:
        """A broken outbreak rules file fails closed in the worker as it would in-process."""
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        cfg = settings(tmp_path, outbreak=OutbreakSettings(rules_file=bad))
        (outcome,) = run(ScanWorkers(cfg, processes=1), message())
        assert isinstance(outcome, ScanError)
        assert outcome.stage == OUTBREAK_FILTERS and "no valid outbreak rules" in str(outcome)

    def test_resume_and_skip_reach_the_worker(self, tmp_path: Path) -> None:
        """A release resumed after the anti-virus stage is not scanned for viruses again."""
        body = with_attachment(EICAR, filename="a.com")
        (resumed,) = run(ScanWorkers(settings(tmp_path), processes=1), body,
                         resume_after=ANTIVIRUS)
        assert resumed.action == PASS  # type: ignore[attr-defined]


class TestRulesReload:
    def test_workers_take_the_new_rules_once_told(self, tmp_path: Path) -> None:
        """After rules_changed, the next scan in every worker uses the rules file as it is now."""
        cfg = settings(tmp_path)
        workers = ScanWorkers(cfg, processes=2)

        async def main() -> tuple[list[str], list[str]]:
            await workers.start()
            before = await asyncio.gather(*(workers.run(PARCEL) for _ in range(4)))
            rules(tmp_path / "rules.json", ["elsewhere.example/"], "2")
            workers.rules_changed()
            after = await asyncio.gather(*(workers.run(PARCEL) for _ in range(4)))
            await workers.aclose()
            return [r.action for r in before], [r.action for r in after]

        before, after = asyncio.run(main())
        assert before == [QUARANTINE] * 4 and after == [PASS] * 4


class TestDeadWorkers:
    def test_scans_lost_with_a_killed_worker_fail_and_a_new_worker_takes_over(
            self, tmp_path: Path) -> None:
        """A scan in a worker that dies is a ScanError (retried later); the next one is served."""
        hung = socket.socket()
        hung.bind(("127.0.0.1", 0))
        hung.listen(4)  # accepts connections, never answers: a scanner stuck on a message
        cfg = settings(tmp_path, antivirus=AntivirusSettings(
            clamd_host="127.0.0.1", clamd_port=hung.getsockname()[1], timeout_seconds=60),
            policies=(MailPolicy("NoAV", (re.compile("@lab.example$"),),
                                 antivirus_enabled=False),))
        workers = ScanWorkers(cfg, processes=1)

        async def main() -> tuple[object, object, list[int], list[int]]:
            first = await workers.start()
            stuck = asyncio.ensure_future(workers.run(message()))
            await asyncio.sleep(1.0)  # the worker is waiting on the hung scanner
            os.kill(first[0], signal.SIGKILL)
            lost = (await asyncio.gather(stuck, return_exceptions=True))[0]
            again = await asyncio.wait_for(workers.run(message(), policy="NoAV"), 30)
            now = await workers.start()
            await workers.aclose()
            return lost, again, first, now

        try:
            lost, again, first, now = asyncio.run(main())
        finally:
            hung.close()
        assert isinstance(lost, ScanError) and "scanner process died" in str(lost)
        assert again.action == PASS  # type: ignore[attr-defined]
        assert now != first and not _alive(first[0])

    def test_a_worker_that_stops_answering_is_replaced(self, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        """A worker stuck past every stage timeout (here: stopped) is killed; its scan is a
        ScanError and a fresh worker serves the next one."""
        monkeypatch.setattr(workers_module, "OVERDUE_MARGIN_S", 1.0)
        cfg = settings(tmp_path, stage_timeout_seconds=0.1,
                       antivirus=AntivirusSettings(timeout_seconds=0.1))
        workers = ScanWorkers(cfg, processes=1)

        async def main() -> tuple[object, object, int]:
            (pid,) = await workers.start()
            os.kill(pid, signal.SIGSTOP)
            lost = (await asyncio.gather(asyncio.wait_for(workers.run(message()), 20),
                                         return_exceptions=True))[0]
            again = await asyncio.wait_for(workers.run(message()), 30)
            await workers.aclose()
            return lost, again, pid

        lost, again, pid = asyncio.run(main())
        assert isinstance(lost, ScanError) and "no answer within 1.4s" in str(lost)
        assert again.action == PASS  # type: ignore[attr-defined]
        assert not _alive(pid)

    def test_workers_exit_when_their_gateway_is_killed(self, tmp_path: Path) -> None:
        """A gateway killed with SIGKILL leaves no scanner behind."""
        script = (
            "import asyncio\n"
            "from pvoq.config.model import ScanSettings\n"
            "from pvoq.scan.workers import ScanWorkers\n"
            "async def main():\n"
            "    pids = await ScanWorkers(ScanSettings(), processes=2).start()\n"
            "    print(' '.join(map(str, pids)), flush=True)\n"
            "    await asyncio.sleep(60)\n"
            "asyncio.run(main())\n")
        parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert parent.stdout is not None
            pids = [int(p) for p in parent.stdout.readline().split()]
            assert len(pids) == 2 and all(_alive(p) for p in pids)
        finally:
            parent.kill()
            parent.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class TestBatchFrames:
    def test_bodies_travel_raw_after_a_small_frame_and_come_back_whole(self) -> None:
        """A batch is a pickle of its jobs without their bodies, then each body as it is:
        read back, every job has its own body, empty bodies included."""
        import io

        big = b"x" * 300_000 + b"\r\n"
        jobs: list[scanner_module.Job] = [
            (big, ENVELOPE, None, None, None, ()),
            (b"", None, "policy-a", "antivirus", None, ("outbreak_filters",)),
            (PARCEL, ENVELOPE, None, None, "antivirus", ()),
        ]
        frames = scanner_module.batch_frames(jobs, 7)
        assert len(frames[0]) < 2000 and frames[1:] == [big, PARCEL]
        stream = io.BytesIO(b"".join(frames))
        assert scanner_module.read_batch(stream) == (jobs, 7)

    def test_a_pipe_that_ends_inside_a_body_is_the_end_of_the_gateway(self) -> None:
        import io

        frames = scanner_module.batch_frames([(b"abcdef", None, None, None, None, ())], 1)
        with pytest.raises(EOFError):
            scanner_module.read_batch(io.BytesIO(frames[0] + b"abc"))

    def test_the_gateway_keeps_no_body_once_its_scan_is_answered(self, tmp_path: Path) -> None:
        """While the workers' answers are awaited, nothing of a scanned batch (its bodies
        may be tens of MB) stays referenced on the gateway's side."""
        import sys

        body = with_attachment(os.urandom(5000))
        alone = sys.getrefcount(body)

        async def main() -> int:
            workers = ScanWorkers(settings(tmp_path), processes=1)
            try:
                await workers.run(body, envelope=ENVELOPE)
                await asyncio.sleep(0.05)
                return sys.getrefcount(body)
            finally:
                await workers.aclose()

        assert asyncio.run(main()) == alone
