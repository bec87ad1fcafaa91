"""The session limits of a listener and the per-address limits `pvoq init` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.config.errors import ConfigError
from pvoq.config.hat import match_hat
from pvoq.config.loader import load_config
from pvoq.config.model import (
    CPQ_LISTENER_NAME,
    CPQ_MAX_CONN_PER_IP,
    DEFAULT_MAX_CONN_PER_IP,
    ROLE_GATEWAY,
    ROLE_MANAGER,
    Listener,
    model_default,
)
from pvoq.config.template import ApplianceSpec, render

GATEWAY_SPEC = ApplianceSpec(role=ROLE_GATEWAY, hostname="gw1.example.com", serial="GW1-SN",
                             ip="10.1.2.1", smtp_port=2525, manager_address="10.1.2.3")
MANAGER_SPEC = ApplianceSpec(role=ROLE_MANAGER, hostname="mgr.example.com", serial="MGR-SN",
                             ip="10.1.2.3", gateways=[("gw1.example.com", "10.1.2.1", 7025)])
MARKER = "<listener_name>IncomingMail</listener_name>\n"


def _with(text: str, marker: str = MARKER, **settings: str) -> str:
    extra = "".join(f"    <{k}>{v}</{k}>\n" for k, v in settings.items())
    assert text.count(marker) == 1
    return text.replace(marker, marker + extra)


def write_config(directory: Path, text: str) -> Path:
    """*text* as `config.xml` in *directory*, with the (empty) certificate files it names."""
    certs = directory / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    for name in ("cpq-ca.pem", "cpq.pem", "cpq.key"):
        (certs / name).touch()
    path = directory / "config.xml"
    path.write_text(text, encoding="utf-8")
    return path.resolve()


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def line_of(text: str, needle: str) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def _listener(tmp_path: Path, name: str, text: str) -> Listener:
    cfg = load_config(write_config(tmp_path, text))
    (listener,) = [x for x in cfg.listeners if x.name == name]
    return listener


class TestDefaults:
    def test_defaults_come_from_the_model(self, tmp_path: Path) -> None:
        """A listener written without the elements gets the model's defaults."""
        listener = _listener(tmp_path, "IncomingMail", render(GATEWAY_SPEC))
        assert listener.max_junk_commands == model_default(Listener, "max_junk_commands") == 100
        assert listener.max_session_seconds == model_default(Listener, "max_session_seconds")
        assert listener.starttls_deadline_seconds == \
            model_default(Listener, "starttls_deadline_seconds")
        assert listener.reject_unauth_pipelining is None

    def test_pipelining_after_data_refused_on_public_listeners_only(self,
                                                                    tmp_path: Path) -> None:
        """By default a public SMTP listener refuses it, a CPQ (or private) one does not."""
        cfg = load_config(write_config(tmp_path, render(GATEWAY_SPEC)))
        by_name = {x.name: x for x in cfg.listeners}
        assert by_name["IncomingMail"].refuses_pipelining_after_data
        assert not by_name[CPQ_LISTENER_NAME].refuses_pipelining_after_data

    def test_settings_are_read(self, tmp_path: Path) -> None:
        """Each element sets its field; the pipelining choice can be turned either way."""
        text = _with(render(GATEWAY_SPEC), max_junk_commands="7", max_session_seconds="2.5",
                     starttls_deadline_seconds="3", reject_unauth_pipelining="false")
        listener = _listener(tmp_path, "IncomingMail", text)
        assert (listener.max_junk_commands, listener.max_session_seconds,
                listener.starttls_deadline_seconds) == (7, 2.5, 3.0)
        assert not listener.refuses_pipelining_after_data
        text = _with(render(MANAGER_SPEC), f"<listener_name>{CPQ_LISTENER_NAME}</listener_name>\n",
                     reject_unauth_pipelining="true")
        assert _listener(tmp_path, CPQ_LISTENER_NAME, text).refuses_pipelining_after_data


@pytest.mark.parametrize("tag", ["max_session_seconds", "starttls_deadline_seconds"])
@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e400", "0", "-1", "soon"])
def test_bad_time_limits_are_refused_with_their_field(tmp_path: Path, tag: str,
                                                      raw: str) -> None:
    """nan, infinities, zero, negatives and words are refused, naming field and line."""
    text = _with(render(GATEWAY_SPEC), **{tag: raw})
    err = load_error(write_config(tmp_path, text))
    assert err.field.endswith(f"listener.{tag}")
    assert err.line == line_of(text, f"<{tag}>")
    assert raw in err.message


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "nan", "many"])
def test_bad_junk_limits_are_refused_with_their_field(tmp_path: Path, raw: str) -> None:
    text = _with(render(GATEWAY_SPEC), max_junk_commands=raw)
    err = load_error(write_config(tmp_path, text))
    assert err.field.endswith("listener.max_junk_commands")
    assert "not a positive integer" in err.message


def test_a_bad_pipelining_choice_is_refused(tmp_path: Path) -> None:
    text = _with(render(GATEWAY_SPEC), reject_unauth_pipelining="maybe")
    err = load_error(write_config(tmp_path, text))
    assert err.field.endswith("listener.reject_unauth_pipelining")


class TestGeneratedHats:
    def test_public_listener_limits_each_address(self, tmp_path: Path) -> None:
        """The HAT `pvoq init` writes limits concurrent connections per address."""
        listener = _listener(tmp_path, "IncomingMail", render(GATEWAY_SPEC))
        params = match_hat(listener.hat, "192.0.2.7").policy.params
        assert params["max_conn_per_ip"] == str(DEFAULT_MAX_CONN_PER_IP)

    @pytest.mark.parametrize("spec", [GATEWAY_SPEC, MANAGER_SPEC], ids=["gateway", "manager"])
    def test_cpq_listener_limits_each_peer(self, tmp_path: Path, spec: object) -> None:
        """Each role's cpq_listener allows its peers a bounded number of connections."""
        listener = _listener(tmp_path, CPQ_LISTENER_NAME, render(spec))  # type: ignore[arg-type]
        peer = "10.1.2.3" if spec is GATEWAY_SPEC else "10.1.2.1"
        decision = match_hat(listener.hat, peer)
        assert decision.action == "RELAY"
        assert decision.policy.params["max_conn_per_ip"] == str(CPQ_MAX_CONN_PER_IP)

    def test_a_generated_cpq_listener_limits_each_peer_too(self, tmp_path: Path) -> None:
        """A configuration without a cpq_listener gets one with the same per-peer limit."""
        text = render(GATEWAY_SPEC)
        start = text.index("  <listener>\n    <listener_name>cpq_listener")
        end = text.index("</listener>\n", start) + len("</listener>\n")
        listener = _listener(tmp_path, CPQ_LISTENER_NAME, text[:start] + text[end:])
        assert listener.generated
        decision = match_hat(listener.hat, "10.1.2.3")
        assert decision.policy.params["max_conn_per_ip"] == str(CPQ_MAX_CONN_PER_IP)
