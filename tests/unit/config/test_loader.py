"""Tests for pvoq.config.loader, xmltree and template: loading and locating errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.config.errors import ConfigError
from pvoq.config.hat import match_hat, match_rat
from pvoq.config.loader import load_config
from pvoq.config.model import CPQ_LISTENER_NAME, ROLE_GATEWAY, ROLE_MANAGER, Config
from pvoq.config.template import ApplianceSpec, render
from pvoq.config.xmltree import parse_xml
from pvoq.cpq.ca import create_ca, issue_certificate

SMTP_PORT = 2525
GATEWAY_SPEC = ApplianceSpec(role=ROLE_GATEWAY, hostname="gw1.example.com", serial="GW1-SN",
                             ip="10.1.2.1", smtp_port=SMTP_PORT, manager_address="10.1.2.3",
                             routes=[("example.com", "10.9.0.5:2526")],
                             outbreak_urls=["Bad.Example/phish"])
MANAGER_SPEC = ApplianceSpec(role=ROLE_MANAGER, hostname="mgr.example.com", serial="MGR-SN",
                             ip="10.1.2.3",
                             gateways=[("gw1.example.com", "10.1.2.1", 7025),
                                       ("gw2.example.com", "10.1.2.2", 7026)])

SEED_LISTENER = """\
<listener>
  <listener_name>cpq_listener</listener_name>
  <protocol>CPQ</protocol>
  <interface_name>Incoming Mail</interface_name>
  <port>7025</port>
  <listen_queue_size>50</listen_queue_size>
  <type>private</type>
  <hat>
$RELAYED
  RELAY {}
$BLOCKED
  REJECT {}
RELAYLIST:
  10.1.2.3
    $RELAYED (Only select hosts can relay from this box)
ALL
  $BLOCKED (Everyone else)
  </hat>
  <rat>
    <rat_entry>
      <rat_address>ALL</rat_address>
      <access>ACCEPT</access>
    </rat_entry>
  </rat>
</listener>
"""

SEED_CONFIG = """\
<?xml version="1.0" encoding="UTF-8"?>
<config>
  <system>
    <role>gateway</role>
    <hostname>gw1.example.com</hostname>
    <serial_number>GW1-SN</serial_number>
    <data_dir>data</data_dir>
  </system>
  <interfaces>
    <interface>
      <interface_name>Incoming Mail</interface_name>
      <ip>10.1.2.1</ip>
    </interface>
  </interfaces>
  <listeners>
{listener}  </listeners>
  <pvo_quarantines>
    <manager_address>10.1.2.3</manager_address>
  </pvo_quarantines>
  <cpq_certificate>
    <ca_certificate>certs/cpq-ca.pem</ca_certificate>
    <certificate>certs/cpq.pem</certificate>
    <private_key>certs/cpq.key</private_key>
  </cpq_certificate>
</config>
"""


def write_config(directory: Path, text: str) -> Path:
    """Write *text* as `config.xml` in *directory* with the (empty) cert files it names."""
    certs = directory / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    for name in ("cpq-ca.pem", "cpq.pem", "cpq.key"):
        (certs / name).touch()
    path = directory / "config.xml"
    path.write_text(text, encoding="utf-8")
    return path.resolve()


def line_of(text: str, needle: str) -> int:
    """The 1-based number of the only line of *text* containing *needle*."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def replace_once(text: str, old: str, new: str) -> str:
    """Replace the single occurrence of *old* in *text*."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def load_error(path: Path) -> ConfigError:
    """Load *path* expecting a ConfigError, and return it."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def assert_located(err: ConfigError, path: Path, line: int | None) -> None:
    """*err* names *path* and *line* and renders as `<path>:<line>: <field>: <message>`."""
    assert err.path == str(path)
    assert err.line == line
    where = str(path) if line is None else f"{path}:{line}"
    assert str(err) == f"{where}: {err.field}: {err.message}"


@pytest.fixture
def gateway_text() -> str:
    return render(GATEWAY_SPEC)


