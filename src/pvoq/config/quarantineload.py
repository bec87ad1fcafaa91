"""Read `<quarantines>`, `<quarantine_store>` and `<api>` (a manager's, or a gateway's local
quarantines) from a configuration file."""

from __future__ import annotations

from typing import Any

from pvoq.config import convert
from pvoq.config.errors import ConfigError
from pvoq.config.filterlang import BUILTIN_QUARANTINES
from pvoq.config.model import (
    RETENTION_DEFAULT,
    ApiSettings,
    ApiToken,
    QuarantineDefinition,
    QuarantineStoreSettings,
    value_range,
)
from pvoq.config.xmltree import Node

MAX_QUARANTINE_NAME = 64  # the quarantine store's name columns

_RETENTION_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}


def parse_quarantines(root: Node) -> dict[str, Any]:
    """`<quarantines>`, `<quarantine_store>` and `<api>` of a manager."""
    definitions: list[QuarantineDefinition] = []
    section = root.first("quarantines")
    for q in ([] if section is None else section.all("quarantine")):
        fields = convert.Fields(q, QuarantineDefinition)
        name = fields("name", str)
        if not 0 < len(name) <= MAX_QUARANTINE_NAME:
            raise ConfigError(f"quarantine name {name[:80]!r}: 1 to {MAX_QUARANTINE_NAME} "
                              "characters", field=f"{q.path}.name", line=q.line)
        if any(d.name == name for d in definitions):
            raise ConfigError(f"duplicate quarantine {name!r}", field=q.path, line=q.line)
        unit = convert.value(q, "retention_unit", convert.choice(*_RETENTION_UNITS), RETENTION_DEFAULT[1])
        amount = convert.value(q, "retention", convert.seconds, RETENTION_DEFAULT[0])
        retention = amount * _RETENTION_UNITS[unit]
        bounds = value_range(QuarantineDefinition, "retention_seconds")
        assert bounds is not None
        if not bounds[0] <= retention <= bounds[1]:
            where = q.first("retention") or q
            raise ConfigError(f"{amount:g} {unit} is out of range (a retention "
                              f"{convert.describe_range(bounds)} seconds)",
                              field=where.path, line=where.line)
        early = q.first("early_release")
        definitions.append(QuarantineDefinition(
            name=name,
            retention_seconds=retention,
            default_action=fields("default_action", convert.choice("release", "delete")),
            free_up_space=fields("free_up_space", convert.boolean),
            subject_tag=fields("subject_tag", str),
            subject_position=fields("subject_position", convert.choice("prepend", "append")),
            x_header=fields("x_header", str),
            strip_attachments=fields("strip_attachments", convert.boolean),
        ))
        last = definitions[-1]
        if early is not None and last.default_action != "release" and (
                last.subject_tag or last.x_header or last.strip_attachments):
            raise ConfigError("early-release options need default_action release",
                              field=early.path, line=early.line)
    frees: dict[str, bool] = dict.fromkeys(BUILTIN_QUARANTINES, True)
    frees.update((d.name, d.free_up_space) for d in definitions)
    if not any(frees.values()):
        raise ConfigError("at least one quarantine must free up space on overflow",
                          field=section.path if section else "config.quarantines",
                          line=section.line if section else 0)
    store = convert.Fields(root.first("quarantine_store"), QuarantineStoreSettings)
    store_settings = QuarantineStoreSettings(
        database_url=store("database_url", str),
        bodies=store("bodies", convert.choice("disk", "database")),
        inline_body_max_kb=store("inline_body_max_kb", convert.non_negative),
        max_size_mb=store("max_size_mb", convert.non_negative),
        expiry_interval_seconds=store("expiry_interval_seconds", convert.seconds),
        node_name=store("node_name", str),
    )
    api = root.first("api")
    api_settings = ApiSettings()
    if api is not None:
        tokens: list[ApiToken] = []
        for t in api.all("token"):
            granted = convert.value(t, "quarantines", str, "")
            token = convert.Fields(t, ApiToken)
            tokens.append(ApiToken(
                token=token("token", str),
                user=token("user", str),
                role=token("role", convert.choice("admin", "operator", "helpdesk", "read-only",
                                           "custom")),
                quarantines=tuple(x.strip() for x in granted.split(",") if x.strip())
                or None))
            if tokens[-1].role == "custom" and tokens[-1].quarantines is None:
                raise ConfigError("a custom role needs <quarantines>", field=t.path,
                                  line=t.line)
            if any(x.token == tokens[-1].token for x in tokens[:-1]):
                raise ConfigError("this token value is already given to another <token>",
                                  field=f"{t.path}.value", line=t.line)
        settings = convert.Fields(api, ApiSettings)
        api_settings = ApiSettings(
            enabled=settings("enabled", convert.boolean),
            address=settings("address", convert.ip),
            port=settings("port", convert.port),
            tokens=tuple(tokens),
            max_body_bytes=settings("max_body_bytes", convert.positive_int),
            max_mids=settings("max_mids", convert.positive_int))
    return {"quarantines": tuple(definitions), "quarantine_store": store_settings,
            "api": api_settings}
