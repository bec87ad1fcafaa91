"""The doctor's checks on real configurations and files, with a fake admin socket."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pvoq.admin.protocol import AdminUnavailable
from pvoq.config.loader import load_config
from pvoq.config.model import Config
from pvoq.config.template import ApplianceSpec
from pvoq.cpq.ca import create_ca, issue_certificate
from pvoq.deploy import init_appliance
from pvoq.doctor import appliance, host, security, ssh
from pvoq.doctor.context import Context, Refused, Unknown
from pvoq.doctor.result import Status
from pvoq.doctor.runner import check_all, failed, printable, render_text


def _config(tmp_path: Path, role: str = "gateway") -> Config:
    path = init_appliance(tmp_path / role, ApplianceSpec(
        role=role, hostname=f"{role}.example.test", serial="S-1", smtp_port=2525,
        cpq_port=7026, gateways=[("gateway.example.test", "127.0.0.1", 7026)]),
        ca_dir=tmp_path / "ca")
    return load_config(path)


class FakeContext(Context):
    """A Context whose admin socket answers from *answers* (an exception is raised)."""

    def __init__(self, config: Config, answers: dict[str, Any]) -> None:
        super().__init__(config)
        self.answers = answers

    async def admin(self, command: str, args: dict[str, Any] | None = None,
                    *, cached: bool = True) -> dict[str, Any]:
        found = self.answers.get(command, Unknown(f"Unknown command: {command}"))
        if isinstance(found, Exception):
            raise found
        return dict(found)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class TestCertificate:
    def test_a_fresh_certificate_is_ok(self, tmp_path: Path) -> None:
        [r] = security.certificate_results(Context(_config(tmp_path)))
        assert r.status is Status.OK and "issued by the deployment CA" in r.observed

    def test_expiry_warns_30_days_ahead_and_fails_once_expired(self, tmp_path: Path) -> None:
        ctx = Context(_config(tmp_path))
        now = dt.datetime.now(dt.UTC)
        [soon] = security.certificate_results(ctx, now=now + dt.timedelta(days=810))
        assert soon.status is Status.WARN and "(in " in soon.observed
        [gone] = security.certificate_results(ctx, now=now + dt.timedelta(days=900))
        assert gone.status is Status.FAIL and "expired on" in gone.observed
        assert "--ca-dir" in gone.fix

    def test_another_ca_and_another_name_are_named(self, tmp_path: Path) -> None:
        cfg = _config(tmp_path)
        certs = cfg.cpq_certificate.certificate.parent
        create_ca(tmp_path / "other", name="Other CA")
        issue_certificate(tmp_path / "other", certs, hostname=cfg.hostname, role="gateway")
        [r] = security.certificate_results(Context(cfg))
        assert r.status is Status.FAIL and "issued by 'Other CA'" in r.observed
        issue_certificate(tmp_path / "ca", certs, hostname="else.example.test", role="manager")
        [r] = security.certificate_results(Context(cfg))
        assert "its CN is 'else.example.test'" in r.observed
        assert "its role is 'manager', not 'gateway'" in r.observed

    def test_a_missing_certificate_fails(self, tmp_path: Path) -> None:
        cfg = _config(tmp_path)
        cfg.cpq_certificate.certificate.unlink()
        [r] = security.certificate_results(Context(cfg))
        assert r.status is Status.FAIL and "cannot be read" in r.observed


class TestCiphers:
    def test_an_anonymous_list_fails_with_the_minus_anull_fix(self, tmp_path: Path) -> None:
        cfg = _config(tmp_path)
        text = cfg.path.read_text().replace("<outbound_ciphers>HIGH:MEDIUM:-aNULL",
                                            "<outbound_ciphers>aNULL:HIGH:@SECLEVEL=0")
        cfg.path.write_text(text)
        results = {r.name: r for r in security.cipher_results(Context(load_config(cfg.path)))}
        bad = results["ciphers ssl_config outbound_ciphers"]
        assert bad.status is Status.FAIL
        assert ("<outbound_ciphers>aNULL:HIGH:@SECLEVEL=0:-aNULL</outbound_ciphers>"
                in bad.fix)
        assert results["ciphers ssl_config inbound_ciphers"].status is Status.OK

    def test_anonymous_is_decided_by_openssl(self) -> None:
        assert security.anonymous("aNULL:HIGH:@SECLEVEL=0") is True
        assert security.anonymous("aNULL:HIGH:@SECLEVEL=0:-aNULL") is False
        assert security.anonymous("NO-SUCH-CIPHER") is None


class TestPermissions:
    def test_a_loose_key_and_directory_are_named_with_chmod(self, tmp_path: Path) -> None:
        cfg = _config(tmp_path)
        ctx = Context(cfg)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        [r] = security.permission_results(ctx)
        assert r.status is Status.OK
        cfg.cpq_certificate.private_key.chmod(0o640)
        cfg.data_dir.chmod(0o777)
        [r] = security.permission_results(ctx)
        assert r.status is Status.FAIL
        assert f"{cfg.cpq_certificate.private_key} is 0640" in r.observed
        assert f"chmod 600 {cfg.cpq_certificate.private_key}" in r.fix
        assert f"chmod g-w,o-rwx {cfg.data_dir}" in r.fix


class TestDisk:
    def _statvfs(self, free: int, total: int) -> Any:
        return lambda p: os.statvfs_result((4096, 1, total, free, free, 0, 0, 0, 0, 255))

    def test_thresholds(self, tmp_path: Path) -> None:
        ctx = Context(_config(tmp_path))
        limits = host.DiskLimits(warn_share=0.10, warn_bytes=0, fail_share=0.02, fail_bytes=0)
        for free, status in ((50, Status.OK), (5, Status.WARN), (1, Status.FAIL)):
            results = host.disk_results(ctx, limits=limits,
                                        statvfs=self._statvfs(free * 1000, 100 * 1000))
            assert {r.status for r in results} == {status}
            assert [r.name for r in results] == ["disk spool", "disk logs"]

    def test_the_manager_checks_its_store_too(self, tmp_path: Path) -> None:
        results = host.disk_results(Context(_config(tmp_path, "manager")))
        assert "disk store" in [r.name for r in results]


class TestSchema:
    def test_current_behind_and_missing(self, tmp_path: Path) -> None:
        from pvoq.quarantine.migrate import head, migrate
        from pvoq.quarantine.schema import make_engine
        cfg = _config(tmp_path, "manager")
        ctx = Context(cfg)
        [missing] = run(host.check_schema(ctx))
        assert missing.status is Status.WARN and "no store yet" in missing.observed
        db = cfg.data_dir / "quarantine.db"
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(f"sqlite:///{db}")
        migrate(engine)
        engine.dispose()
        [current] = run(host.check_schema(ctx))
        assert current.status is Status.OK and head() in current.observed
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0002'")
        [behind] = run(host.check_schema(ctx))
        assert behind.status is Status.FAIL
        assert f"at revision 0002, behind {head()}" in behind.observed
        assert "python -m pvoq.quarantine.migrate" in behind.fix
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '9999'")
        [ahead] = run(host.check_schema(ctx))
        assert ahead.status is Status.FAIL and "unknown to this pvoq" in ahead.observed


class TestClamd:
    def test_a_missing_socket_fails(self, tmp_path: Path) -> None:
        cfg = _config(tmp_path)
        cfg.path.write_text(cfg.path.read_text().replace(
            "<antivirus>\n    <enabled>true</enabled>\n",
            f"<antivirus>\n    <enabled>true</enabled>\n    <clamd_socket>{tmp_path}/none"
            "</clamd_socket>\n", 1))
        [r] = run(host.check_clamd(Context(load_config(cfg.path))))
        assert r.status is Status.FAIL and f"{tmp_path}/none" in r.observed

    def test_not_configured_is_ok(self, tmp_path: Path) -> None:
        [r] = run(host.check_clamd(Context(_config(tmp_path))))
        assert r.status is Status.OK


class TestAdminChecks:
    def test_offline_suspended_and_delivery(self, tmp_path: Path) -> None:
        cfg = _config(tmp_path)
        ctx = FakeContext(cfg, {"status": {"system_status": "Offline",
                                           "receiving_suspended": ["cpq_listener", "in"],
                                           "delivery_suspended": True}})
        listeners, delivery = run(appliance.check_listeners(ctx))
        assert listeners.status is Status.FAIL and listeners.fix == ctx.cli("resume")
        assert delivery.fix == ctx.cli("resumedel")
        ctx = FakeContext(cfg, {"status": {"system_status": "Online",
                                           "receiving_suspended": ["in"]}})
        listeners, delivery = run(appliance.check_listeners(ctx))
        assert listeners.fix == ctx.cli("resumelisteners in")
        assert delivery.status is Status.OK

    def test_the_cpq_queue(self, tmp_path: Path) -> None:
        cfg = _config(tmp_path)
        now = __import__("time").time()
        stuck = {"total": 2, "messages": [
            {"received": now - 600, "recipients": [{"attempts": 3, "last_error": "refused"}]},
            {"received": now - 30, "recipients": [{"attempts": 0, "last_error": ""}]}]}
        [r] = run(appliance.check_cpq_queue(FakeContext(cfg, {"showrecipients": stuck})))
        assert r.status is Status.FAIL and r.name == "queue the.cpq.host"
        assert r.observed.startswith("2 messages, oldest 10 min old")
        assert "last error: refused" in r.observed
        [r] = run(appliance.check_cpq_queue(FakeContext(
            cfg, {"showrecipients": Refused("No record of that host.")})))
        assert r.status is Status.OK

    def test_enable_readiness_reason(self, tmp_path: Path) -> None:
        cfg = _config(tmp_path)
        [r] = run(appliance.check_enable(FakeContext(
            cfg, {"pvo.check": Refused("Not ready: the manager at x cannot be used")})))
        assert r.status is Status.FAIL and "cannot be used" in r.observed

    def test_a_local_gateway_without_a_manager_has_nothing_to_enable(
            self, tmp_path: Path) -> None:
        import dataclasses
        cfg = _config(tmp_path)
        local = dataclasses.replace(cfg, pvo=dataclasses.replace(
            cfg.pvo, enabled=False, managers=(), manager_address=None))
        [r] = run(appliance.check_enable(FakeContext(
            local, {"pvo.check": Refused("Not ready: no manager is configured")})))
        assert r.status is Status.OK and "no manager is configured" in r.observed

    def test_a_down_appliance_fails_each_check_with_the_start_command(
            self, tmp_path: Path) -> None:
        cfg = _config(tmp_path)
        results = run(check_all(cfg, timeout_s=0.5))
        by = {r.name: r for r in results}
        assert by["appliance"].status is Status.FAIL
        assert by["appliance"].fix == f"start it: pvoq gateway run -c {cfg.path}"
        assert by["listeners"].fix == by["appliance"].fix
        assert by["queue"].fix == by["appliance"].fix
        assert failed(results)


class TestLogSubscription:
    NOW = 1_000_000.0

    def _one(self, **gateway: Any) -> Any:
        base = {"name": "gw1", "host": "10.0.0.1", "last_pull": self.NOW - 10,
                "last_line_time": self.NOW - 20, "lines": 5, "last_error": None,
                "last_error_time": None}
        [r] = appliance.logsub_results({"gateways": [{**base, **gateway}]}, now=self.NOW,
                                       cli="pvoq cli -c m.xml")
        return r

    def test_fresh_pulls_are_ok(self) -> None:
        r = self._one()
        assert r.status is Status.OK and r.name == "log subscription gw1"

    def test_failing_stale_and_never_pulled(self) -> None:
        assert self._one(last_error="connection refused",
                         last_error_time=self.NOW - 5).status is Status.FAIL
        stale = self._one(last_pull=self.NOW - 3600)
        assert stale.status is Status.FAIL and "pull intervals" in stale.observed
        assert self._one(last_pull=None).status is Status.FAIL
        assert self._one(last_error="old", last_error_time=self.NOW - 100).status is Status.OK

    def test_unknown_command_is_a_warning(self, tmp_path: Path) -> None:
        [r] = run(appliance.check_logsub(FakeContext(_config(tmp_path, "manager"), {})))
        assert r.status is Status.WARN and "log subscription not available" in r.observed

    def test_the_manager_answer_is_used(self, tmp_path: Path) -> None:
        import time
        answer = {"gateways": [{"name": "gw1", "host": "h", "last_pull": time.time(),
                                "last_line_time": None, "lines": 0, "last_error": None,
                                "last_error_time": None}]}
        [r] = run(appliance.check_logsub(FakeContext(_config(tmp_path, "manager"),
                                                     {"logsub.status": answer})))
        assert r.status is Status.OK


class TestSkew:
    def test_thresholds(self) -> None:
        r = ssh.skew_result("s", local_before=100.0, local_after=100.2, remote=100.1, who="g")
        assert r.status is Status.OK
        r = ssh.skew_result("s", local_before=100.0, local_after=100.2, remote=110.1, who="g")
        assert r.status is Status.WARN and "10.0s ahead" in r.observed
        r = ssh.skew_result("s", local_before=100.0, local_after=100.2, remote=0.0, who="g")
        assert r.status is Status.FAIL and "behind" in r.observed and "NTP" in r.fix

    def test_fault_fixes(self, tmp_path: Path) -> None:
        ctx = Context(_config(tmp_path, "manager"))
        assert "--replace" in ssh.fault_fix(ctx, "g", "h", 22, "host key mismatch (pinned a, "
                                                              "offered b)")
        assert "ssh authorize" in ssh.fault_fix(ctx, "g", "h", 22, "authentication failed")
        assert "restart of the manager" in ssh.fault_fix(ctx, "g", "h", 22, "internal")


class TestRendering:
    def test_hostile_text_is_escaped(self) -> None:
        assert printable("250 ok\x1b[31m\r\n") == "250 ok\\x1b[31m\\x0d\\x0a"

    def test_one_line_per_check_and_totals(self) -> None:
        from pvoq.doctor.result import fail, ok
        text = render_text([ok("a", "fine"), fail("b", "bad\nthing", "do x")], title="t")
        assert text.splitlines() == ["t", "OK    a: fine", "FAIL  b: bad\\x0athing -- fix: do x",
                                     "1 OK, 0 WARN, 1 FAIL"]


class TestCluster:
    def test_a_machine_lacking_the_interface(self, tmp_path: Path) -> None:
        cfg = _config(tmp_path)
        text = cfg.path.read_text()
        start = text.index("  <interfaces>")
        end = text.index("</interfaces>") + len("</interfaces>")
        cfg.path.write_text(text[:start] + f"""<cluster><cluster_name>east</cluster_name>
