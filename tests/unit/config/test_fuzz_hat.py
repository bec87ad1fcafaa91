"""Fuzzing the HAT grammar (pvoq.config.hat) with Hypothesis.

Any text gives a `Hat` or a `ConfigError` (the module's documented error),
never another exception, within the deadline; a parsed HAT then decides for
any address and hostname without raising.
"""

from __future__ import annotations

from configfuzz import budget
from hypothesis import given
from hypothesis import strategies as st

from pvoq.config.errors import ConfigError
from pvoq.config.hat import ACTIONS, match_hat, parse_hat

POLICY = st.sampled_from(["$ACCEPTED", "$RELAYED", "$BLOCKED", "$THROTTLED", "$X", "$", "$1"])
PARAM = st.tuples(
    st.sampled_from(["max_msg_size", "max_rcpts_per_msg", "max_concurrency", "max_conn_per_ip",
                     "tls", "greeting", "x", "max_msg_size"]),
    st.one_of(st.sampled_from(["10", "0", "-1", "1" + "0" * 30, "9" * 5000, "nan", "required", "off",
                               '"quoted value"', '"unterminated', "٣", "10k"]),
              st.text(max_size=12)))
ACTION_LINE = st.builds(
    lambda action, params, close: f"  {action} {{" + ", ".join(
        f"{k} = {v}" for k, v in params) + ("}" if close else ""),
    st.sampled_from([*sorted(ACTIONS), "accept", "NOPE", ""]), st.lists(PARAM, max_size=3),
    st.booleans())
MEMBER = st.one_of(
    st.sampled_from(["10.1.2.3", "10.1.2.0/24", "10.1.2.3-9", "::1", "2001:db8::/32",
                     "mail.example.com", ".example.com", "ALL", "256.1.1.1", "10.1.2.0/33",
                     "10.1.2.9-3", "-bad-", "a..b", "[::1]", "1.2.3.4/0"]),
    st.ip_addresses().map(str), st.text(max_size=20))
GROUP_HEADER = st.one_of(st.sampled_from(["RELAYLIST:", "ALLOWLIST:", "ALL", "ALL:", "x:"]),
                         st.text(max_size=10).map(lambda t: f"{t}:"))
POLICY_LINE = st.builds(lambda p, c: f"    {p}" + (f" ({c})" if c is not None else ""),
                        POLICY, st.none() | st.text(max_size=15))
LINE = st.one_of(POLICY, ACTION_LINE, GROUP_HEADER, MEMBER.map(lambda m: f"  {m}"), POLICY_LINE,
                 st.sampled_from(["", "   ", "# comment", "}", "{", "  }", "\t$RELAYED"]),
                 st.text(max_size=30))
HAT_TEXT = st.one_of(st.lists(LINE, max_size=25).map("\n".join), st.text(max_size=400))


@budget(400)
@given(text=HAT_TEXT, first_line=st.integers(min_value=1, max_value=10_000),
       ip=st.ip_addresses().map(str), host=st.none() | st.text(max_size=30))
def test_any_text_is_a_hat_or_a_config_error(text: str, first_line: int, ip: str,
                                             host: str | None) -> None:
    try:
        hat = parse_hat(text, first_line=first_line)
    except ConfigError as exc:
        assert exc.line is None or exc.line >= first_line
        assert str(exc)
        return
    decision = match_hat(hat, ip, host)
    assert decision.policy.action in ACTIONS