class TestTemplateConfigsLoad:
    def test_gateway_config_loads(self, tmp_path: Path, gateway_text: str) -> None:
        """The rendered gateway configuration loads with the values of its spec."""
        cfg = load_config(write_config(tmp_path, gateway_text))
        assert cfg.role == ROLE_GATEWAY
        assert cfg.hostname == GATEWAY_SPEC.hostname
        assert cfg.serial_number == GATEWAY_SPEC.serial
        assert [(i.name, i.ip) for i in cfg.interfaces] == [("Incoming Mail", GATEWAY_SPEC.ip)]
        assert {lst.name: lst.port for lst in cfg.listeners} == {
            "IncomingMail": SMTP_PORT, CPQ_LISTENER_NAME: GATEWAY_SPEC.cpq_port}
        assert cfg.pvo.enabled and cfg.pvo.manager_address == GATEWAY_SPEC.manager_address
        assert cfg.delivery.route_for("example.com").host == "10.9.0.5"
        assert cfg.delivery.route_for("example.com").port == 2526

    def test_gateway_listeners_are_usable(self, tmp_path: Path, gateway_text: str) -> None:
        """The gateway's CPQ listener relays only the manager; its public RAT accepts its domains."""
        cfg = load_config(write_config(tmp_path, gateway_text))
        cpq = cfg.cpq_listener
        assert cpq is not None and not cpq.generated and cpq.type == "private"
        assert match_hat(cpq.hat, GATEWAY_SPEC.manager_address).action == "RELAY"
        assert match_hat(cpq.hat, "192.0.2.99").action == "REJECT"
        public = next(lst for lst in cfg.listeners if lst.name == "IncomingMail")
        assert match_rat(public.rat, "user@example.com").access == "ACCEPT"
        assert match_rat(public.rat, "user@elsewhere.example").access == "REJECT"

    def test_gateway_scan_settings(self, tmp_path: Path, gateway_text: str) -> None:
        """Content filters compile, and outbreak URLs are lower-cased."""
        cfg = load_config(write_config(tmp_path, gateway_text))
        (flt,) = cfg.scan.content_filters
        assert flt.header == "Subject" and flt.quarantine == "Policy"
        assert flt.pattern.search("Re: CONFIDENTIAL numbers")
        assert cfg.scan.outbreak_urls == ("bad.example/phish",)
        assert cfg.scan.antivirus_enabled and cfg.scan.outbreak_enabled

    def test_manager_config_loads(self, tmp_path: Path) -> None:
        """The rendered manager configuration loads, listing its gateways."""
        cfg = load_config(write_config(tmp_path, render(MANAGER_SPEC)))
        assert cfg.role == ROLE_MANAGER
        assert [(g.hostname, g.address, g.cpq_port) for g in cfg.pvo.gateways] == \
            MANAGER_SPEC.gateways
        assert cfg.pvo.gateway("GW2.example.com").cpq_port == 7026
        cpq = cfg.cpq_listener
        assert cpq is not None and cpq.interface_name == "Management"
        for _, ip, _ in MANAGER_SPEC.gateways:
            assert match_hat(cpq.hat, ip).action == "RELAY"

    def test_paths_are_relative_to_the_file(self, tmp_path: Path, gateway_text: str) -> None:
        """Relative paths in the file resolve against the file's directory."""
        cfg = load_config(write_config(tmp_path, gateway_text))
        base = tmp_path.resolve()
        assert cfg.path == base / "config.xml"
        assert cfg.data_dir == base / "data"
        assert cfg.cpq_certificate.certificate == base / "certs" / "cpq.pem"
        assert cfg.cpq_certificate.private_key == base / "certs" / "cpq.key"
        assert cfg.cpq_certificate.ca_certificate == base / "certs" / "cpq-ca.pem"

    def test_real_certificates_are_accepted(self, tmp_path: Path, gateway_text: str) -> None:
        """A configuration pointing at a CA and certificate made by pvoq.cpq.ca loads."""
        certs = tmp_path / "certs"
        create_ca(certs)
        issue_certificate(certs, certs, hostname=GATEWAY_SPEC.hostname, role=ROLE_GATEWAY)
        path = tmp_path / "config.xml"
        path.write_text(gateway_text, encoding="utf-8")
        cfg = load_config(path)
        assert cfg.cpq_certificate.certificate.read_bytes().startswith(b"-----BEGIN CERTIFICATE")


