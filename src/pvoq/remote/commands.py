"""Operator commands of the SSH link and of the listener list, on the admin socket.

Gateway: `pvo.listener` (what the manager asks over SSH), `ssh.token`,
`ssh.authorize`, `ssh.show`. Manager: `gateway.add`, `gateway.list`,
`gateway.remove`, `gateway.test`, `gateway.pubkey`. Both: `listeners`
(the hidden `cpq_listener` only with `all`). Each returns the admin
protocol's `{"text": ..., "data": ...}`; a failure is a `CommandError`.

Three `CommandSet`s: `ListenerInfoCommands` (both roles),
`GatewayLinkCommands` (gateway), `ManagerLinkCommands` (manager). The
running configuration and the gateway's SSH command service change on a
reload, so they are given as callables returning the current one.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pvoq.admin.protocol import CommandError
from pvoq.admin.registry import CommandSet, command
from pvoq.config.model import Config
from pvoq.remote.keys import SshFault, fingerprint, parse_public_key, public_line

if TYPE_CHECKING:
    from pvoq.remote.client import SshClient
    from pvoq.remote.lookup import GatewayLocator
    from pvoq.remote.service import CommandService


# A gateway's mode, as `pvo local` says it: caught mail held here, or sent to a manager.
LOCAL, CENTRALIZED = "local", "centralized"


def decode_plan_arg(args: dict[str, Any]) -> Any:
    """The migration plan of `pvo.migrate.start`: `plan` (admin socket) or one base64url
    JSON word (`argv`, over SSH, where a command is words); ValueError naming the fault."""
    if "plan" in args:
        return args["plan"]
    argv = args.get("argv") or []
    if len(argv) != 1:
        raise ValueError("pvo migrate takes one argument: the plan (base64url JSON)")
    try:
        return json.loads(base64.urlsafe_b64decode(str(argv[0]).encode("ascii")))
    except (ValueError, UnicodeError) as exc:
        raise ValueError(f"the plan is not base64url JSON ({exc})") from None


def encode_plan_arg(plan: dict[str, Any]) -> str:
    """`decode_plan_arg`'s SSH form of *plan*: `pvo migrate <this>`."""
    return base64.urlsafe_b64encode(json.dumps(plan, separators=(",", ":")).encode()).decode()


def listener_rows(config: Config, *, include_hidden: bool) -> list[dict[str, Any]]:
    """The listeners as `listenerconfig` shows them; the cpq_listener is hidden by default."""
    rows = []
    for lst in config.listeners:
        if lst.is_cpq and not include_hidden:
            continue
        interface = config.interface(lst.interface_name)
        rows.append({"name": lst.name, "protocol": lst.protocol, "type": lst.type,
                     "interface": lst.interface_name,
                     "address": interface.ip if interface else "?", "port": lst.port,
                     "hidden": lst.is_cpq, "generated": lst.generated,
                     "sender_groups": [g.name for g in lst.hat.groups]})
    return rows


