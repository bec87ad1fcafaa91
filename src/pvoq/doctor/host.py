"""The machine under the appliance: disk space, clamd, the quarantine store's schema, the
cluster's PVO interface rule (`cluster check`), read without changing anything."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from pvoq.config.cluster import check_pvo_interface, machine_views, parse_layout
from pvoq.config.errors import ConfigError
from pvoq.config.xmltree import parse_xml
from pvoq.doctor.context import Context
from pvoq.doctor.result import CheckResult, fail, ok, warn
from pvoq.quarantine.migrate import head
from pvoq.scan.antivirus import ClamdEngine, ScannerUnavailable

GIB = 1024 ** 3


@dataclass(frozen=True)
class DiskLimits:
    """Free space below which a location is WARN, and FAIL: a share and a size, either."""

    warn_share: float = 0.10
    warn_bytes: int = 2 * GIB
    fail_share: float = 0.02
    fail_bytes: int = 256 * 1024 ** 2


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def store_url(ctx: Context) -> str:
    cfg = ctx.config
    return (cfg.quarantine_store.database_url or cfg.database_url
            or f"sqlite:///{Path(cfg.data_dir) / 'quarantine.db'}")


def _locations(ctx: Context) -> list[tuple[str, Path]]:
    data = Path(ctx.config.data_dir)
    found = [("spool", data / "spool"), ("logs", data / "logs")]
    if ctx.role == "manager":
        url = make_url(store_url(ctx))
        if url.get_backend_name() == "sqlite" and url.database:
            found.append(("store", Path(url.database).parent))
        found.append(("quarantine bodies", data / "quarantine"))
    return found


def disk_results(ctx: Context, *, limits: DiskLimits | None = None,
                 statvfs: Callable[[Path], os.statvfs_result] | None = None
                 ) -> list[CheckResult]:
    limits = limits or DiskLimits()
    stat = statvfs or (lambda p: os.statvfs(p))
    results = []
    for label, path in _locations(ctx):
        name = f"disk {label}"
        where = _existing(path)
        try:
            st = stat(where)
        except OSError as exc:
            results.append(fail(name, f"{path}: cannot read its file system ({exc.strerror})",
                                f"check that {where} is mounted and readable"))
            continue
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        share = free / total if total else 0.0
        seen = f"{path}: {free / GIB:.1f} GiB free of {total / GIB:.1f} GiB ({share:.0%})"
        fix = (f"free space on the file system of {where} (or move <data_dir> to a larger "
               "one); a full disk makes the appliance refuse mail with 4xx")
        if share < limits.fail_share or free < limits.fail_bytes:
            results.append(fail(name, seen, fix))
        elif share < limits.warn_share or free < limits.warn_bytes:
            results.append(warn(name, seen, fix))
        else:
            results.append(ok(name, seen))
    return results


async def check_disk(ctx: Context) -> list[CheckResult]:
    return disk_results(ctx)


async def check_clamd(ctx: Context) -> list[CheckResult]:
    av = ctx.config.scan.antivirus
    if ctx.role != "gateway":
        return []
    if not ctx.config.scan.antivirus_enabled or not av.uses_clamd:
        return [ok("clamd", "not configured (anti-virus uses the built-in EICAR check)")]
    engine = ClamdEngine(socket_path=av.clamd_socket, host=av.clamd_host, port=av.clamd_port,
                         timeout_s=min(ctx.timeout_s, av.timeout_seconds))
    try:
        answer = await asyncio.to_thread(engine.version)
    except ScannerUnavailable as exc:
        where = (f"<clamd_socket>{av.clamd_socket}" if av.clamd_socket
                 else f"<clamd_host>{av.clamd_host}:{av.clamd_port}")
        return [fail("clamd", str(exc),
                     f"start clamd (e.g. systemctl start clamav-daemon) or correct {where} in "
                     f"{ctx.path}; until then mail waits in the spool (temporary failures)")]
    if not answer.strip():
        return [fail("clamd", f"{engine.describe()} gave no answer to VERSION", "restart clamd")]
    return [ok("clamd", f"{engine.describe()} answers: {answer.strip()[:80]}")]


def store_revision(url: str) -> str | None:
    """The Alembic revision of the store at *url*, read-only; None when it has none.
    `FileNotFoundError` for a SQLite file that does not exist."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if not Path(database).exists():
            raise FileNotFoundError(database)
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        try:
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.OperationalError:
                return None
            return str(row[0]) if row else None
        finally:
            conn.close()
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            try:
                row = db.execute(text("SELECT version_num FROM alembic_version")).first()
            except SQLAlchemyError:
                return None
            return str(row[0]) if row else None
    finally:
        engine.dispose()


def _revisions() -> list[str]:
    versions = Path(__file__).parent.parent / "quarantine" / "migrations" / "versions"
    return sorted(p.name.split("_", 1)[0] for p in versions.glob("[0-9]*_*.py"))


async def check_schema(ctx: Context) -> list[CheckResult]:
    if ctx.role != "manager":
        return []
    url = store_url(ctx)
    shown = make_url(url).render_as_string(hide_password=True)
    fix = (f"start the manager, which migrates the store at start ({ctx.start_command}), "
           f"or: python -m pvoq.quarantine.migrate '{shown}' upgrade")
    try:
        revision = await asyncio.to_thread(store_revision, url)
    except FileNotFoundError:
        return [warn("store schema", f"{shown}: no store yet", fix)]
    except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
        return [fail("store schema", f"{shown}: cannot read the store ({exc})",
                     "check <quarantine_store><database_url> and that the database runs")]
    current = head()
    if revision == current:
        return [ok("store schema", f"{shown}: at revision {revision} (current)")]
    if revision is not None and revision not in _revisions():
        return [fail("store schema", f"{shown}: at revision {revision}, unknown to this pvoq "
                                     f"(head {current})", "upgrade pvoq to the release that "
                                                          "wrote it")]
    return [fail("store schema", f"{shown}: at revision {revision or 'none'}, behind "
                                 f"{current}", fix)]


def cluster_results(path: Path) -> list[CheckResult]:
    """The PVO interface rule on every machine of a clustered configuration file."""
    try:
        layout = parse_layout(parse_xml(path.read_bytes(), path=str(path)))
    except OSError as exc:
        return [fail("cluster interface", f"{path}: cannot read it ({exc.strerror})",
                     f"make {path} readable")]
    except ConfigError as exc:
        return [fail("cluster interface", str(exc.located(path=str(path))),
                     f"correct the file, then pvoq config check -c {path}")]
    if layout is None:
        return [ok("cluster interface", "not clustered")]
    views = machine_views(layout)
    problems = check_pvo_interface(views)
    if problems:
        missing = {v.pvo_interface for v in views if v.pvo_interface not in
                   (None, *v.interfaces)}
        return [fail("cluster interface", f"cluster {layout.name}: " + "; ".join(problems),
                     f"add the interface {', '.join(sorted(str(m) for m in missing))} on "
                     "each machine named (Network > IP Interfaces: <interfaces> in its "
                     f"<machine><settings>), or name one they all have; then pvoq cluster "
                     f"check -c {path}")]
    return [ok("cluster interface", f"cluster {layout.name}: the PVO interface exists on "
                                    f"all {len(views)} machines")]


async def check_cluster(ctx: Context) -> list[CheckResult]:
    return cluster_results(Path(ctx.config.path))