<this_machine>a</this_machine>
<machine><machine_name>a</machine_name><settings>{text[start:end]}</settings></machine>
<machine><machine_name>b</machine_name><settings><interfaces><interface>
<interface_name>Other</interface_name><ip>10.0.0.9</ip></interface></interfaces></settings>
</machine></cluster>""" + text[end:])
        [r] = host.cluster_results(cfg.path)
        assert r.status is Status.FAIL and "machine b lacks interface" in r.observed

    def test_not_clustered(self, tmp_path: Path) -> None:
        [r] = host.cluster_results(_config(tmp_path).path)
        assert r.status is Status.OK


def test_admin_unavailable_is_remembered(tmp_path: Path) -> None:
    ctx = Context(_config(tmp_path))
    with pytest.raises(AdminUnavailable):
        run(ctx.admin("status"))
    assert ctx.down is not None


def test_a_slow_command_is_not_a_down_appliance(tmp_path: Path, monkeypatch: Any) -> None:
    from pvoq.doctor import context

    def slow(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise TimeoutError("timed out")

    monkeypatch.setattr(context, "call", slow)
    ctx = Context(_config(tmp_path))
    with pytest.raises(Refused, match="pvo.check: no answer within"):
        run(ctx.admin("pvo.check"))
    assert ctx.down is None
