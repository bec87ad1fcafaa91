"""What the end-to-end benchmarks share: Postfix's test tools, a private Postfix relay,
a gateway and manager on loopback, and the bounded waits between them.

- `run_source`: Postfix's `smtp-source`, each message to its own numbered
  recipient (`-N`: `1bob@example.com`, `2bob@example.com`, ...) so that where
  each one arrived can be counted.
- `SmtpSink`: Postfix's `smtp-sink` on a loopback port, with its running
  message counter read as it goes and, optionally, every transaction appended
  to a dump file, from which `deliveries` reads (sender, recipient) pairs.
- `PostfixRelay`: a private Postfix instance (its own configuration, queue and
  data directories in a temporary directory, loopback ports only) that relays
  everything to one host:port. It never touches the system's instance or
  /etc/postfix; it stops only the master it started.
- `deployment`: a fresh `Deployment` (gateway and manager processes) whose
  public listener takes every session from 127.0.0.1; `quarantine_phase`
  sends it mail its content filter catches and waits until the manager's
  search (`held_count`) finds it all; `held_recipients` reads the held
  messages back through the same search.
- `wait_until`: a bounded wait that raises `PhaseTimeout` with what it got.

Every process started here is stopped by its PID; loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pvoq.admin.protocol import call
from pvoq.config.loader import load_config
from pvoq.config.model import DEFAULT_MAX_CONN_PER_IP
from pvoq.testing.localdeploy import Deployment, DeploymentError, free_port
from pvoq.testing.processes import stop_process

RECIPIENT = "bob@example.com"
POSTFIX_USER = "postfix"

def load_parser(doc: str, *, messages: int, deadline_s: float) -> argparse.ArgumentParser:
    """The options every load bench takes: --messages, --sessions, --size, --deadline."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--messages", type=int, default=messages)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--size", type=int, default=10_240)
    parser.add_argument("--deadline", type=float, default=deadline_s, help="seconds per phase")
    return parser



class BenchFailure(Exception):
    """The run cannot give a figure: a tool failed, or mail was lost or duplicated."""


class PhaseTimeout(BenchFailure):
    """A phase did not finish within its deadline; the text says how far it got."""


