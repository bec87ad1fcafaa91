"""Read the scanning sections of a configuration file into `ScanSettings`.

`<message_filters>`, `<content_filters>` (named filters and rules in the
filter language), `<policy_quarantines>`, `<mail_policies>`, `<antivirus>`,
`<outbreak_filters>` and the scan limits; a filter-language error names the
file line and column.
"""

from __future__ import annotations

import re
from pathlib import Path

from pvoq.config import convert
from pvoq.config.errors import ConfigError
from pvoq.config.filterlang import BUILTIN_QUARANTINES, Filter, FilterSyntaxError, parse_filters
from pvoq.config.loadcommon import file_path
from pvoq.config.model import (
    UNSCANNABLE_ACTIONS,
    AntivirusSettings,
    ContentFilter,
    MailPolicy,
    OutbreakSettings,
    ScanSettings,
)
from pvoq.config.xmltree import Node


def parse_scan(root: Node, base: Path) -> ScanSettings:
    named = root.first("policy_quarantines")
    custom = () if named is None else tuple(
        q.text.strip() for q in named.all("quarantine") if q.text.strip())
    quarantines = (*BUILTIN_QUARANTINES, *custom)
    filters: list[ContentFilter] = []
    section = root.first("content_filters")
    for f in ([] if section is None else section.all("content_filter")):
        fields = convert.Fields(f, ContentFilter)
        flt = ContentFilter(
            name=fields("name", str),
            header=fields("header", str),
            pattern=fields("pattern", _regex),
            quarantine=fields("quarantine", str),
        )
        if flt.quarantine.lower() not in {q.lower() for q in quarantines}:
            where = f.first("quarantine") or f
            raise ConfigError(f"unknown quarantine {flt.quarantine!r} (known: "
                              f"{', '.join(quarantines)})", field=where.path,
                              line=where.line)
        filters.append(flt)
    rules_node = None if section is None else section.first("rules")
    av = root.first("antivirus")
    outbreak = root.first("outbreak_filters")
    urls = () if outbreak is None else tuple(
        u.text.strip().lower() for u in outbreak.all("url") if u.text.strip())
    fields = convert.Fields(root, ScanSettings)
    return ScanSettings(
        content_filters=tuple(filters),
        antivirus_enabled=fields("antivirus_enabled", convert.boolean),
        outbreak_enabled=fields("outbreak_enabled", convert.boolean),
        outbreak_urls=urls,
        message_filters=_filter_text(root.first("message_filters"), quarantines),
        content_filter_rules=_filter_text(rules_node, quarantines),
        antivirus=_antivirus(av, base),
        outbreak=_outbreak(outbreak, base),
        quarantines=quarantines,
        stage_timeout_seconds=fields("stage_timeout_seconds", convert.seconds),
        retry_seconds=fields("retry_seconds", convert.seconds),
        processes=fields("processes", convert.positive_int),
        max_mime_depth=fields("max_mime_depth", convert.positive_int),
        max_mime_parts=fields("max_mime_parts", convert.positive_int),
        max_headers=fields("max_headers", convert.positive_int),
        max_temporary_failures=fields("max_temporary_failures", convert.positive_int),
        policies=_mail_policies(root, quarantines),
    )

def _mail_policies(root: Node, quarantines: tuple[str, ...]) -> tuple[MailPolicy, ...]:
    section = root.first("mail_policies")
    result: list[MailPolicy] = []
    for node in ([] if section is None else section.all("policy")):
        fields = convert.Fields(node, MailPolicy)
        name = fields("name", str)
        if name.upper() == "DEFAULT" or any(p.name == name for p in result):
            raise ConfigError(f"duplicate or reserved policy name {name!r}",
                              field=node.path, line=node.line)
        recipients = tuple(_regex_node(r) for r in node.all("recipient"))
        if not recipients:
            raise node.error("a mail policy needs at least one <recipient> (a regex)")
        result.append(MailPolicy(
            name=name, recipients=recipients,
            antivirus_enabled=fields("antivirus_enabled", convert.boolean),
            outbreak_enabled=fields("outbreak_enabled", convert.boolean),
            content_filter_rules=(None if node.first("content_filters") is None else
                                  _filter_text(node.first("content_filters"), quarantines)),
        ))
    return tuple(result)

def _antivirus(node: Node | None, base: Path) -> AntivirusSettings:
    if node is None:
        return AntivirusSettings()
    fields = convert.Fields(node, AntivirusSettings)
    socket_path = fields("clamd_socket", str)
    if socket_path and not Path(socket_path).is_absolute():
        socket_path = str(base / socket_path)
    settings = AntivirusSettings(
        clamd_socket=socket_path,
        clamd_host=fields("clamd_host", str),
        clamd_port=fields("clamd_port", convert.port),
        timeout_seconds=fields("timeout_seconds", convert.seconds),
        unscannable_action=fields("unscannable_action", convert.choice(*UNSCANNABLE_ACTIONS)),
    )
    if settings.clamd_socket and settings.clamd_host:
        where = node.first("clamd_host") or node
        raise ConfigError("set clamd_socket or clamd_host, not both", field=where.path,
                          line=where.line)
    return settings

def _outbreak(node: Node | None, base: Path) -> OutbreakSettings:
    if node is None:
        return OutbreakSettings()
    rules_file = (file_path(node, "rules_file", base, must_exist=False)
                  if node.first("rules_file") is not None else None)
    fields = convert.Fields(node, OutbreakSettings)
    return OutbreakSettings(
        rules_file=rules_file,
        quarantine_threat_level=fields("quarantine_threat_level", _threat_level),
        retention_viral_seconds=fields("retention_viral_seconds", convert.seconds),
        retention_other_seconds=fields("retention_other_seconds", convert.seconds),
        check_interval_seconds=fields("check_interval_seconds", convert.seconds),
    )



def _regex_node(node: Node) -> re.Pattern[str]:
    try:
        return re.compile(node.text.strip(), re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"bad regular expression ({exc}): {node.text.strip()!r}",
                          field=node.path, line=node.line) from None


def _threat_level(raw: str) -> int:
    if raw not in ("1", "2", "3", "4", "5"):
        raise ValueError("not a threat level (1-5)")
    return int(raw)


def _filter_text(node: Node | None, quarantines: tuple[str, ...]) -> tuple[Filter, ...]:
    """Filters in the filter language; an error names the file line and the column."""
    if node is None:
        return ()
    try:
        return tuple(parse_filters(node.text, quarantines=quarantines))
    except FilterSyntaxError as exc:
        raise ConfigError(f"column {exc.column}: {exc.message}", field=node.path,
                          line=node.line + exc.line - 1) from None


def _regex(raw: str) -> re.Pattern[str]:
    try:
        return re.compile(raw)
    except re.error as exc:
        raise ValueError(f"bad regular expression ({exc})") from None
