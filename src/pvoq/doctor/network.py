"""The CPQ path, probed from where the seed's note says to test it.

On a gateway: each manager it delivers to (`the.cpq.host`). On the manager:
each gateway's `cpq_listener` (`the.cpq.release.host`), at the address the
SSH lookup found, else the one of its `<gateways>` record. Each probe binds
the address of the interface named under `<pvo_quarantines>`, as delivery
does. Three lines per peer: reachable (TCP, 220 banner, STARTTLS), the peer's
certificate (chain to the deployment CA, CN, role) and the TLS negotiated
(the live half of the cipher check).
"""

from __future__ import annotations

from dataclasses import dataclass

from pvoq.admin.protocol import AdminUnavailable
from pvoq.config.errors import ConfigError
from pvoq.cpq import tls
from pvoq.doctor.context import Context, Refused, Unknown
from pvoq.doctor.probe import Probe, certificate_summary, presented_certificate, probe_cpq
from pvoq.doctor.result import CheckResult, fail, ok, warn


@dataclass(frozen=True)
class Peer:
    role: str            # the peer's role: what its certificate must say
    name: str | None     # the hostname its certificate must name (None: not configured)
    host: str
    port: int
    how: str             # where the address comes from


async def peers(ctx: Context) -> list[Peer]:
    cfg = ctx.config
    if cfg.role == "gateway":
        return [Peer("manager", m.hostname, m.address, m.port,
                     "<pvo_quarantines> manager") for m in cfg.pvo.all_managers]
    looked_up: dict[str, str] = {}
    try:
        rows = (await ctx.admin("gateway.list")).get("gateways", [])
        looked_up = {str(r["name"]).lower(): str(r["looked_up"]) for r in rows
                     if r.get("looked_up")}
    except (AdminUnavailable, Unknown, Refused):
        pass
    found = []
    for g in cfg.pvo.gateways:
        where = looked_up.get(g.hostname.lower())
        if where:
            host, _, port = where.rpartition(":")
            found.append(Peer("gateway", g.hostname, host, int(port), "the SSH lookup"))
        else:
            found.append(Peer("gateway", g.hostname, g.address, g.cpq_port,
                              "<pvo_quarantines><gateways>"))
    return found


def _source_ip(ctx: Context) -> str | None:
    interface = ctx.config.interface(ctx.config.pvo.interface_name)
    return interface.ip if interface else None


def _label(peer: Peer) -> str:
    return f"{peer.role} {peer.name or peer.host}"


def _reach_fix(ctx: Context, peer: Peer, probe: Probe) -> str:
    other = "manager" if peer.role == "manager" else "gateway"
    if probe.step == "connect" and "refused" in probe.error.lower():
        return (f"start the {other} ({f'pvoq {other} run -c FILE'} on {peer.name or peer.host})"
                f" or resume its cpq_listener (pvoq cli -c FILE resumelisteners cpq_listener "
                f"there); check that {peer.host}:{peer.port} ({peer.how}) is its cpq_listener")
    if probe.step == "connect":
        return (f"open TCP port {peer.port} from {probe.source_ip or 'this host'} to "
                f"{peer.host} (firewall, routing), or correct {peer.how}")
    if probe.step == "banner":
        return (f"on the {other}, add {probe.source_ip or 'this address'} to the RELAYLIST "
                "sender group of its cpq_listener's HAT, then pvoq cli -c FILE reload there")
    return (f"make {peer.host}:{peer.port} the {other}'s cpq_listener (STARTTLS is "
            f"mandatory on CPQ); check {peer.how}")


def refused_our_certificate(probe: Probe) -> bool:
    """Did the peer end the session because of our certificate? TLS 1.3 tells the client
    after its handshake (the next read fails); TLS 1.2 during it, with an alert."""
    error = probe.error.upper()
    return probe.step == "ehlo after STARTTLS" or (
        probe.step == "handshake" and "ALERT" in error
        and any(w in error for w in ("UNKNOWN_CA", "CERTIFICATE")))


