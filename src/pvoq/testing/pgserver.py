"""A throwaway PostgreSQL server for tests and benchmarks.

`initdb` + `pg_ctl` in a temporary directory, listening on a free 127.0.0.1
port with trust authentication, stopped and removed by `stop()`. PostgreSQL
refuses to run as root: when we are root the server runs as the `postgres`
user (or `nobody`) through `runuser`. Missing binaries are an error
(`PostgresUnavailable`), never a reason to skip.

This module never touches a system cluster or any state outside its
temporary directory, or the directory it is given (*root*, which a benchmark
keeps: `keep=True` stops the server there without removing its data, and a
later server on the same *root* starts on it without `initdb`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from pvoq.errors import PvoqError
from pvoq.testing.ports import free_port


class PostgresUnavailable(PvoqError):
    """The PostgreSQL server binaries are not installed or the server did not start."""


def find_bindir() -> Path:
    """The directory holding `initdb` and `pg_ctl` (newest Debian version first)."""
    env = os.environ.get("PVOQ_PG_BINDIR")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
                         reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                              "install Debian's postgresql package")


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return user
    raise PostgresUnavailable("running as root and no unprivileged user to run PostgreSQL")


class PostgresServer:
    """One private PostgreSQL server; `url(db)` gives a SQLAlchemy URL to a database."""

    def __init__(self, *, fsync: bool = False, root: Path | None = None, keep: bool = False,
                 settings: dict[str, str] | None = None, max_connections: int = 100,
                 start_timeout_s: int = 60) -> None:
        self.bindir = find_bindir()
        self.user = _run_as()
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="pvoq-pg-"))
        else:
            self.root = root.resolve()
            self.root.mkdir(parents=True, exist_ok=True)
        self.datadir = self.root / "data"
        self.port = free_port()
        self.fsync = fsync
        self.keep = keep
        self.settings = settings if settings is not None else {"shared_buffers": "256MB"}
        self.max_connections = max_connections
        self.start_timeout_s = start_timeout_s
        self._started = False

    def _cmd(self, *argv: str) -> list[str]:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return [*prefix, *argv]

    def start(self) -> PostgresServer:
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)
        try:
            if not (self.datadir / "PG_VERSION").exists():   # a kept cluster is reused
                subprocess.run(self._cmd(str(self.bindir / "initdb"), "-D", str(self.datadir),
                                         "-A", "trust", "-U", "pvoq", "-E", "UTF8",
                                         "--locale=C.UTF-8" if self._has_c_utf8()
                                         else "--locale=C"),
                               check=True, capture_output=True, timeout=120)
            opts = (f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                    f"-c unix_socket_directories={self.root} "
                    f"-c max_connections={self.max_connections} "
                    f"-c fsync={'on' if self.fsync else 'off'} "
                    f"-c synchronous_commit={'on' if self.fsync else 'off'} "
                    "-c full_page_writes=off "
                    + " ".join(f"-c {k}={v}" for k, v in self.settings.items()))
            subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir),
                                     "-o", opts, "-l", str(self.root / "server.log"),
                                     "-w", "-t", str(self.start_timeout_s), "start"),
                           check=True, capture_output=True, timeout=self.start_timeout_s + 30)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log = self.root / "server.log"
            detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            stderr = getattr(exc, "stderr", b"") or b""
            self.stop()
            raise PostgresUnavailable(f"PostgreSQL did not start: {exc}: "
                                      f"{stderr.decode(errors='replace')} {detail}") from exc
        self._started = True
        return self

    @staticmethod
    def _has_c_utf8() -> bool:
        try:
            out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return any(x.lower() in ("c.utf8", "c.utf-8") for x in out.stdout.split())

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://pvoq@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database *name* (with pg_trgm) and return its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=pvoq dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=pvoq dbname={name}",
                             autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and remove its directory; with `keep`, stop it cleanly (a
        fast shutdown, so that the next start needs no recovery) and leave the data."""
        if self._started:
            mode, timeout = ("fast", self.start_timeout_s) if self.keep else ("immediate", 60)
            subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir),
                                     "-m", mode, "-w", "-t", str(timeout), "stop"),
                           capture_output=True, timeout=timeout + 30)
            self._started = False
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
