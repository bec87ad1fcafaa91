"""The gateway's mode: local or centralized quarantines, and the switch between them.

`pvo.enable` (`pvoq cli pvo enable`, the console's Enable button) asks the
readiness probe first (`PvoCheckCommands.readiness`: `XCPQ CHECK` to each
listed manager) and refuses with its reason ("Cannot enable: ..."); when
ready, it rewrites only `<pvo_quarantines><enabled>` in the configuration
file (`config.writer`), reloads, and logs the switch. The reload replaces
the configuration in force in one assignment, and the router reads the mode
from it once per message (`gateway.local.centralized`), so every message
goes wholly one way: what was routed before is held locally, what is routed
after goes to the manager. A refused reload puts the old file back.
`pvo.disable` switches new caught mail back to the local quarantines (what
the manager holds stays there). `pvo.status` says the mode: `local`,
`enabling` (the probe is running), `centralized`, or `centralized, N
messages still held locally (migration pending)`.

    local ──pvo enable──▶ enabling ──ready──▶ centralized
      ▲                      └──not ready──▶ local (refused, reason shown)
      └──────────pvo disable──────────────── centralized
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pvoq.admin.protocol import CommandError, Peer
from pvoq.admin.registry import CommandSet, command
from pvoq.config import writer
from pvoq.config.errors import ConfigError
from pvoq.config.model import Config
from pvoq.gateway.local import CENTRALIZED, LOCAL, centralized
from pvoq.maillog import MailLog

ENABLING = "enabling"
Readiness = Callable[[], Awaitable[tuple[bool, str, list[dict[str, Any]]]]]


def set_enabled(data: bytes, enabled: bool) -> bytes:
    """*data* (the configuration file) with `<pvo_quarantines><enabled>` set to *enabled*,
    the rest byte for byte; the element is added when the file does not have it."""
    root = writer.elements(data)
    section = root.first("pvo_quarantines")
    if section is None:
        raise writer.ConfigEditError("the file has no top-level <pvo_quarantines> to change "
                                     "(a clustered configuration: change it at its level)",
                                     field="pvo_quarantines")
    value = "true" if enabled else "false"
    node = section.first("enabled")
    if node is not None:
        return writer.splice(data, node.start, node.end, f"<enabled>{value}</enabled>")
    step = writer.indent_step(data, root)
    indent = writer.line_indent(data, section.start) + step
    return writer.insert_child(data, section, f"{indent}<enabled>{value}</enabled>\n", step)


class PvoModeCommands(CommandSet):
    """`pvo.enable`, `pvo.disable`, `pvo.status` (see the module docstring).

    *config* gives the configuration in force, *reload* is the appliance's
    reload, *readiness* the probe of `PvoCheckCommands`, *held_locally* the
    number of messages the local quarantines hold.
    """

    def __init__(self, config: Callable[[], Config], reload: Callable[[], Awaitable[str]],
                 readiness: Readiness, held_locally: Callable[[], int],
                 maillog: MailLog) -> None:
        self.config = config
        self.reload = reload
        self.readiness = readiness
        self.held_locally = held_locally
        self.maillog = maillog
        self._lock = asyncio.Lock()
        self.enabling = False

    def mode(self) -> str:
        if self.enabling:
            return ENABLING
        return CENTRALIZED if centralized(self.config()) else LOCAL

    def describe(self) -> str:
        mode = self.mode()
        held = self.held_locally()
        if mode == CENTRALIZED and held:
            return (f"centralized, {held} message{'s' if held != 1 else ''} still held "
                    "locally (migration pending)")
        return mode

    @command("pvo.status")
    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config()
        managers = ", ".join(f"{m.hostname or m.address} at {m.address}:{m.port}"
                             for m in cfg.pvo.all_managers) or "none"
        held = self.held_locally()
        text = (f"PVO quarantines: {self.describe()}\n"
                f"Managers: {managers}\n"
                f"Messages held locally: {held}")
        return {"text": text, "data": {"mode": self.mode(), "description": self.describe(),
                                       "held_locally": held,
                                       "enabled": cfg.pvo.enabled}}

    @command("pvo.enable", peer=True)
    async def enable(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        async with self._lock:
            if centralized(self.config()):
                return {"text": "Centralized PVO quarantines are already enabled: "
                                f"{self.describe()}.", "data": {"mode": self.mode()}}
            self.enabling = True
            try:
                ready, text, _ = await self.readiness()
                if not ready:
                    self.maillog.info(f"Centralized PVO quarantines not enabled by "
                                      f"{_who(peer)}: not ready: {text.splitlines()[0]}")
                    raise CommandError(f"Cannot enable: {text}")
                path = await self._write(True)
            finally:
                self.enabling = False
            held = self.held_locally()
            pending = (f"; {held} message{'s' if held != 1 else ''} still held locally "
                       "(migration pending)" if held else "")
            self.maillog.info(f"Centralized PVO quarantines enabled by {_who(peer)}: caught "
                              f"mail goes to the manager{pending}")
        return {"text": f"Centralized PVO quarantines enabled ({text.splitlines()[0]}); "
                        f"{path} written and reloaded. Mode: {self.describe()}.",
                "data": {"mode": self.mode(), "held_locally": held}}

    @command("pvo.disable", peer=True)
    async def disable(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        async with self._lock:
            if not self.config().pvo.enabled:
                return {"text": "Centralized PVO quarantines are already disabled: caught "
                                "mail is held in the local quarantines.",
                        "data": {"mode": self.mode()}}
            path = await self._write(False)
            self.maillog.info(f"Centralized PVO quarantines disabled by {_who(peer)}: caught "
                              "mail is held in the local quarantines")
        return {"text": f"Centralized PVO quarantines disabled; {path} written and reloaded. "
                        "New caught mail is held in the local quarantines; what the manager "
                        "holds stays there.", "data": {"mode": self.mode()}}

    async def _write(self, enabled: bool) -> str:
        """Set `<pvo_quarantines><enabled>` in the file and reload; the old file is put back
        if the reload refuses the new one."""
        path = self.config().path
        try:
            data = path.read_bytes()
            edited = set_enabled(data, enabled)
            writer.check_text(path, edited)
            writer.replace_file(path, edited, expected=data)
        except ConfigError as exc:
            raise CommandError(f"Cannot {'enable' if enabled else 'disable'}: the "
                               f"configuration file {path} cannot be changed: "
                               f"{exc.located(path=str(path))}") from None
        except OSError as exc:
            raise CommandError(f"Cannot {'enable' if enabled else 'disable'}: cannot write "
                               f"the configuration file {path}: {exc.strerror or exc}; "
                               "nothing was changed") from None
        verb = "enable" if enabled else "disable"
        try:
            await self.reload()
        except CommandError as exc:
            writer.replace_file(path, data, expected=edited)
            raise CommandError(f"Cannot {verb}: the reload refused the new file, the old one "
                               f"is back: {exc}") from None
        if self.config().pvo.enabled != enabled:  # a cluster level below overrides the flag
            writer.replace_file(path, data, expected=edited)
            await self.reload()
            raise CommandError(f"Cannot {verb}: {path} sets <pvo_quarantines><enabled> at "
                               "another level too (a <cluster> group or machine overrides it); "
                               "change it there. The old file is back.")
        return str(path)


def _who(peer: Peer) -> str:
    name = peer.account or peer.user
    return f"{name} ({peer.via})" if peer.via else name