class TestSeedListener:
    def load(self, tmp_path: Path) -> Config:
        return load_config(write_config(tmp_path, SEED_CONFIG.format(listener=SEED_LISTENER)))

    def test_listener_fields(self, tmp_path: Path) -> None:
        """The seed's listener block loads as the private CPQ listener it describes."""
        (listener,) = self.load(tmp_path).listeners
        assert listener.name == CPQ_LISTENER_NAME
        assert listener.is_cpq and not listener.generated
        assert listener.interface_name == "Incoming Mail"
        assert listener.port == 7025
        assert listener.listen_queue_size == 50
        assert listener.type == "private"

    def test_hat_relays_relaylist(self, tmp_path: Path) -> None:
        """In the seed's HAT, 10.1.2.3 is in RELAYLIST and gets $RELAYED."""
        hat = self.load(tmp_path).cpq_listener.hat
        decision = match_hat(hat, "10.1.2.3")
        assert (decision.action, decision.policy.name, decision.group) == \
            ("RELAY", "$RELAYED", "RELAYLIST")

    def test_hat_blocks_everyone_else(self, tmp_path: Path) -> None:
        """Any other host falls to ALL and gets $BLOCKED."""
        decision = match_hat(self.load(tmp_path).cpq_listener.hat, "10.1.2.4")
        assert (decision.action, decision.policy.name, decision.group) == \
            ("REJECT", "$BLOCKED", "ALL")

    def test_rat_accepts_all(self, tmp_path: Path) -> None:
        """The seed's RAT accepts every recipient."""
        rat = self.load(tmp_path).cpq_listener.rat
        entry = match_rat(rat, "anyone@anywhere.example")
        assert entry is not None and entry.access == "ACCEPT"


class TestGeneratedCpqListener:
    def test_gateway_gets_hidden_listener(self, tmp_path: Path) -> None:
        """A PVO-enabled gateway without a CPQ listener gets a generated cpq_listener."""
        cfg = load_config(write_config(tmp_path, SEED_CONFIG.format(listener="")))
        listener = cfg.cpq_listener
        assert listener is not None
        assert listener.generated
        assert listener.name == CPQ_LISTENER_NAME
        assert listener.port == cfg.pvo.port
        assert listener.interface_name == cfg.pvo.interface_name
        assert match_hat(listener.hat, "10.1.2.3").action == "RELAY"
        assert match_hat(listener.hat, "10.1.2.4").action == "REJECT"

    def test_manager_gets_hidden_listener(self, tmp_path: Path) -> None:
        """A manager without a CPQ listener relays from every configured gateway."""
        text = render(MANAGER_SPEC)
        start = text.index("  <listener>")
        end = text.index("</listener>\n") + len("</listener>\n")
        cfg = load_config(write_config(tmp_path, text[:start] + text[end:]))
        listener = cfg.cpq_listener
        assert listener is not None and listener.generated
        for _, ip, _ in MANAGER_SPEC.gateways:
            assert match_hat(listener.hat, ip).action == "RELAY"

    def test_disabled_pvo_generates_nothing(self, tmp_path: Path) -> None:
        """With PVO disabled no hidden listener is added."""
        text = SEED_CONFIG.format(listener="").replace(
            "<pvo_quarantines>", "<pvo_quarantines>\n    <enabled>false</enabled>")
        cfg = load_config(write_config(tmp_path, text))
        assert cfg.listeners == ()
        assert cfg.cpq_listener is None