class ListenerInfoCommands(CommandSet):
    """`listeners [all]` on either appliance; *config* gives the running configuration."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self.config = config

    @command("listeners")
    async def listeners(self, args: dict[str, Any]) -> dict[str, Any]:
        rows = listener_rows(self.config(), include_hidden=bool(args.get("all")))
        return {"data": {"listeners": rows,
                         "not_shown": len(self.config().listeners) - len(rows)}}


class GatewayLinkCommands(CommandSet):
    """The gateway's side of the SSH link: `pvo.listener`, `ssh.token|authorize|show`.

    *config* and *service* give the running configuration and SSH command
    service (both change on a reload; the service is None when disabled).
    """

    def __init__(self, config: Callable[[], Config],
                 service: Callable[[], CommandService | None]) -> None:
        self.config = config
        self.service = service

    def need_service(self) -> CommandService:
        running = self.service()
        if running is None:
            raise CommandError("the SSH command service is not enabled (<ssh><enabled>)")
        return running

    @command("pvo.listener")
    async def pvo_listener(self, args: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config()
        cpq = cfg.cpq_listener
        if not cfg.pvo.enabled or cpq is None:
            raise CommandError("centralized PVO quarantines are disabled on this gateway")
        interface = cfg.interface(cpq.interface_name)
        return {"data": {"hostname": cfg.hostname, "interface": cpq.interface_name,
                         "address": interface.ip if interface else "", "port": cpq.port}}

    @command("ssh.token")
    async def token(self, args: dict[str, Any]) -> dict[str, Any]:
        svc = self.need_service()
        ttl = float(args.get("ttl_s") or 3600)
        value = svc.tokens.issue(ttl)
        return {"text": f"One-time enrolment token (valid {ttl:g}s): {value}\n"
                        f"SSH host key of this gateway: {svc.fingerprint}",
                "data": {"token": value, "fingerprint": svc.fingerprint,
                         "expires": time.time() + ttl}}

    @command("ssh.authorize")
    async def authorize(self, args: dict[str, Any]) -> dict[str, Any]:
        svc = self.need_service()
        try:
            key = parse_public_key(str(args.get("key", "")))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        name = str(args.get("name") or "").strip() or "manager"
        added = svc.authorized.add(key, name)
        svc.log.info(f"SSH key {fingerprint(key)} of {name} "
                     f"{'installed' if added else 'already installed'} from a key file")
        return {"text": f"Key {fingerprint(key)} ({name}) "
                        f"{'authorized' if added else 'was already authorized'}."}

    @command("ssh.show")
    async def show(self, args: dict[str, Any]) -> dict[str, Any]:
        svc = self.need_service()
        keys = [{"fingerprint": fingerprint(k), "name": c} for k, c in svc.authorized.entries()]
        return {"data": {"address": svc.host, "port": svc.port,
                         "fingerprint": svc.fingerprint, "authorized_keys": keys}}


class ManagerLinkCommands(CommandSet):
    """The manager's `gateway add|list|remove|test|pubkey`.

    *config* gives the running configuration, *client* is the manager's SSH
    client (its pins and key), *locator* where each added gateway listens,
    and *wake* wakes the release queue once a gateway's address may have
    changed.
    """

    def __init__(self, config: Callable[[], Config], client: SshClient,
                 locator: GatewayLocator, wake: Callable[[], None]) -> None:
        self.config = config
        self.client = client
        self.locator = locator
        self.wake = wake

    @command("gateway.add")
    async def add(self, args: dict[str, Any]) -> dict[str, Any]:
        client, locator = self.client, self.locator
        cfg = self.config()
        name = str(args.get("name") or "")
        record = cfg.pvo.gateway(name)
        if record is None:
            raise CommandError(f"gateway {name} is not in <pvo_quarantines><gateways>; "
                               "add its record there first")
        host = str(args.get("host") or record.address)
        port = int(args.get("ssh_port") or record.ssh_port or 22)
        try:
            result = await client.add(record.hostname, host, port,
                                      token=args.get("token") or None,
                                      replace=bool(args.get("replace")),
                                      expect_fingerprint=args.get("fingerprint") or None)
        except SshFault as exc:
            locator.log.critical(f"SSH add of gateway {record.hostname} failed: {exc}")
            raise CommandError(f"gateway add {record.hostname} failed: {exc}") from None
        locator.reset(record.hostname)
        self.wake()
        how = ("first use: pinned" if result["first_use"] else
               "replaced the pinned key" if result["replaced"] else "unchanged")
        where = result["listener"]
        text = (f"Gateway {record.hostname} at {host} port {port}\n"
                f"Host key fingerprint: {result['fingerprint']} ({how})\n"
                + ("The manager's key was installed with the one-time token.\n"
                   if result["key_installed"] else "")
                + f"PVO listener: interface {where['interface']} ({where['address']}) "
                  f"port {where['port']}")
        locator.log.info(f"SSH gateway {record.hostname} added at {host} port {port}, host key "
                         f"{result['fingerprint']} ({how})")
        return {"text": text, "data": result}

    @command("gateway.list")
    async def list_(self, args: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config()
        pins = self.client.pins.all()
        rows = []
        for g in cfg.pvo.gateways:
            pin = pins.get(g.hostname.lower())
            cached = self.locator.cached(g.hostname)
            rows.append({"name": g.hostname, "cpq_address": g.address, "cpq_port": g.cpq_port,
                         "ssh": None if pin is None else f"{pin.host}:{pin.port}",
                         "fingerprint": None if pin is None else pin.fingerprint,
                         "looked_up": None if cached is None else f"{cached[0]}:{cached[1]}",
                         "fault": self.locator.fault(g.hostname)})
        return {"data": {"gateways": rows}}

    @command("gateway.remove")
    async def remove(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args.get("name") or "")
        if not self.client.pins.remove(name):
            raise CommandError(f"gateway {name} has no SSH pin")
        self.locator.forget(name)
        return {"text": f"Gateway {name}: SSH pin removed; releases use the configured "
                        "address."}

    @command("gateway.test")
    async def test(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args.get("name") or "")
        if not self.locator.enrolled(name):
            raise CommandError(f"gateway {name} has not been added (gateway add)")
        try:
            host, port = await self.locator.lookup_now(name)
        except SshFault as exc:
            raise CommandError(f"SSH lookup of {name} failed: {exc}") from None
        return {"text": f"Gateway {name}: PVO listener at {host} port {port}."}

    @command("gateway.pubkey")
    async def pubkey(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"text": public_line(self.client.key, self.client.hostname)}
