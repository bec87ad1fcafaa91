"""Big message: one 50 MB message public SMTP → quarantine → release → downstream, RSS sampled.

One message (a short text part and an attachment of `--size` random bytes,
base64-encoded: 50 MB by default, so about 68 MB on the wire) whose subject
the gateway's content filter catches ("confidential") goes:

    this script ──SMTP──▶ gateway (scanning on: filters, anti-virus: the
    built-in check, or a private clamd with `--clamd`) ──CPQ──▶ manager (held
    in Policy) ──release──▶ gateway ──SMTP──▶ Postfix's smtp-sink, which dumps
    what it receives to a file (not measured).

Every listener's `max_message_size` is raised to take it. While it travels,
a thread samples VmRSS of every process of the deployment (the gateway, each
of its scanner processes, the manager and any child of it) every ~20 ms; at
the end VmHWM (the kernel's peak, reset with `clear_refs` before sending
where the kernel allows) is read too and the larger of the two peaks is
taken. The idle RSS of each process is measured before sending. Per process
it prints idle, peak, growth (peak − idle) and growth ÷ the message's size on
the wire, and checks that what smtp-sink received ends with the message's
body byte for byte (the part after the headers; pvoq adds a Received line
and keeps the rest).

Bounded: `--deadline` seconds per phase (on timeout it says how far it got
and exits 2). Loopback only; every process it starts it stops by PID; its
temporary directory is removed.

Last line: `RESULT bigmsg_rss <worst growth ÷ size> x ratio=<3 ÷ that>`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from _mailbench import (
    CAUGHT_SUBJECT,
    BenchFailure,
    SmtpSink,
    bench_root,
    bench_run,
    bulk_release,
    children,
    deployment,
    held_gauge,
    print_load,
    status_kib,
    use_clamd,
    wait_until,
)

from pvoq.testing.localdeploy import Deployment

TARGET = 3.0
SAMPLE_S = 0.02
MIB = 1024 * 1024


@dataclass
class Watched:
    name: str
    pid: int
    idle_kib: int = 0
    peak_kib: int = 0       # the largest VmRSS sampled
    phases: dict[str, int] = field(default_factory=dict)  # the largest VmRSS in each phase
    hwm_kib: int = 0        # VmHWM at the end
    hwm_reset: bool = False

    @property
    def growth_kib(self) -> int:
        return max(self.peak_kib, self.hwm_kib) - self.idle_kib


def processes(dep: Deployment) -> list[Watched]:
    watched = []
    for role in ("gateway", "manager"):
        pid = dep.procs[role].pid
        watched.append(Watched(role, pid))
        for n, child in enumerate(children(pid), 1):
            watched.append(Watched(f"{role} child {n} (scanner)" if role == "gateway"
                                   else f"{role} child {n}", child))
    return watched


class Sampler(threading.Thread):
    """VmRSS of each watched process every ~20 ms until stopped."""

    def __init__(self, watched: list[Watched]) -> None:
        super().__init__(daemon=True)
        self.watched = watched
        self.halt = threading.Event()
        self.phase = "send"
        self.timeline: list[tuple[float, str, str, int]] | None = None

    def run(self) -> None:
        while not self.halt.is_set():
            phase = self.phase
            for w in self.watched:
                rss = status_kib(w.pid, "VmRSS")
                if rss is not None:
                    w.peak_kib = max(w.peak_kib, rss)
                    w.phases[phase] = max(w.phases.get(phase, 0), rss)
                    if self.timeline is not None:
                        self.timeline.append((time.monotonic(), phase, w.name, rss))
            self.halt.wait(SAMPLE_S)


def measure_idle(watched: list[Watched], seconds: float = 1.0) -> None:
    samples: dict[int, list[int]] = {w.pid: [] for w in watched}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for w in watched:
            rss = status_kib(w.pid, "VmRSS")
            if rss is not None:
                samples[w.pid].append(rss)
        time.sleep(SAMPLE_S)
    for w in watched:
        w.idle_kib = max(samples[w.pid], default=0)
        w.peak_kib = w.idle_kib
        try:  # "5": reset the peak RSS (VmHWM) to the current RSS (Linux 4.0+)
            Path(f"/proc/{w.pid}/clear_refs").write_text("5")
            w.hwm_reset = True
        except OSError:
            w.hwm_reset = False


def big_message(size: int, to: str) -> tuple[bytes, bytes]:
    """(the message as sent, CRLF line ends; its body: everything after the headers)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "big@sender.example", to, CAUGHT_SUBJECT
    msg["Message-ID"] = f"<{time.time_ns()}.big@sender.example>"
    msg.set_content("The report is attached.\n")
    msg.add_attachment(os.urandom(size), maintype="application", subtype="octet-stream",
                       filename="report.bin")
    wire = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    return wire, wire[wire.index(b"\r\n\r\n") + 4:]


def raise_size_limits(dep: Deployment, limit: int) -> None:
    """Every listener of the gateway and the manager takes *limit* bytes."""
    for path in (dep.gateway_config, dep.manager_config):
        text = path.read_text()
        for kind in ("public", "private"):
            text = text.replace(f"<type>{kind}</type>\n",
                                f"<type>{kind}</type>\n"
                                f"    <max_message_size>{limit}</max_message_size>\n")
        path.write_text(text)


