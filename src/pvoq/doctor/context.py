"""What every check shares: the configuration, the appliance's admin socket, the commands
an operator types (each fix names the configuration file doctor was given)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pvoq.admin.protocol import AdminUnavailable, call
from pvoq.config.model import Config

ADMIN_TIMEOUT_S = 75.0  # pvo.check may wait for a manager's delivery timeout (60s)


class Unknown(Exception):
    """The running appliance does not know the command (an older or other role's set)."""


class Refused(Exception):
    """The running appliance answered the command with an error (its text)."""


@dataclass
class Context:
    """The appliance doctor examines: *config* and its live admin socket."""

    config: Config
    timeout_s: float = 5.0      # each network probe
    _answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    _down: str | None = None

    @property
    def role(self) -> str:
        return self.config.role

    @property
    def path(self) -> str:
        return str(self.config.path)

    def cli(self, command: str) -> str:
        """The operator command line of *command* against this appliance."""
        return f"pvoq cli -c {self.path} {command}"

    @property
    def start_command(self) -> str:
        return f"pvoq {self.role} run -c {self.path}"

    @property
    def down(self) -> str | None:
        """Why the appliance cannot be asked (None: it answers, or was not asked yet)."""
        return self._down

    async def admin(self, command: str, args: dict[str, Any] | None = None,
                    *, cached: bool = True) -> dict[str, Any]:
        """The answer of *command* on the running appliance (its `data`, else the whole
        answer); `AdminUnavailable` when nothing runs, `Unknown`, `Refused`."""
        key = command if not args else f"{command} {sorted(args.items())}"
        if cached and key in self._answers:
            return self._answers[key]
        if self._down is not None:
            raise AdminUnavailable(self._down)
        try:
            response = await asyncio.to_thread(call, self.config.admin_socket, command, args,
                                               timeout_s=ADMIN_TIMEOUT_S)
        except TimeoutError:  # it runs, but this command took too long (pvo.check waits
            # for the manager): that command's line says so, the others still ask
            raise Refused(f"{command}: no answer within {ADMIN_TIMEOUT_S:g}s") from None
        except (AdminUnavailable, OSError) as exc:
            self._down = str(exc)
            raise AdminUnavailable(self._down) from None
        if not response.get("ok"):
            error = str(response.get("error") or "failed")
            if error.startswith("Unknown command"):
                raise Unknown(error)
            raise Refused(error)
        answer: dict[str, Any] = response.get("data") or response
        self._answers[key] = answer
        return answer
