"""Custom quarantines created, edited and deleted by the appliance (the console's PVO
Quarantines page, the `quarantine.add|edit|remove` operator commands).

Where such a change lives: in the configuration file itself, the one source
of the manager's quarantines, so that it survives a restart and a `reload`
and never disagrees with the XML. One change is: the `<quarantine>`
element rewritten in the file's text (`config.writer`: the rest of the file
byte for byte), the new text validated exactly as `pvoq config check` would
(loader, ranges, certificates) plus the quarantine rules of
`quarantine.settings`, the file replaced atomically, then the appliance's
`reload`: the same path as an operator's edit and `pvoq cli reload`.
Deleting a quarantine that holds messages applies its default action to them
(`QuarantineService.apply_deleted_quarantines`, run by the reload).

A refusal is a `DefinitionError` naming the form field (`retention`,
`name`...) when the problem is in the quarantine being changed, else the
file's own field and line. A change is refused when the file changed since
the caller read it (`version`), so that two administrators, or an editor and
the page, never overwrite each other unseen. Changes are serialized.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from pvoq.admin.protocol import CommandError, Peer
from pvoq.admin.registry import CommandSet, command
from pvoq.config import writer
from pvoq.config.errors import ConfigError
from pvoq.config.model import RETENTION_DEFAULT, Config, QuarantineDefinition
from pvoq.errors import Conflict, Invalid, NotFound
from pvoq.quarantine.roles import Caller, check
from pvoq.quarantine.settings import (
    UNITS,
    EarlyRelease,
    QuarantineSettings,
    SettingsError,
    merge_settings,
)
from pvoq.quarantine.states import BUILTINS

NAME_MAX = 64
"""The longest quarantine name the store keeps (`quarantines.name`)."""

_BOOLEAN = {"true": True, "on": True, "1": True, "yes": True,
            "false": False, "off": False, "0": False, "no": False, "": False}


class DefinitionError(Invalid):
    """A quarantine change refused; *field* is the form field at fault (None: elsewhere
    in the file, whose own field and line the message names)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message if field is None else f"{field}: {message}")
        self.message = message
        self.field = field


class DefinitionConflict(DefinitionError, Conflict):
    """The file changed since the caller read it, or the name is taken."""

    status = Conflict.status


class NoSuchQuarantine(DefinitionError, NotFound):
    """No quarantine of that name."""

    status = NotFound.status