class TestConfigErrors:
    def test_malformed_xml(self, tmp_path: Path, gateway_text: str) -> None:
        """A mismatched closing tag names the element it leaves open, on its line."""
        text = replace_once(gateway_text, "</hostname>", "</hostnme>")
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "config.system.hostname"
        line = line_of(text, "</hostnme>")
        assert err.message == (f"<hostname> opened on line {line} is not closed "
                               f"(mismatched tag on line {line})")
        assert_located(err, path, line)

    def test_bad_port(self, tmp_path: Path, gateway_text: str) -> None:
        """A non-numeric port names the listener's port field and the value."""
        text = replace_once(gateway_text, f"<port>{SMTP_PORT}</port>", "<port>abc</port>")
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field.endswith("listeners.listener.port")
        assert "'abc'" in err.message
        assert_located(err, path, line_of(text, "<port>abc</port>"))

    def test_port_out_of_range(self, tmp_path: Path, gateway_text: str) -> None:
        """A port above 65535 is refused on its line."""
        text = replace_once(gateway_text, f"<port>{SMTP_PORT}</port>", "<port>70000</port>")
        path = write_config(tmp_path, text)
        assert_located(load_error(path), path, line_of(text, "<port>70000</port>"))

    def test_second_listener_is_indexed(self, tmp_path: Path, gateway_text: str) -> None:
        """An error in the second listener names `listener[2]` in its field."""
        old = f"<port>{GATEWAY_SPEC.cpq_port}</port>\n    <listen_queue_size>"
        text = replace_once(gateway_text, old, "<port>x</port>\n    <listen_queue_size>")
        err = load_error(write_config(tmp_path, text))
        assert err.field.endswith("listeners.listener[2].port")

    def test_unknown_interface_name(self, tmp_path: Path, gateway_text: str) -> None:
        """A listener on an undefined interface is refused on its interface_name line."""
        old = f"<interface_name>Incoming Mail</interface_name>\n    <port>{SMTP_PORT}"
        text = replace_once(gateway_text, old,
                            f"<interface_name>Outgoing Mail</interface_name>\n    <port>{SMTP_PORT}")
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field.endswith("listeners.listener.interface_name")
        assert "'Outgoing Mail'" in err.message and "'Incoming Mail'" in err.message
        assert_located(err, path, line_of(text, "Outgoing Mail"))

    def test_missing_hostname(self, tmp_path: Path, gateway_text: str) -> None:
        """A missing <hostname> is reported at its parent <system>."""
        text = replace_once(gateway_text, f"    <hostname>{GATEWAY_SPEC.hostname}</hostname>\n",
                            "")
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field.endswith("system.hostname")
        assert "hostname" in err.message
        assert_located(err, path, line_of(text, "<system>"))

    def test_bad_hat_line_has_file_line(self, tmp_path: Path) -> None:
        """A bad HAT member is reported on its own line in the file, not inside the block."""
        text = SEED_CONFIG.format(listener=replace_once(SEED_LISTENER, "  10.1.2.3\n",
                                                        "  10.1.2.999\n"))
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "hat.RELAYLIST"
        assert "10.1.2.999" in err.message
        assert_located(err, path, line_of(text, "10.1.2.999"))

    def test_undefined_hat_policy_has_file_line(self, tmp_path: Path) -> None:
        """A sender group naming an undefined policy is reported on its policy line."""
        listener = replace_once(SEED_LISTENER, "$RELAYED (Only", "$TRUSTED (Only")
        text = SEED_CONFIG.format(listener=listener)
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert "$TRUSTED" in err.message
        assert_located(err, path, line_of(text, "$TRUSTED"))

    def test_bad_rat_entry_has_file_line(self, tmp_path: Path) -> None:
        """A RAT entry with an unknown access is reported at its <rat_entry>."""
        listener = replace_once(SEED_LISTENER, "<access>ACCEPT</access>", "<access>MAYBE</access>")
        text = SEED_CONFIG.format(listener=listener)
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert "MAYBE" in err.message
        assert_located(err, path, line_of(text, "<rat_entry>"))

    def test_bad_content_filter_regex(self, tmp_path: Path, gateway_text: str) -> None:
        """An invalid regex in a content filter is refused on its <regex> line."""
        text = replace_once(gateway_text, r"(?i)\bconfidential\b", "(unclosed")
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field.endswith("content_filters.content_filter.regex")
        assert "regular expression" in err.message
        assert_located(err, path, line_of(text, "(unclosed"))

    def test_missing_certificate_file(self, tmp_path: Path, gateway_text: str) -> None:
        """A certificate file that does not exist is refused on its line."""
        path = write_config(tmp_path, gateway_text)
        (tmp_path / "certs" / "cpq.pem").unlink()
        err = load_error(path)
        assert err.field.endswith("cpq_certificate.certificate")
        assert "cpq.pem" in err.message
        assert_located(err, path, line_of(gateway_text, "<certificate>"))

    def test_duplicate_listener_port(self, tmp_path: Path, gateway_text: str) -> None:
        """Two listeners on one interface and port are refused at the second listener."""
        text = replace_once(gateway_text, f"<port>{SMTP_PORT}</port>",
                            f"<port>{GATEWAY_SPEC.cpq_port}</port>")
        err = load_error(write_config(tmp_path, text))
        assert "already used" in err.message
        assert err.field.endswith("listener[2]")

    def test_gateway_without_manager_address(self, tmp_path: Path, gateway_text: str) -> None:
        """A PVO-enabled gateway must name its manager."""
        text = replace_once(gateway_text, "    <manager_address>10.1.2.3</manager_address>\n", "")
        err = load_error(write_config(tmp_path, text))
        assert err.field.endswith("pvo_quarantines.manager_address")

    def test_retry_max_below_min(self, tmp_path: Path, gateway_text: str) -> None:
        """A retry maximum below the minimum is refused."""
        text = replace_once(gateway_text, "<retry_max_seconds>3600</retry_max_seconds>",
                            "<retry_max_seconds>30</retry_max_seconds>")
        err = load_error(write_config(tmp_path, text))
        assert err.field.endswith("delivery.retry_max_seconds")

    def test_wrong_root_element(self, tmp_path: Path) -> None:
        """A document whose root is not <config> is refused."""
        text = "<?xml version='1.0'?>\n<settings/>\n"
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert "<config>" in err.message
        assert_located(err, path, line_of(text, "<settings/>"))

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A file that cannot be read is a ConfigError naming the file, without a line."""
        path = (tmp_path / "absent.xml").resolve()
        err = load_error(path)
        assert err.field == "file"
        assert_located(err, path, None)


class TestXmlTree:
    def test_nodes_remember_lines_and_paths(self) -> None:
        """Each element keeps its line and a dotted path with [n] for repeated tags."""
        root = parse_xml(b"<config>\n  <a>x</a>\n  <a>\n    <b> y </b>\n  </a>\n</config>\n",
                         path="t.xml")
        first, second = root.all("a")
        assert (root.line, first.line, second.line) == (1, 2, 3)
        assert (first.path, second.path) == ("config.a", "config.a[2]")
        assert second.require("b").text == " y "
        assert second.require("b").line == 4

    def test_require_missing_child(self) -> None:
        """require() of an absent child raises ConfigError at the parent's line."""
        root = parse_xml(b"<config>\n  <system/>\n</config>", path="t.xml")
        with pytest.raises(ConfigError) as info:
            root.require("system").require("role")
        assert (info.value.field, info.value.line) == ("config.system.role", 2)

    def test_entities_are_refused(self) -> None:
        """A document declaring entities is refused (no entity expansion attacks)."""
        data = (b'<?xml version="1.0"?>\n<!DOCTYPE config [<!ENTITY x "boom">]>\n'
                b"<config>&x;</config>")
        with pytest.raises(ConfigError) as info:
            parse_xml(data, path="t.xml")
        assert info.value.field == "xml"
        assert info.value.path == "t.xml"

    def test_empty_document(self) -> None:
        """An empty file is a ConfigError, not a crash."""
        with pytest.raises(ConfigError) as info:
            parse_xml(b"", path="t.xml")
        assert info.value.field == "xml"
