"""A private clamd: its own configuration, socket and signature database.

Owns starting and stopping one `clamd` process (Debian `clamav-daemon`) in a
directory of its own, with a signature file written here (the EICAR test
string as an `.ndb` body signature, and its MD5 as an `.hdb` entry), so that
tests, the benchmark and a local deployment get a real scanner without any
signature download. It never touches the system clamd or its database, and
stops only the process it started, by PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from pvoq.errors import PvoqError
from pvoq.scan.antivirus import EICAR, ClamdEngine
from pvoq.testing.processes import stop_process

SIGNATURE_NAME = "Eicar-Test-Signature"
_EICAR_BODY = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"


class ClamdUnavailable(PvoqError, RuntimeError):
    """clamd is not installed, or did not come up in time."""


def clamd_binary() -> str:
    found = shutil.which("clamd") or next(
        (p for p in ("/usr/sbin/clamd", "/usr/local/sbin/clamd") if os.access(p, os.X_OK)), None)
    if not found:
        raise ClamdUnavailable("clamd is not installed (Debian package clamav-daemon)")
    return found


def write_signatures(directory: Path, *, eicar: bool = True) -> None:
    """The EICAR test file as an MD5 (`.hdb`) and a body (`.ndb`) signature.

    With *eicar* false, only a signature that matches nothing: clamd refuses an
    empty database, and a test can then play "the signature arrived later".
    """
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("pvoq-test.*"):
        old.unlink()
    if not eicar:
        (directory / "pvoq-test.ndb").write_text(
            f"Pvoq.Placeholder:0:*:{b'pvoq placeholder signature 7f3a'.hex()}\n")
        return
    (directory / "pvoq-test.hdb").write_text(
        f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{SIGNATURE_NAME}\n")
    (directory / "pvoq-test.ndb").write_text(f"{SIGNATURE_NAME}:0:*:{_EICAR_BODY.hex()}\n")


class ClamdProcess:
    """One clamd listening on `<root>/clamd.sock` (or a TCP port on 127.0.0.1)."""

    def __init__(self, root: Path, *, tcp_port: int | None = None,
                 stream_max_bytes: int | None = None, eicar: bool = True) -> None:
        self.root = Path(root)
        self.eicar = eicar
        self.tcp_port = tcp_port
        self.stream_max_bytes = stream_max_bytes
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.root / "clamd.sock"

    @property
    def config_path(self) -> Path:
        return self.root / "clamd.conf"

    def engine(self, *, timeout_s: float = 10.0) -> ClamdEngine:
        if self.tcp_port:
            return ClamdEngine(host="127.0.0.1", port=self.tcp_port, timeout_s=timeout_s)
        return ClamdEngine(socket_path=str(self.socket_path), timeout_s=timeout_s)

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_signatures(self.root / "db", eicar=self.eicar)
        lines = [
            f"DatabaseDirectory {self.root / 'db'}",
            f"TemporaryDirectory {self.root}",
            f"LogFile {self.root / 'clamd.log'}",
            "Foreground yes",
            "ConcurrentDatabaseReload no",
            "SelfCheck 0",
            "AlertEncrypted yes",  # encrypted archives and documents: ENCRYPTED, not clean
        ]
        if self.tcp_port:
            lines += ["TCPAddr 127.0.0.1", f"TCPSocket {self.tcp_port}"]
        else:
            lines.append(f"LocalSocket {self.socket_path}")
        if self.stream_max_bytes:
            lines.append(f"StreamMaxLength {self.stream_max_bytes}")
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, *, timeout_s: float = 20.0) -> None:
        """Start clamd and return once it answers PING."""
        binary = clamd_binary()
        self.write_config()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        out = open(self.root / "clamd.out", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen([binary, "-c", str(self.config_path)], stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        engine = self.engine(timeout_s=2.0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.root / "clamd.out").read_text(errors="replace")[-1500:]
                raise ClamdUnavailable(f"clamd exited with code {self.proc.returncode}:\n{log}")
            if engine.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise ClamdUnavailable(f"clamd did not answer PING within {timeout_s:g}s")

    def stop(self, *, timeout_s: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, timeout_s)

    def __enter__(self) -> ClamdProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