@dataclass(frozen=True)
class QuarantineForm:
    """A quarantine's settings as a form (or `pvoq cli`) gives them: text as typed,
    written into the file as such so that the loader judges it."""

    name: str
    retention: str = f"{RETENTION_DEFAULT[0]:g}"
    retention_unit: str = RETENTION_DEFAULT[1]
    default_action: str = "delete"
    free_up_space: bool = False
    subject_tag: str = ""
    subject_position: str = "prepend"
    x_header: str = ""
    strip_attachments: bool = False

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> QuarantineForm:
        """From JSON arguments or form values; an unknown key is refused (a misspelt
        field must not silently keep its old value)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise DefinitionError(f"unknown field {unknown[0]!r}; the fields are "
                                  f"{', '.join(known)}", unknown[0])
        values: dict[str, Any] = {}
        for key, raw in args.items():
            if known[key].type == "bool":
                if isinstance(raw, bool):
                    values[key] = raw
                elif str(raw).strip().lower() in _BOOLEAN:
                    values[key] = _BOOLEAN[str(raw).strip().lower()]
                else:
                    raise DefinitionError(f"not true or false: {str(raw)[:40]!r}", key)
            else:
                values[key] = str(raw if raw is not None else "").strip()
        if "name" not in values:
            raise DefinitionError("missing", "name")
        return cls(**values)

    @classmethod
    def of(cls, settings: QuarantineSettings) -> QuarantineForm:
        """The form showing *settings* (retention in the largest unit it divides)."""
        amount, unit = split_retention(settings.retention_s)
        er = settings.early_release
        return cls(settings.name, amount, unit, str(settings.default_action), settings.overflow,
                   er.subject_tag, er.subject_position, er.x_header, er.strip_attachments)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check_name(self) -> None:
        if not self.name:
            raise DefinitionError("a quarantine needs a name", "name")
        if len(self.name) > NAME_MAX:
            raise DefinitionError(f"at most {NAME_MAX} characters, not {len(self.name)}",
                                  "name")

    def xml(self, indent: str, step: str) -> str:
        """The `<quarantine>` element, each line starting with *indent*, nested by *step*."""
        def text(key: str) -> str:
            return writer.text_value(str(getattr(self, key)), key)

        inner, deeper = indent + step, indent + step + step
        lines = [f"{indent}<quarantine>",
                 f"{inner}<name>{text('name')}</name>",
                 f"{inner}<retention>{text('retention')}</retention>",
                 f"{inner}<retention_unit>{text('retention_unit')}</retention_unit>",
                 f"{inner}<default_action>{text('default_action')}</default_action>",
                 f"{inner}<free_up_space>{str(self.free_up_space).lower()}</free_up_space>"]
        early = [(tag, text(tag)) for tag in ("subject_tag", "x_header") if getattr(self, tag)]
        if self.subject_position != "prepend" or early:
            early.append(("subject_position", text("subject_position")))
        if self.strip_attachments:
            early.append(("strip_attachments", "true"))
        if early:
            lines.append(f"{inner}<early_release>")
            lines += [f"{deeper}<{tag}>{value}</{tag}>" for tag, value in early]
            lines.append(f"{inner}</early_release>")
        lines.append(f"{indent}</quarantine>")
        return "\n".join(lines) + "\n"


def split_retention(seconds: float) -> tuple[str, str]:
    """(amount, unit) for *seconds*: days, hours or minutes, the largest that divides it."""
    for unit in ("days", "hours", "minutes"):
        amount = seconds / UNITS[unit]
        if amount >= 1 and float(amount).is_integer():
            return f"{amount:g}", unit
    return f"{seconds / UNITS['minutes']:g}", "minutes"


def effective(config: Config) -> dict[str, QuarantineSettings]:
    """The quarantines *config* gives: built-ins, overridden or added to (as the manager
    computes them; `SettingsError` for what `quarantine.settings` refuses)."""
    return merge_settings(
        QuarantineSettings(d.name, d.retention_seconds, d.default_action, d.free_up_space,
                           EarlyRelease(d.subject_tag, d.subject_position, d.x_header,
                                        d.strip_attachments))
        for d in config.quarantines)


# -- the file's text -------------------------------------------------------------------
@dataclass(frozen=True)
class Edit:
    """One change's result: the new text, and where our element is in it."""

    data: bytes
    element_path: str | None      # the loader's path of the changed <quarantine>


def _section(data: bytes) -> tuple[writer.Element, writer.Element | None]:
    root = writer.elements(data)
    if root.tag != "config":
        raise DefinitionError(f"the root element is <{root.tag}>, not <config>")
    if root.first("cluster") is not None:
        raise DefinitionError("this configuration is clustered (<cluster>): edit its "
                              "<quarantines> in the file")
    sections = root.all("quarantines")
    if len(sections) > 1:
        raise DefinitionError("<quarantines> is given twice in the file")
    return root, (sections[0] if sections else None)


def _name_of(node: writer.Element) -> str:
    found = node.first("name")
    return "" if found is None else found.text.strip()


def _path(index: int) -> str:
    return "config.quarantines.quarantine" + ("" if index == 0 else f"[{index + 1}]")


def apply_change(data: bytes, op: str, name: str, form: QuarantineForm | None) -> Edit:
    """The file's text *data* with quarantine *name* added (op "add"), replaced ("edit")
    or removed ("remove"), the rest untouched."""
    try:
        return _apply(data, op, name, form)
    except writer.ConfigEditError as exc:
        field = exc.field if exc.field in _FORM_FIELD else None
        raise DefinitionError(exc.message if field else str(exc), field) from None


