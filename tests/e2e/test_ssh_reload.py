"""A reload that changes <ssh> moves the gateway's SSH command service without a restart."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from pvoq.testing.localdeploy import Deployment, free_port, wait_for


def banner(port: int) -> bytes | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            return s.recv(64)
    except OSError:
        return None


class TestSshReload:
    def test_changed_port_is_served_after_reload(self, tmp_path: Path) -> None:
        """The SSH service answers on the new port, not the old one, and the gateway runs on."""
        dep = Deployment(tmp_path / "deploy", ssh=True)
        dep.init()
        try:
            dep.start_gateway()
            old = dep.ports["gateway_ssh"]
            assert (banner(old) or b"").startswith(b"SSH-2.0")
            new = free_port()
            text = dep.gateway_config.read_text()
            text, n = re.subn(r"(<ssh>.*?<port>)\d+(</port>)", rf"\g<1>{new}\g<2>", text,
                              flags=re.S)
            assert n == 1
            dep.gateway_config.write_text(text)
            pid = dep.procs["gateway"].pid
            dep.admin(dep.gateway_config, "reload")
            assert wait_for("the new port", lambda: (banner(new) or b"").startswith(b"SSH-2.0"))
            assert banner(old) is None
            assert dep.procs["gateway"].pid == pid
        finally:
            dep.stop_all()