def send(dep: Deployment, wire: bytes, to: str, timeout_s: float) -> float:
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", dep.ports["gateway_smtp"], timeout=timeout_s) as smtp:
        smtp.sendmail("big@sender.example", [to], wire)
    return time.perf_counter() - start


def check_arrived(sink: SmtpSink, body: bytes) -> None:
    """smtp-sink's dump holds one transaction whose message ends with *body*."""
    assert sink.dump is not None
    data = sink.dump.read_bytes()
    # smtp-sink -D writes LF line ends; compare with the body's lines the same way.
    wanted = body.replace(b"\r\n", b"\n")
    if data.rstrip(b"\n").endswith(wanted.rstrip(b"\n")):
        return
    raise BenchFailure(f"the delivered message differs from what was sent: dump of "
                       f"{len(data)} bytes, body of {len(wanted)} bytes (LF)")


def report(watched: list[Watched], size: int) -> float:
    print(f"{'process':<28} {'pid':>7} {'idle MiB':>9} {'peak MiB':>9} {'growth MiB':>11} "
          f"{'growth/size':>12}")
    worst = 0.0
    for w in watched:
        ratio = w.growth_kib * 1024 / size
        worst = max(worst, ratio)
        hwm = "" if w.hwm_reset else "  (VmHWM not reset: sampled peak only)"
        peak = max(w.peak_kib, w.hwm_kib if w.hwm_reset else 0)
        print(f"{w.name:<28} {w.pid:>7} {w.idle_kib / 1024:9.1f} {peak / 1024:9.1f} "
              f"{w.growth_kib / 1024:11.1f} {ratio:11.2f}x{hwm}")
    phases = list(dict.fromkeys(p for w in watched for p in w.phases))
    print("peak growth ÷ size by phase (sampled VmRSS): "
          + "; ".join(f"{w.name}: " + ", ".join(
              f"{p} {(w.phases.get(p, w.idle_kib) - w.idle_kib) * 1024 / size:.2f}x"
              for p in phases) for w in watched))
    return worst


def _quietly(stop: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):
        stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50 * 1000 * 1000,
                        help="attachment bytes before base64 (default 50 MB)")
    parser.add_argument("--clamd", action="store_true", help="scan with a private clamd")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds per phase")
    parser.add_argument("--timeline", help="write every RSS sample (s, phase, process, MiB) "
                        "to this file")
    args = parser.parse_args()

    root = bench_root("pvoq-bench-bigmsg-")
    dep = deployment(root / "deploy", 1)
    sink = SmtpSink(root / "sink", dep.ports["sink"], dump=True)
    to = "bob@example.com"
    with bench_run(root, dep, sink), contextlib.ExitStack() as stack:
        wire, body = big_message(args.size, to)
        size = len(wire)
        raise_size_limits(dep, size * 2 + MIB)
        if args.clamd:
            from pvoq.testing.clamd import ClamdProcess
            clamd = ClamdProcess(root / "clamd", stream_max_bytes=size * 2 + MIB)
            clamd.start()
            stack.callback(_quietly, clamd.stop)
            use_clamd(dep, clamd.socket_path)
        sink.start()
        dep.start_manager()
        dep.start_gateway()
        time.sleep(1.0)  # the scanner processes start after the gateway's recovery
        watched = processes(dep)
        print_load()
        print(f"message: {size} bytes on the wire ({size / MIB:.1f} MiB): a text part and "
              f"{args.size} bytes base64-encoded; anti-virus: "
              f"{'clamd' if args.clamd else 'built-in check'}")
        measure_idle(watched)
        sampler = Sampler(watched)
        if args.timeline:
            sampler.timeline = []
        sampler.start()
        start = time.perf_counter()
        sent = send(dep, wire, to, args.deadline)
        print(f"sent to the gateway in {sent:.1f} s")
        del wire
        sampler.phase = "scan+cpq"
        wait_until("the manager to hold the message", lambda: held_gauge(dep), 1,
                   deadline_s=args.deadline, interval_s=0.1)
        held = time.perf_counter()
        print(f"held on the manager after {held - start:.1f} s")
        sampler.phase = "release"
        bulk_release(dep, 1, timeout_s=args.deadline)
        done = wait_until("smtp-sink to take the released message", lambda: sink.count, 1,
                          deadline_s=args.deadline, interval_s=0.05)
        print(f"released and delivered after {done - held:.1f} s "
              f"({done - start:.1f} s in all)")
        time.sleep(0.5)
        sampler.halt.set()
        sampler.join(5)
        for w in watched:
            w.hwm_kib = status_kib(w.pid, "VmHWM") or 0
        print_load()
        if sampler.timeline is not None:
            with open(args.timeline, "w") as out:
                for at, phase, name, rss in sampler.timeline:
                    out.write(f"{at - start:.3f}\t{phase}\t{name}\t{rss / 1024:.1f}\n")
        sink.stop()
        check_arrived(sink, body)
        print("delivered: the message's body arrived byte for byte")
        worst = report(watched, size)
        print(f"RESULT bigmsg_rss {worst:.2f} x ratio={TARGET / worst if worst else 0:.2f}")


if __name__ == "__main__":
    main()
