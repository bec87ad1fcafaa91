"""This appliance's own CPQ certificate, cipher lists and file modes, read from disk.

The certificate: present, issued by the deployment CA, CN = hostname, role,
expiry (WARN 30 days ahead, FAIL once expired). The cipher lists (static half
of the seed's TLS failure): a list that admits an anonymous (aNULL) suite is a
FAIL whose fix is the seed's `:-aNULL`. The modes are those `fsutil` gives:
directories without group write or access by others, secrets 0600.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from pvoq.cpq.tls import admits_anonymous
from pvoq.doctor.context import Context
from pvoq.doctor.result import CheckResult, fail, ok, warn
from pvoq.fsutil import UMASK
from pvoq.quarantine.audit import key_path
from pvoq.remote.keys import (
    AUTHORIZED_KEYS_FILE,
    CLIENT_KEY_FILE,
    HOST_KEY_FILE,
    PINS_FILE,
    TOKENS_FILE,
)

EXPIRY_WARN_DAYS = 30
SECRET_MASK = 0o077


def _name(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def certificate_results(ctx: Context, *, now: dt.datetime | None = None) -> list[CheckResult]:
    cfg = ctx.config
    files = cfg.cpq_certificate
    name = "certificate"
    reissue = (f"issue it again from the deployment CA: pvoq init {cfg.path.parent} --role "
               f"{cfg.role} --hostname {cfg.hostname} --ca-dir CA_DIR --force (keeps the CA; "
               "then restart)")
    try:
        cert = x509.load_pem_x509_certificate(Path(files.certificate).read_bytes())
    except (OSError, ValueError) as exc:
        return [fail(name, f"the CPQ certificate {files.certificate} cannot be read ({exc})",
                     reissue)]
    try:
        ca = x509.load_pem_x509_certificate(Path(files.ca_certificate).read_bytes())
    except (OSError, ValueError) as exc:
        return [fail(name, f"the deployment CA {files.ca_certificate} cannot be read ({exc})",
                     "copy the deployment CA's cpq-ca.pem there (<cpq_certificate>"
                     "<ca_certificate>)")]
    if not Path(files.private_key).exists():
        return [fail(name, f"the CPQ private key {files.private_key} is missing", reissue)]
    cn, role = _name(cert, NameOID.COMMON_NAME), _name(cert, NameOID.ORGANIZATIONAL_UNIT_NAME)
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    issuer_cn = str(issuer[0].value) if issuer else "?"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return [fail(name, f"{files.certificate} (CN {cn!r}) is issued by {issuer_cn!r}, not "
                           f"by the deployment CA {files.ca_certificate}", reissue)]
    problems = []
    if (cn or "").lower() != cfg.hostname.lower():
        problems.append(f"its CN is {cn!r}, not the hostname {cfg.hostname!r}")
    if role != cfg.role:
        problems.append(f"its role is {role!r}, not {str(cfg.role)!r}")
    if problems:
        return [fail(name, f"{files.certificate}: " + "; ".join(problems), reissue)]
    now = now or dt.datetime.now(dt.UTC)
    until = cert.not_valid_after_utc
    left = until - now
    seen = f"{files.certificate}: CN {cn} ({role}), issued by the deployment CA"
    if left <= dt.timedelta(0):
        return [fail(name, f"{seen}, expired on {until:%Y-%m-%d}", reissue)]
    if cert.not_valid_before_utc > now:
        return [fail(name, f"{seen}, not valid before {cert.not_valid_before_utc:%Y-%m-%d}",
                     "check this machine's clock, or " + reissue)]
    if left < dt.timedelta(days=EXPIRY_WARN_DAYS):
        return [warn(name, f"{seen}, expires on {until:%Y-%m-%d} (in {left.days} days)",
                     reissue)]
    return [ok(name, f"{seen}, valid until {until:%Y-%m-%d}")]


async def check_certificate(ctx: Context) -> list[CheckResult]:
    return certificate_results(ctx)


def anonymous(ciphers: str) -> bool | None:
    """Does *ciphers* admit an anonymous suite? (None: OpenSSL accepts none of it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError:
        return None
    return admits_anonymous(context)


def cipher_results(ctx: Context) -> list[CheckResult]:
    cfg = ctx.config
    lists = [("ssl_config outbound_ciphers", "outbound_ciphers", cfg.ssl.outbound_ciphers),
             ("ssl_config inbound_ciphers", "inbound_ciphers", cfg.ssl.inbound_ciphers)]
    cpq = cfg.cpq_listener
    if cpq is not None and cpq.ssl_ciphers:
        lists.append((f"listener {cpq.name} ssl_ciphers", "ssl_ciphers", cpq.ssl_ciphers))
    results = []
    for label, tag, value in lists:
        name = f"ciphers {label}"
        found = anonymous(value)
        if found is None:
            results.append(fail(name, f"{value!r} selects no cipher OpenSSL knows",
                                f"set <{tag}> to e.g. HIGH:MEDIUM:-aNULL in {ctx.path}, then "
                                f"{ctx.cli('reload')}"))
        elif found:
            results.append(fail(name, f"{value!r} admits anonymous (aNULL) suites: a CPQ peer "
                                      "may negotiate one and fail with \"no certificate from "
                                      "server\"",
                                f"append ':-aNULL': <{tag}>{value}:-aNULL</{tag}> in "
                                f"{ctx.path}, then {ctx.cli('reload')}"))
        else:
            results.append(ok(name, f"{value!r}: no anonymous suite"))
    return results


async def check_ciphers(ctx: Context) -> list[CheckResult]:
    return cipher_results(ctx)


def _mode(path: Path) -> int | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode)


def permission_results(ctx: Context) -> list[CheckResult]:
    cfg = ctx.config
    data = Path(cfg.data_dir)
    dirs = [data, data / "spool", data / "logs", data / "ssh"]
    secrets = [Path(cfg.cpq_certificate.private_key), data / "admin.sock"]
    ssh = data / "ssh"
    secrets += [ssh / HOST_KEY_FILE, ssh / CLIENT_KEY_FILE, ssh / AUTHORIZED_KEYS_FILE,
                ssh / TOKENS_FILE, ssh / PINS_FILE]
    if cfg.role == "manager":
        url = (cfg.quarantine_store.database_url or cfg.database_url
               or f"sqlite:///{data / 'quarantine.db'}")
        secrets.append(key_path(url, data))
    loose: list[tuple[Path, int, str]] = []
    checked = 0
    for d in dirs:
        mode = _mode(d)
        if mode is None:
            continue
        checked += 1
        limit = SECRET_MASK if d.name == "ssh" else UMASK
        if mode & limit:
            loose.append((d, mode, "chmod 700" if d.name == "ssh" else "chmod g-w,o-rwx"))
    for f in secrets:
        mode = _mode(f)
        if mode is None:
            continue
        checked += 1
        if mode & SECRET_MASK:
            loose.append((f, mode, "chmod 600"))
    if not loose:
        return [ok("permissions", f"{checked} data directories and key files: no group write, "
                                  "no access by others, secrets 0600")]
    seen = "; ".join(f"{p} is {m:04o}" for p, m, _ in loose)
    fix = " ; ".join(f"{how} {p}" for p, _, how in loose)
    return [fail("permissions", seen, fix)]


async def check_permissions(ctx: Context) -> list[CheckResult]:
    return permission_results(ctx)
