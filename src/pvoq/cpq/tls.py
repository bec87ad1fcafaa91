"""TLS contexts for CPQ, built once per process and reused.

Building an `SSLContext` costs tens of milliseconds; one per connection would
dominate CPQ throughput, so each role builds its server and client context at
start (and again on reload). Both sides verify the peer against the CPQ CA;
the name check is ours (the certificate's CN is the appliance's hostname),
not the address-based one of the web PKI.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pvoq.config.certs import load_problem
from pvoq.config.errors import ConfigError
from pvoq.config.model import CpqCertificate


def _apply_ciphers(ctx: ssl.SSLContext, ciphers: str, *, field: str) -> None:
    """Apply an OpenSSL cipher list.

    TLS 1.3 has no anonymous suites and its suites are not governed by this
    list: a list that admits anonymous (aNULL) suites therefore limits the
    context to TLS 1.2, where those suites exist, so that the list means what
    the operator wrote (and the seed's "no certificate from server" failure
    can happen, and be refused, as it does on AsyncOS).
    """
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ConfigError(f"no usable cipher in {ciphers!r} ({reason})", field=field) from None
    if admits_anonymous(ctx):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2


def admits_anonymous(ctx: ssl.SSLContext) -> bool:
    """True when the context's cipher list contains an anonymous (aNULL) suite."""
    return any(c.get("auth") == "auth-null" for c in ctx.get_ciphers())


def _load_chain(ctx: ssl.SSLContext, cert: CpqCertificate) -> None:
    try:
        ctx.load_cert_chain(str(cert.certificate), str(cert.private_key))
        ctx.load_verify_locations(cafile=str(cert.ca_certificate))
    except (ssl.SSLError, OSError) as exc:
        raise load_problem(cert, exc) from None   # which file, and why


def server_context(cert: CpqCertificate, *, ciphers: str) -> ssl.SSLContext:
    """The context of a `cpq_listener`: presents our certificate, asks for the peer's.

    `CERT_OPTIONAL` rather than `CERT_REQUIRED`: a peer without a certificate
    completes the handshake and is then refused with a readable SMTP reply
    (`554`) instead of a bare TLS alert; a certificate from another CA still
    fails the handshake.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_OPTIONAL
    _load_chain(ctx, cert)
    _apply_ciphers(ctx, ciphers, field="ssl_config.inbound_ciphers")
    return ctx


def public_server_context(certificate: Path, private_key: Path, *,
                          ciphers: str) -> ssl.SSLContext:
    """STARTTLS on a public listener: our certificate, no client certificate asked for."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.load_cert_chain(str(certificate), str(private_key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load the listener certificate: {exc}",
                          field="listener.certificate") from None
    _apply_ciphers(ctx, ciphers, field="listener.ssl_ciphers")
    return ctx


def client_context(cert: CpqCertificate, *, ciphers: str) -> ssl.SSLContext:
    """The context of CPQ delivery: presents our certificate, requires the server's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_chain(ctx, cert)
    _apply_ciphers(ctx, ciphers, field="ssl_config.outbound_ciphers")
    return ctx
