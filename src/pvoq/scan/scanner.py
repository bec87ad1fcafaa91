"""The scanner process: the worker side of `scan.workers`, as small as the scans allow.

`python -m pvoq.scan.scanner` reads the `ScanSettings` from stdin, builds its
pipelines, answers its PID, then serves batches on stdin and stdout until
stdin ends (a frame of a 4-byte length and a pickle, then the bodies raw:
`batch_frames`). Each scan gives back the
`ScanResult` (or the `ScanError`) the pipeline would have given in-process.

A gateway runs one such process per spare CPU, all its life: this module
imports the filter language, the MIME walk and what verdicts need, and
nothing of SMTP, CPQ, the event loop, the stores or the console
(`tests/unit/scan/test_scanner_imports.py` holds it to that).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import sys
from typing import Any, BinaryIO

from pvoq.config.model import ScanSettings
from pvoq.scan.message import Envelope
from pvoq.scan.outbreak import RulesError
from pvoq.scan.pipeline import Pipeline
from pvoq.scan.verdict import ScanError, ScanResult

FRAME = struct.Struct(">I")

# body, envelope, policy, resume_after, stop_after, skip
Job = tuple[bytes, Envelope | None, str | None, str | None, str | None, tuple[str, ...]]


class Scanner:
    """A worker's pipelines: the default one and one per named policy, built on demand."""

    def __init__(self, settings: ScanSettings) -> None:
        self.settings = settings
        self.generation = 0
        self.base = Pipeline(settings, alarm_timeouts=True)
        self.pipelines: dict[str, Pipeline] = {}

    def pipeline(self, policy: str | None) -> Pipeline:
        if policy is None:
            return self.base
        found = self.pipelines.get(policy)
        if found is None:
            match = next((p for p in self.settings.policies if p.name == policy), None)
            found = self.pipelines[policy] = (self.base if match is None
                                              else self.base.for_policy(match))
        return found

    def scan_many(self, jobs: list[Job], generation: int) -> list[ScanResult | Exception]:
        """Scan a batch; each message gives its result or its error."""
        if generation != self.generation:
            self.generation = generation
            # The policies' pipelines share these rules. A RulesError: the gateway
            # refused this file too, and the rules in force stay.
            with contextlib.suppress(RulesError):
                self.base.reload_rules()
        results: list[ScanResult | Exception] = []
        for body, envelope, policy, resume_after, stop_after, skip in jobs:
            try:
                results.append(self.pipeline(policy).run(
                    body, envelope=envelope, resume_after=resume_after,
                    stop_after=stop_after, skip=skip))
            except ScanError as exc:
                results.append(exc)
            except Exception as exc:  # a bug: the gateway logs it as an application fault
                results.append(RuntimeError(f"{type(exc).__name__}: {exc}"))
        return results


def read_frame(stream: BinaryIO) -> Any:
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        raise EOFError
    data = stream.read(FRAME.unpack(head)[0])
    return pickle.loads(data)  # our own parent, over our own pipe


def read_batch(stream: BinaryIO) -> tuple[list[Job], int]:
    """A batch: a frame of its jobs, each with its body's length where the body goes,
    then the bodies, raw, one after another (`batch_frames`)."""
    heads, generation = read_frame(stream)
    jobs: list[Job] = []
    for size, *rest in heads:
        body = stream.read(size) if size else b""
        if len(body) < size:
            raise EOFError
        jobs.append((body, *rest))
    return jobs, generation


def batch_frames(jobs: list[Job], generation: int) -> list[bytes]:
    """What goes down the pipe for a batch: a frame of the jobs with each body's length
    in its place, then the bodies themselves, never pickled (a pickle of a batch would
    be another copy of every body in it)."""
    heads = [(len(body), *rest) for body, *rest in jobs]
    data = pickle.dumps((heads, generation), protocol=pickle.HIGHEST_PROTOCOL)
    return [FRAME.pack(len(data)) + data, *(body for body, *_ in jobs if body)]


def write_frame(stream: BinaryIO, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(FRAME.pack(len(data)) + data)
    stream.flush()


def worker_main() -> None:
    """`python -m pvoq.scan.scanner`: serve batches on stdin/stdout until stdin ends."""
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe to the gateway
    try:
        scanner = Scanner(read_frame(requests))
        write_frame(replies, os.getpid())
        while True:
            jobs, generation = read_batch(requests)
            results = scanner.scan_many(jobs, generation)
            del jobs  # the bodies go before the next batch is read, not after
            write_frame(replies, results)
            del results
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return  # the gateway is gone (or stopping): so is this worker


if __name__ == "__main__":
    worker_main()
