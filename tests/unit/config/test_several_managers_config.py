"""A gateway's `<managers>` list: loading, the single `manager_address` form as a list of one,
the generated cpq_listener admitting every manager, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.config.errors import ConfigError
from pvoq.config.hat import match_hat
from pvoq.config.loader import load_config
from pvoq.config.model import CPQ_LISTENER_NAME, ROLE_GATEWAY, ManagerRecord, PvoSettings
from pvoq.config.template import ApplianceSpec, render

MANAGERS = [("10.1.2.3", 7025, "mgr1.example.com"), ("10.1.2.4", 7026, "mgr2.example.com")]


def spec(**kwargs: object) -> ApplianceSpec:
    base: dict[str, object] = dict(role=ROLE_GATEWAY, hostname="gw1.example.com",
                                   serial="GW1-SN", ip="10.1.2.1", smtp_port=2525)
    base.update(kwargs)
    return ApplianceSpec(**base)  # type: ignore[arg-type]


def write(directory: Path, text: str) -> Path:
    certs = directory / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    for name in ("cpq-ca.pem", "cpq.pem", "cpq.key"):
        (certs / name).touch()
    path = directory / "config.xml"
    path.write_text(text, encoding="utf-8")
    return path.resolve()


def error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def line_of(text: str, needle: str, nth: int = 0) -> int:
    return [n for n, line in enumerate(text.splitlines(), start=1) if needle in line][nth]


def without_cpq_listener(text: str) -> str:
    """The configuration with its written cpq_listener removed: the loader generates one."""
    start = text.index("  <listener>\n    <listener_name>cpq_listener")
    end = text.index("  </listener>\n", start) + len("  </listener>\n")
    return text[:start] + text[end:]


class TestManagersList:
    def test_managers_load_in_order(self, tmp_path: Path) -> None:
        """`<managers>` gives every manager, in order, with its port and hostname; the
        single-form fields name the first, for what reads them."""
        cfg = load_config(write(tmp_path, render(spec(managers=MANAGERS))))
        assert cfg.pvo.all_managers == (
            ManagerRecord("10.1.2.3", "mgr1.example.com", 7025),
            ManagerRecord("10.1.2.4", "mgr2.example.com", 7026))
        assert (cfg.pvo.manager_address, cfg.pvo.manager_port, cfg.pvo.manager_hostname) == \
            ("10.1.2.3", 7025, "mgr1.example.com")

    def test_single_form_is_a_list_of_one(self, tmp_path: Path) -> None:
        """An existing `manager_address` configuration still loads: one manager."""
        text = render(spec(manager_address="10.1.2.3", manager_port=7030,
                           manager_hostname="mgr.example.com"))
        cfg = load_config(write(tmp_path, text))
        assert cfg.pvo.all_managers == (ManagerRecord("10.1.2.3", "mgr.example.com", 7030),)

    def test_single_form_without_hostname_accepts_any_name(self) -> None:
        """Without `manager_hostname`, the one manager is whatever manager certificate
        the CA signed (today's behaviour); with names, only those names."""
        single = PvoSettings(enabled=True, interface_name="x", manager_address="10.0.0.1")
        assert single.manager_named("anything.example") is not None
        listed = PvoSettings(enabled=True, interface_name="x", managers=tuple(
            ManagerRecord(a, h, p) for a, p, h in MANAGERS))
        assert listed.manager_named("MGR2.example.com") == listed.managers[1]
        assert listed.manager_named("mgr3.example.com") is None
        assert listed.manager_named(None) is None

    def test_generated_cpq_listener_admits_every_manager(self, tmp_path: Path) -> None:
        """The RELAYLIST of the generated cpq_listener holds every listed manager."""
        text = without_cpq_listener(render(spec(managers=MANAGERS)))
        cfg = load_config(write(tmp_path, text))
        cpq = next(lst for lst in cfg.listeners if lst.name == CPQ_LISTENER_NAME)
        assert cpq.generated
        for address, _, _ in MANAGERS:
            assert match_hat(cpq.hat, address).action == "RELAY"
        assert match_hat(cpq.hat, "10.1.2.5").action == "REJECT"

    def test_written_cpq_listener_admits_every_manager(self, tmp_path: Path) -> None:
        """`pvoq init` writes a cpq_listener whose HAT relays for every manager."""
        cfg = load_config(write(tmp_path, render(spec(managers=MANAGERS))))
        cpq = next(lst for lst in cfg.listeners if lst.name == CPQ_LISTENER_NAME)
        assert not cpq.generated
        assert [match_hat(cpq.hat, a).action for a, _, _ in MANAGERS] == ["RELAY", "RELAY"]


class TestManagersErrors:
    def test_missing_hostname_is_named(self, tmp_path: Path) -> None:
        """Each listed manager must say the name its certificate carries."""
        text = render(spec(managers=MANAGERS)).replace(
            "        <hostname>mgr2.example.com</hostname>\n", "")
        path = write(tmp_path, text)
        err = error(path)
        assert err.field.endswith("pvo_quarantines.managers.manager[2].hostname")
        assert err.line == line_of(text, "<manager>", 1)

    def test_bad_port_is_named(self, tmp_path: Path) -> None:
        text = render(spec(managers=MANAGERS)).replace("<port>7026</port>", "<port>70x</port>")
        err = error(write(tmp_path, text))
        assert err.field.endswith("managers.manager[2].port")
        assert err.line == line_of(text, "<port>70x</port>")
        assert "not a port number" in err.message

    def test_duplicate_hostname(self, tmp_path: Path) -> None:
        twice = [MANAGERS[0], ("10.1.2.9", 7025, "MGR1.example.com")]
        text = render(spec(managers=twice))
        err = error(write(tmp_path, text))
        assert "duplicate manager hostname" in err.message
        assert err.line == line_of(text, "<manager>", 1)

    def test_duplicate_address(self, tmp_path: Path) -> None:
        twice = [MANAGERS[0], ("10.1.2.3", 7025, "mgr9.example.com")]
        err = error(write(tmp_path, render(spec(managers=twice))))
        assert "duplicate manager address 10.1.2.3:7025" in err.message

    def test_empty_list(self, tmp_path: Path) -> None:
        text = render(spec(managers=MANAGERS))
        start, end = text.index("    <managers>\n"), text.index("    </managers>\n")
        text = text[:start] + "    <managers>\n" + text[end:]
        err = error(write(tmp_path, text))
        assert "lists no <manager>" in err.message
        assert err.field.endswith("pvo_quarantines.managers")
        assert err.line == line_of(text, "<managers>")

    def test_both_forms_refused(self, tmp_path: Path) -> None:
        """`<managers>` and `<manager_address>` together are ambiguous: refused, located."""
        text = render(spec(managers=MANAGERS)).replace(
            "    <managers>\n", "    <manager_address>10.1.2.3</manager_address>\n"
                               "    <managers>\n")
        err = error(write(tmp_path, text))
        assert err.field.endswith("pvo_quarantines.manager_address")
        assert err.line == line_of(text, "<manager_address>")

    def test_managers_on_a_manager_refused(self, tmp_path: Path) -> None:
        manager = render(ApplianceSpec(role="manager", hostname="mgr1.example.com",
                                       serial="M", gateways=[("gw1", "10.1.2.1", 7025)]))
        text = manager.replace("    <gateways>\n", "    <managers><manager><address>10.0.0.9"
                                                   "</address><hostname>m2</hostname>"
                                                   "</manager></managers>\n    <gateways>\n")
        err = error(write(tmp_path, text))
        assert "gateway's setting" in err.message and err.field.endswith("managers")