def _apply(data: bytes, op: str, name: str, form: QuarantineForm | None) -> Edit:
    root, section = _section(data)
    step = writer.indent_step(data, root)
    listed = [] if section is None else section.all("quarantine")
    index = next((i for i, q in enumerate(listed) if _name_of(q) == name), None)
    if op == "remove":
        if index is None:
            raise NoSuchQuarantine(f"no quarantine {name!r} in the configuration", "name")
        return Edit(writer.remove_element(data, listed[index]), None)
    assert form is not None
    if op == "edit" and index is not None:
        node = listed[index]
        indent = writer.line_indent(data, node.start)
        new = form.xml(indent, step).rstrip("\n").removeprefix(indent)
        return Edit(writer.splice(data, node.start, node.end, new), _path(index))
    if section is None:
        indent = writer.line_indent(data, root.children[-1].start) if root.children else step
        block = (f"{indent}<quarantines>\n{form.xml(indent + step, step)}{indent}"
                 f"</quarantines>\n")
        begin = data.rfind(b"\n", 0, root.close) + 1
        if data[begin:root.close].strip(b" \t") == b"":
            return Edit(data[:begin] + block.encode("utf-8") + data[begin:], _path(0))
        return Edit(writer.splice(data, root.close, root.close, "\n" + block), _path(0))
    indent = writer.line_indent(data, section.start) + step
    return Edit(writer.insert_child(data, section, form.xml(indent, step), step),
                _path(len(listed)))


_FORM_FIELD = {"retention": "retention", "retention_unit": "retention_unit",
               "default_action": "default_action", "free_up_space": "free_up_space",
               "subject_tag": "subject_tag", "subject_position": "subject_position",
               "x_header": "x_header", "strip_attachments": "strip_attachments",
               "name": "name", "early_release": "default_action"}


def form_error(exc: ConfigError, element_path: str | None) -> DefinitionError:
    """*exc* as a refusal of the form: the form field it names when it is about the
    element changed, else the file's field and line as the loader gives them."""
    where = exc.field
    if element_path is not None and (where == element_path
                                      or where.startswith(element_path + ".")):
        tail = where[len(element_path):].lstrip(".").split(".")[-1]
        tail = re.sub(r"\[\d+\]$", "", tail)
        return DefinitionError(exc.message, _FORM_FIELD.get(tail, "name"))
    if where == "config.quarantines" and "free up space" in exc.message:
        return DefinitionError(exc.message, "free_up_space")
    if where.startswith("config.quarantines.quarantine") and "duplicate" in exc.message:
        return DefinitionConflict(exc.message, "name")
    return DefinitionError(f"the configuration file would not load: {exc}")


def _settings_field(message: str) -> str | None:
    for key in ("default action", "retention", "subject position", "free up space",
                "early-release"):
        if key in message:
            return {"default action": "default_action", "retention": "retention",
                    "subject position": "subject_position", "free up space": "free_up_space",
                    "early-release": "default_action"}[key]
    return None


def validate(path: Path, edit: Edit) -> Config:
    """The edited file as the appliance would load it (see `writer.check_text`), with
    the quarantine rules of `quarantine.settings` checked too."""
    try:
        config = writer.check_text(path, edit.data)
        effective(config)
    except ConfigError as exc:
        raise form_error(exc, edit.element_path) from None
    except SettingsError as exc:
        raise DefinitionError(str(exc), _settings_field(str(exc))) from None
    return config


def _configured(config: Config, name: str) -> QuarantineDefinition | None:
    return next((d for d in config.quarantines if d.name == name), None)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DefinitionError(f"cannot read the configuration file {path}: "
                              f"{exc.strerror or exc}") from None


