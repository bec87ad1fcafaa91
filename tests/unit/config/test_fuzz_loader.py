"""Fuzzing the configuration loader (pvoq.config.loader) with Hypothesis.

Inputs are the real configurations `pvoq init` writes (`config.template`),
mutated (a value replaced by a hostile one, an element repeated, moved or
misspelt, a slice cut out, text inserted), and random documents built from
the template's own element names. Any of them gives a `Config` or a
`ConfigError` naming the file (the loader's documented error), never another
exception, within the deadline; `data_dir_of` never raises either.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from configfuzz import budget
from hypothesis import given
from hypothesis import strategies as st

from pvoq.config.errors import ConfigError
from pvoq.config.loader import data_dir_of, load_config
from pvoq.config.model import ROLE_GATEWAY, ROLE_MANAGER
from pvoq.config.template import ApplianceSpec, render

TEMPLATES = (
    render(ApplianceSpec(role=ROLE_GATEWAY, hostname="gw1.example.com", serial="GW1",
                         ip="10.1.2.1", smtp_port=2525, manager_address="10.1.2.3",
                         routes=[("example.com", "10.9.0.5:2526")], ssh_port=2222,
                         outbreak_urls=["bad.example/phish"], clamd_socket="clamd.sock")),
    render(ApplianceSpec(role=ROLE_MANAGER, hostname="mgr.example.com", serial="MGR",
                         ip="10.1.2.3", gateways=[("gw1.example.com", "10.1.2.1", 7025),
                                                  ("gw2.example.com", "10.1.2.2", 7026)])),
)
LEAF = re.compile(r"<([a-z_]+)>([^<]*)</\1>")
TAGS = sorted({m.group(1) for t in TEMPLATES for m in re.finditer(r"<([a-z_]+)>", t)}
              | {"quarantine", "quarantines", "quarantine_store", "api", "token", "value",
                 "retention", "retention_unit", "scan_pipeline", "cluster", "machine",
                 "settings", "timeout_seconds", "max_message_size", "unknown_element"})
HOSTILE = st.one_of(st.sampled_from([
    "nan", "NaN", "inf", "-inf", "1e400", "-1", "0", "0.0", "1" + "0" * 27, "9" * 5000, "",
    "  ", "٣", "²", "1_000", "0x10", "true", "no", "gateway", "manager", "10.0.0.1", "::1",
    "256.0.0.1", "a" * 300, "localhost:99999", "[::1]:25", "ALL", "../../etc/passwd",
    "/nonexistent/file", "$RELAYED\n  RELAY {}\nALL\n  $RELAYED", "Policy", "minutes",
    "(?P<x", "x: if true { drop(); }", "release", "disk", "postgresql+psycopg://x/y"]),
    st.text(max_size=40))


@pytest.fixture(scope="module")
def directory() -> Iterator[Path]:
    """Where each example's file is written, with the (empty) certificate files it names."""
    with tempfile.TemporaryDirectory(prefix="pvoq-fuzz-") as name:
        base = Path(name)
        (base / "certs").mkdir()
        for cert in ("cpq-ca.pem", "cpq.pem", "cpq.key"):
            (base / "certs" / cert).touch()
        yield base


def check(directory: Path, text: str | bytes) -> None:
    """Load *text*: a Config or a ConfigError naming the file and a line inside it."""
    path = directory / "config.xml"
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.path == str(path.resolve())
        assert exc.line is None or 0 <= exc.line <= max(1, data.count(b"\n") + 1), str(exc)
        assert str(exc).startswith(f"{exc.path}")
    found = data_dir_of(path)
    assert found is None or isinstance(found, Path)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A template with one to four mutations."""
    text = draw(st.sampled_from(TEMPLATES))
    for _ in range(draw(st.integers(1, 4))):
        leaves = list(LEAF.finditer(text))
        kind = draw(st.sampled_from(["value", "raw", "repeat", "cut", "insert", "element",
                                     "rename", "drop"]))
        if kind in ("value", "raw", "repeat", "rename", "drop") and leaves:
            leaf = leaves[draw(st.integers(0, len(leaves) - 1))]
            tag, start, end = leaf.group(1), leaf.start(), leaf.end()
            if kind == "value":
                new = f"<{tag}>{escape(draw(HOSTILE))}</{tag}>"
            elif kind == "raw":
                new = f"<{tag}>{draw(HOSTILE)}</{tag}>"
            elif kind == "repeat":
                new = leaf.group(0) + "\n" + f"<{tag}>{escape(draw(HOSTILE))}</{tag}>"
            elif kind == "rename":
                other = draw(st.sampled_from(TAGS))
                new = f"<{other}>{leaf.group(2)}</{other}>"
            else:
                new = ""
            text = text[:start] + new + text[end:]
        elif kind == "cut":
            a = draw(st.integers(0, len(text)))
            text = text[:a] + text[a + draw(st.integers(0, 200)):]
        else:
            at = draw(st.integers(0, len(text)))
            tag = draw(st.sampled_from(TAGS))
            piece = (f"<{tag}>{escape(draw(HOSTILE))}</{tag}>" if kind == "element"
                     else draw(st.text(max_size=20)))
            text = text[:at] + piece + text[at:]
    return text


def element(tags: list[str]) -> st.SearchStrategy[str]:
    leaf = st.builds(lambda t, v: f"<{t}>{escape(v)}</{t}>", st.sampled_from(tags), HOSTILE)
    return st.recursive(leaf, lambda inner: st.builds(
        lambda t, kids: f"<{t}>" + "".join(kids) + f"</{t}>", st.sampled_from(tags),
        st.lists(inner, max_size=5)), max_leaves=15)


@budget(300)
@given(text=mutated())
def test_mutated_templates_load_or_give_a_config_error(directory: Path, text: str) -> None:
    check(directory, text)


@budget(60)
@given(body=st.lists(element(TAGS), max_size=8))
def test_random_documents_of_the_template_elements(directory: Path, body: list[str]) -> None:
    check(directory, "<config>" + "\n".join(body) + "</config>")


@budget(100)
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode()),
       template=st.sampled_from(TEMPLATES), at=st.integers(0, 5000))
def test_bytes_spliced_into_a_template(directory: Path, data: bytes, template: str,
                                       at: int) -> None:
    raw = template.encode()
    check(directory, raw[:at] + data + raw[at:])


def test_templates_themselves_load(directory: Path) -> None:
    """The fuzzing starts from valid files (else it would test only the first error)."""
    for text in TEMPLATES:
        path = directory / "config.xml"
        path.write_text(text)
        assert load_config(path).hostname.endswith("example.com")