def bench_root(prefix: str) -> Path:
    """A temporary directory the Postfix tools, running as their own user, can traverse."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def tool(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise SystemExit(f"{name} not found: apt-get install postfix (see .ci/run)")


def wait_until(what: str, progress: Callable[[], int], target: int, *, deadline_s: float,
               interval_s: float = 0.05) -> float:
    """Poll *progress* until it reaches *target*; return the monotonic time it did."""
    end = time.monotonic() + deadline_s
    got = progress()
    while got < target:
        if time.monotonic() > end:
            raise PhaseTimeout(f"timed out after {deadline_s:.0f}s waiting for {what}: "
                               f"{got} of {target}")
        time.sleep(interval_s)
        got = progress()
    return time.perf_counter()


def run_source(port: int, messages: int, sessions: int, size: int, *, sender: str,
               subject: str | None = None, deadline_s: float) -> float:
    """smtp-source to 127.0.0.1:*port*, a new connection per message; seconds it took."""
    args = [tool("smtp-source"), "-N", "-s", str(sessions), "-m", str(messages),
            "-l", str(size), "-f", sender, "-t", RECIPIENT]
    if subject:
        args += ["-S", subject]
    start = time.perf_counter()
    try:
        subprocess.run([*args, f"127.0.0.1:{port}"], check=True, timeout=deadline_s,
                       stdout=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PhaseTimeout(f"smtp-source did not finish {messages} messages to port {port} "
                           f"within {deadline_s:.0f}s") from None
    except subprocess.CalledProcessError as exc:
        raise BenchFailure(f"smtp-source to port {port} failed with exit {exc.returncode}"
                           ) from None
    return time.perf_counter() - start


def recipient_numbers(pairs: list[tuple[str, str]], sender: str) -> Counter[int]:
    """How many times each numbered recipient (`<n>bob@example.com`) got mail from *sender*."""
    pattern = re.compile(r"(\d+)" + re.escape(RECIPIENT))
    seen: Counter[int] = Counter()
    for mail_from, rcpt in pairs:
        match = pattern.fullmatch(rcpt)
        if mail_from.lower() == sender.lower() and match:
            seen[int(match.group(1))] += 1
    return seen


def exactly_once(seen: Counter[int], messages: int) -> str | None:
    """None if recipients 1..*messages* each appear once; else what is wrong."""
    missing = [n for n in range(1, messages + 1) if seen[n] == 0]
    twice = [n for n, k in seen.items() if k > 1]
    extra = [n for n in seen if not 1 <= n <= messages]
    if not (missing or twice or extra):
        return None
    return (f"{len(missing)} missing (first {missing[:5]}), {len(twice)} more than once "
            f"(first {sorted(twice)[:5]}), {len(extra)} unexpected")


class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1:*port*, its counter followed as it runs."""

    def __init__(self, root: Path, port: int, *, dump: bool) -> None:
        self.root = root
        self.port = port
        self.dump = root / "dump" if dump else None
        self.proc: subprocess.Popen[bytes] | None = None
        self._count = 0
        self._reader: threading.Thread | None = None

    def start(self) -> SmtpSink:
        self.root.mkdir(parents=True, exist_ok=True)
        args = [tool("smtp-sink"), "-c"]
        if os.geteuid() == 0:  # smtp-sink refuses to run as root without a user
            args += ["-u", POSTFIX_USER]
            os.chown(self.root, pwd.getpwnam(POSTFIX_USER).pw_uid, -1)
        if self.dump is not None:
            args += ["-D", str(self.dump)]
        self.proc = subprocess.Popen([*args, f"127.0.0.1:{self.port}", "256"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._follow, daemon=True)
        self._reader.start()
        _wait_port(self.port, "smtp-sink", self.proc)
        return self

    def _follow(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        while chunk := os.read(fd, 65536):
            pending += chunk
            *done, pending = re.split(rb"[\r\n]", pending)
            for record in reversed(done):
                match = re.search(rb"mesg=(\d+)", record)
                if match:
                    self._count = int(match.group(1))
                    break

    @property
    def count(self) -> int:
        """Messages the sink has taken ("." answered) since it started."""
        return self._count

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_process(proc)
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def deliveries(self) -> list[tuple[str, str]]:
        """(MAIL FROM, RCPT TO) of every dumped transaction, one pair per recipient."""
        if self.dump is None or not self.dump.exists():
            return []
        pairs: list[tuple[str, str]] = []
        sender = ""
        with self.dump.open("rb") as f:
            for line in f:
                if line.startswith(b"X-Mail-Args: "):
                    sender = _address(line[13:])
                elif line.startswith(b"X-Rcpt-Args: "):
                    pairs.append((sender, _address(line[13:])))
        return pairs


def _address(args: bytes) -> str:
    """`FROM:<a@b> SIZE=10` or `<a@b>` → `a@b`."""
    match = re.search(rb"<([^>]*)>", args)
    return (match.group(1) if match else args.strip()).decode("ascii", "replace")


def _wait_port(port: int, what: str, proc: subprocess.Popen[bytes] | None,
               timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise BenchFailure(f"{what} exited with code {proc.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise PhaseTimeout(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f}s")





# -- a private Postfix relay -------------------------------------------------------------

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = {user}
setgid_group = postdrop
myhostname = relay.postfix.bench
mydomain = postfix.bench
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost = [127.0.0.1]:{sink_port}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
smtpd_banner = $myhostname ESMTP
"""


class PostfixRelay:
    """A private Postfix in *root*: accepts on 127.0.0.1:*port*, relays to *sink_port*."""

    def __init__(self, root: Path, port: int, sink_port: int) -> None:
        self.root = root
        self.port = port
        self.sink_port = sink_port
        self.conf = root / "conf"
        self.started = False

    def start(self) -> PostfixRelay:
        if os.geteuid() != 0:
            raise BenchFailure("a private Postfix instance is started as root (its master "
                               "binds its port and hands its daemons to the postfix user)")
        tool("postfix")
        self.conf.mkdir(parents=True)
        for sub in ("queue", "data"):
            (self.root / sub).mkdir()
        user = pwd.getpwnam(POSTFIX_USER)
        os.chown(self.root / "data", user.pw_uid, grp.getgrnam(POSTFIX_USER).gr_gid)
        self.root.chmod(0o755)
        (self.conf / "main.cf").write_text(MAIN_CF.format(root=self.root, user=POSTFIX_USER,
                                                          sink_port=self.sink_port))
        (self.conf / "master.cf").write_text(self._master_cf())
        self._postfix("start")
        self.started = True
        _wait_port(self.port, "the Postfix relay", None)
        return self

    def _master_cf(self) -> str:
        """The distribution's master.cf, nothing chrooted, smtpd on our loopback port."""
        lines = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            fields = line.split()
            if line[:1] in ("#", " ", "\t") or len(fields) < 8:
                lines.append(line)
                continue
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{self.port}"
            fields[4] = "n"
            lines.append("  ".join(fields))
        return "\n".join(lines) + "\n"

    def _postfix(self, action: str) -> None:
        subprocess.run([tool("postfix"), "-c", str(self.conf), action], check=True,
                       timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def master_pid(self) -> int | None:
        pid_file = self.root / "queue" / "pid" / "master.pid"
        try:
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """`postfix stop` for this configuration only; then its master by PID if still there."""
        if not self.started:
            return
        self.started = False
        pid = self.master_pid()
        with contextlib.suppress(subprocess.SubprocessError):
            self._postfix("stop")
        end = time.monotonic() + 15
        while pid is not None and _alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def log_tail(self, lines: int = 20) -> str:
        path = self.root / "maillog"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) \
            if path.exists() else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- a gateway and a manager ---------------------------------------------------------------

def deployment(root: Path, sessions: int) -> Deployment:
    """A configured (not started) `Deployment` whose public listener takes *sessions*
    concurrent sessions from 127.0.0.1 (a generated HAT allows fewer per address)."""
    dep = Deployment(root)
    dep.init()
    text = dep.gateway_config.read_text()
    limit = f"max_conn_per_ip = {DEFAULT_MAX_CONN_PER_IP}}}"
    assert limit in text, "the generated HAT's per-address limit"
    dep.gateway_config.write_text(text.replace(limit, f"max_conn_per_ip = {max(sessions, 1)}}}",
                                               1))
    return dep


def use_clamd(dep: Deployment, socket_path: Path) -> None:
    """Point the gateway's anti-virus at a clamd socket instead of the built-in check."""
    text = dep.gateway_config.read_text()
    assert "<antivirus>\n" in text
    dep.gateway_config.write_text(text.replace(
        "<antivirus>\n", f"<antivirus>\n    <clamd_socket>{socket_path}</clamd_socket>\n", 1))


CAUGHT_SUBJECT = "confidential report"  # the generated configuration's content filter takes it
HELD = {"quarantines": ["Policy"], "subject": ["contains", "confidential"]}


def quarantine_phase(dep: Deployment, messages: int, sessions: int, size: int, *, sender: str,
                     deadline_s: float) -> tuple[float, float]:
    """smtp-source sends *messages* the gateway's content filter catches; the clock stops
    when the manager's search finds them all held. (msgs/s, msgs/s of SMTP intake alone).

    While waiting it asks the manager's `status` (its maintained held-message counter,
    committed with each message's row): a search per poll would count every held row
    and write an audit record each time, slowing the manager it measures. Once the
    counter reaches *messages*, the search must find them all before the clock stops.
    """
    start = time.perf_counter()
    intake = run_source(dep.ports["gateway_smtp"], messages, sessions, size, sender=sender,
                        subject=CAUGHT_SUBJECT, deadline_s=deadline_s)
    wait_until("the manager to hold every message", lambda: held_gauge(dep), messages,
               deadline_s=deadline_s, interval_s=0.1)
    end = wait_until("the manager's search to find every message",
                     lambda: held_count(dep, HELD), messages, deadline_s=deadline_s,
                     interval_s=0.1)
    return messages / (end - start), messages / intake


def held_gauge(dep: Deployment) -> int:
    """The manager's count of held messages (`status`, from its maintained counters)."""
    return int(dep.admin(dep.manager_config, "status")["data"]["messages_in_quarantine"])


def report_progress(what: str, progress: Callable[[], int]) -> None:
    """After a failure: print how far *progress* got, if it can still be asked."""
    try:
        print(f"{what}: {progress()}", flush=True)
    except Exception as exc:  # the failure may be that it cannot be asked
        print(f"{what}: unknown ({exc})", flush=True)


def print_load() -> None:
    """The load average beside the figures: other work on the cores changes them."""
    print("load average (1, 5, 15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
          flush=True)


def bulk_release(dep: Deployment, count: int, *, timeout_s: float) -> dict[str, Any]:
    """Release every held message in one bulk action (`quarantine.bulk`, as the CLI asks);
    its answer. `BenchFailure` unless it found exactly *count* messages."""
    response = call(load_config(dep.manager_config).admin_socket, "quarantine.bulk",
                    {"action": "release", "query": HELD}, timeout_s=timeout_s)
    if not response.get("ok"):
        raise BenchFailure(f"quarantine.bulk release: {response.get('error')}")
    data: dict[str, Any] = response["data"]
    if data["count"] != count:
        raise BenchFailure(f"the bulk release found {data['count']} of {count} messages")
    return data


@contextlib.contextmanager
def bench_run(root: Path, dep: Deployment, sink: SmtpSink | None = None) -> Iterator[None]:
    """Run a bench's phases: on a failure, say how far mail got and exit 2; in any case
    stop the deployment and the sink (if any), and remove *root*."""
    try:
        yield
    except (BenchFailure, DeploymentError) as exc:
        print(f"FAILED: {exc}", flush=True)
        if "manager" in dep.procs:
            report_progress("held now", lambda: held_gauge(dep))
        if sink is not None:
            report_progress("taken by smtp-sink", lambda: sink.count)
        sys.exit(2)
    finally:
        dep.stop_all()
        if sink is not None:
            sink.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- processes' memory (/proc) ----------------------------------------------------------------

def status_kib(pid: int, field: str) -> int | None:
    """A kB field of /proc/PID/status (VmRSS, VmHWM); None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field.encode() + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def children(pid: int) -> list[int]:
    """The PIDs of *pid*'s child processes, in order."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


def tree(pid: int) -> list[int]:
    """*pid* and all its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children(current)
    return found


def held_count(dep: Deployment, query: dict[str, Any]) -> int:
    """The total the manager's quarantine search finds for *query* (admin socket, as the
    CLI asks)."""
    data = dep.admin(dep.manager_config, "quarantine.search",
                     {"query": {**query, "limit": 20}})["data"]
    return int(data["total"])


def held_recipients(dep: Deployment, query: dict[str, Any], sender: str) -> Counter[int]:
    """Each numbered recipient's count among the held messages *query* finds, page by page."""
    pairs: list[tuple[str, str]] = []
    offset = 0
    while True:
        data = dep.admin(dep.manager_config, "quarantine.search",
                         {"query": {**query, "limit": 250, "offset": offset,
                                    "order_dir": "asc"}})["data"]
        rows = data["messages"]
        for row in rows:
            for rcpt in _row_recipients(row):
                pairs.append((str(row.get("sender", "")), rcpt))
        offset += len(rows)
        if not rows or offset >= int(data["total"]):
            return recipient_numbers(pairs, sender)


def _row_recipients(row: dict[str, Any]) -> list[str]:
    value = row.get("recipients")
    if isinstance(value, str):
        return [value]
    result = []
    for r in value or ():
        result.append(str(r.get("address", "")) if isinstance(r, dict) else str(r))
    return result


__all__ = ["CAUGHT_SUBJECT", "HELD", "BenchFailure", "DeploymentError", "PhaseTimeout",
           "PostfixRelay", "SmtpSink", "bench_root", "bench_run", "bulk_release", "children",
           "deployment", "exactly_once", "free_port", "held_count", "held_gauge",
           "held_recipients", "print_load", "quarantine_phase", "recipient_numbers",
           "report_progress", "run_source", "status_kib", "tool", "tree", "use_clamd",
           "wait_until"]