# -- the operator commands ---------------------------------------------------------------
class QuarantineConfigCommands(CommandSet):
    """`quarantine.add`, `quarantine.edit`, `quarantine.remove`: change the configuration
    file's `<quarantines>` and reload it; `quarantine.definitions`: the quarantines with
    their form values and the file's version.

    *config* gives the running configuration (its `path` is the file edited),
    *reload* is the appliance's `reload`, *record* writes the audit trail
    (actor, origin, action, detail), *held* counts a quarantine's messages and
    *log* writes mail_logs.
    """

    def __init__(self, config: Callable[[], Config], reload: Callable[[], Awaitable[str]],
                 record: Callable[[str, str, str, dict[str, Any]], Any],
                 held: Callable[[str], int], log: Callable[[str], None]) -> None:
        self.config = config
        self.reload = reload
        self.record = record
        self.held = held
        self.log = log
        self._lock = asyncio.Lock()

    @command("quarantine.definitions")
    async def definitions(self, args: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config()
        data = _read(cfg.path)
        rows = []
        for name, s in sorted(effective(cfg).items(), key=lambda kv: (not kv[1].builtin,
                                                                        kv[0].lower())):
            rows.append({"name": name, "builtin": s.builtin,
                         "in_file": _configured(cfg, name) is not None,
                         "retention_s": s.retention_s,
                         "form": QuarantineForm.of(s).as_dict()})
        return {"data": {"quarantines": rows, "version": writer.version(data),
                         "path": str(cfg.path)}}

    @command("quarantine.add", peer=True)
    async def add(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return await self._change("add", args, peer)

    @command("quarantine.edit", peer=True)
    async def edit(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return await self._change("edit", args, peer)

    @command("quarantine.remove", peer=True)
    async def remove(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return await self._change("remove", args, peer)

    async def _change(self, op: str, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        check(Caller(peer.actor, peer.origin, peer.role, peer.quarantines), "configure")
        args = dict(args)
        expected = args.pop("version", None)
        async with self._lock:
            cfg = self.config()
            path = cfg.path
            data = _read(path)
            if expected is not None and str(expected) != writer.version(data):
                raise DefinitionConflict("the configuration file changed since it was read; "
                                         "nothing was changed (show the page again)")
            known = effective(cfg)
            form: QuarantineForm | None = None
            if op == "remove":
                name = str(args.pop("name", "") or "").strip()
                if args:
                    raise DefinitionError(f"unknown field {sorted(args)[0]!r}")
                if name in BUILTINS:
                    raise DefinitionError(f"{name} is built in: it cannot be deleted", "name")
                if name not in known:
                    raise NoSuchQuarantine(f"no quarantine {name!r}", "name")
            else:
                form = QuarantineForm.from_args(args)
                form.check_name()
                name = form.name
                if op == "add" and name in known:
                    raise DefinitionConflict(f"a quarantine named {name!r} already exists",
                                             "name")
                if op == "edit" and name not in known:
                    raise NoSuchQuarantine(f"no quarantine {name!r}", "name")
            held = self.held(name) if op == "remove" else 0
            edit = apply_change(data, op, name, form)
            try:
                validate(path, edit)
                writer.replace_file(path, edit.data, expected=data)
            except OSError as exc:
                raise DefinitionError(f"cannot write the configuration file {path}: "
                                      f"{exc.strerror or exc}; nothing was changed") from None
            try:
                await self.reload()
            except CommandError as exc:
                writer.replace_file(path, data, expected=edit.data)
                raise DefinitionError(f"the reload refused the new file, the old one is "
                                      f"back: {exc}") from None
            detail: dict[str, Any] = {"quarantine": name, "file": str(path)}
            if form is not None:
                detail["settings"] = form.as_dict()
            if op == "remove":
                detail["held"] = held
                detail["default_action"] = str(known[name].default_action)
            self.record(peer.actor, peer.origin, f"quarantine-{op}", detail)
        verb = {"add": "created", "edit": "changed", "remove": "deleted"}[op]
        self.log(f"Quarantine {name!r} {verb} by {peer.actor} ({peer.origin}); "
                 f"configuration written to {path} and reloaded")
        text = f"Quarantine {name} {verb}; {path} written and reloaded."
        if op == "remove" and held:
            text += (f" Its {held} messages got its default action "
                     f"({known[name].default_action}).")
        return {"text": text, "data": {"name": name, "op": op, "held": held}}