async def check_peer(ctx: Context, peer: Peer) -> list[CheckResult]:
    cfg = ctx.config
    label = _label(peer)
    reach, cert_name, tls_name = (f"cpq reach {label}", f"cpq certificate {label}",
                                  f"tls negotiated {label}")
    try:
        context = tls.client_context(cfg.cpq_certificate, ciphers=cfg.ssl.outbound_ciphers)
    except ConfigError as exc:
        return [fail(reach, f"cannot probe: this appliance's CPQ client TLS cannot be built "
                            f"({exc})", f"fix the file it names, then pvoq config check -c "
                                        f"{ctx.path}")]
    source = _source_ip(ctx)
    probe = await probe_cpq(peer.host, peer.port, source_ip=source, context=context,
                            timeout_s=ctx.timeout_s, local_hostname=cfg.hostname)
    where = f"{probe.where} ({peer.how})"
    if probe.step in ("connect", "banner", "ehlo", "starttls"):
        return [fail(reach, f"{where}: {probe.step} failed: {probe.error}",
                     _reach_fix(ctx, peer, probe))]
    results = [ok(reach, f"{where}: banner {probe.banner!r}, STARTTLS offered")]
    if refused_our_certificate(probe):
        results.append(fail(f"cpq client certificate {label}",
                            f"{where}: the {peer.role} refused the session ({probe.error}): it "
                            f"does not accept this {ctx.role}'s CPQ certificate",
                            f"see the certificate line: this {ctx.role}'s certificate must be "
                            f"issued by the deployment CA the {peer.role} trusts, for "
                            f"{cfg.hostname} (role {ctx.role})"))
        return results
    if probe.step == "handshake":
        results.append(fail(tls_name, f"{where}: {probe.error}",
                            f"make the cipher lists meet: ssl_config outbound_ciphers here "
                            f"({cfg.ssl.outbound_ciphers!r}) and inbound_ciphers on the "
                            f"{peer.role}; then pvoq cli -c FILE reload on each"))
        return results
    if probe.anonymous:
        results.append(fail(tls_name, f"{where}: anonymous cipher {probe.cipher} negotiated "
                                      "(TLS failed: verify error: no certificate from server)",
                            f"append ':-aNULL' to <outbound_ciphers> here (now "
                            f"{cfg.ssl.outbound_ciphers!r}) and to <inbound_ciphers> on the "
                            f"{peer.role}; then {ctx.cli('reload')}"))
        return results
    if probe.step == "certificate":
        der = await presented_certificate(peer.host, peer.port, source_ip=source,
                                          context=context, timeout_s=ctx.timeout_s)
        shown = certificate_summary(der) if der else "no certificate"
        results.append(fail(cert_name, f"{where}: {probe.error}; it presents {shown}",
                            f"issue the {peer.role}'s CPQ certificate from this deployment's "
                            f"CA ({cfg.cpq_certificate.ca_certificate}): pvoq init ... --ca-dir "
                            "CA_DIR --force on it, or copy the right cpq.pem/cpq.key; then "
                            "restart it"))
        return results
    if probe.step:
        results.append(fail(tls_name, f"{where}: {probe.step} failed: {probe.error}",
                            f"see the {peer.role}'s mail_logs for this connection"))
        return results
    results.append(ok(tls_name, f"{where}: {probe.protocol} cipher {probe.cipher} "
                                "(not anonymous)"))
    problems = []
    if peer.name and (probe.peer_name or "").lower() != peer.name.lower():
        problems.append(f"it names {probe.peer_name!r}, not {peer.name!r}")
    if probe.peer_role != peer.role:
        problems.append(f"its role is {probe.peer_role!r}, not {peer.role!r}")
    if problems:
        fix = (f"issue the certificate of {peer.host}:{peer.port} for {peer.name!r} "
               f"(pvoq init --hostname {peer.name} --role {peer.role} ... --force there)")
        if peer.role == "manager" and peer.name:
            fix += (f", or correct the manager hostname in <pvo_quarantines> here if "
                    f"{probe.peer_name!r} is right")
        results.append(fail(cert_name, f"{where}: the CPQ certificate chains to the deployment "
                                       "CA but " + "; ".join(problems), fix))
    else:
        results.append(ok(cert_name, f"{where}: {probe.peer_name} ({probe.peer_role}), "
                                     "issued by the deployment CA"))
    if not probe.xcpq:
        results.append(warn(f"cpq protocol {label}", f"{where}: no XCPQ after STARTTLS",
                            f"{peer.host}:{peer.port} is not a pvoq cpq_listener; correct "
                            f"{peer.how}"))
    return results


async def check_peers(ctx: Context) -> list[CheckResult]:
    found = await peers(ctx)
    if not ctx.config.pvo.enabled:
        return [ok("cpq reach", "centralized PVO quarantines are disabled here: nothing "
                                "to probe")]
    if not found:
        other = "manager" if ctx.role == "gateway" else "gateway"
        return [warn("cpq reach", f"no {other} is configured",
                     f"add it under <pvo_quarantines> in {ctx.path}")]
    results: list[CheckResult] = []
    for peer in found:
        results += await check_peer(ctx, peer)
    return results
