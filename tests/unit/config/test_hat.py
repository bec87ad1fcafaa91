"""Tests for pvoq.config.hat: HAT grammar and matching, RAT validation and matching."""

from __future__ import annotations

import dataclasses

import pytest

from pvoq.config.errors import ConfigError
from pvoq.config.hat import (
    MailFlowPolicy,
    Rat,
    RatEntry,
    SenderGroup,
    make_rat,
    match_hat,
    match_rat,
    names_hosts,
    parse_hat,
)

SEED = """
$RELAYED
  RELAY {}
$BLOCKED
  REJECT {}
RELAYLIST:
  10.1.2.3
    $RELAYED (Only select hosts can relay from this box)
ALL
  $BLOCKED (Everyone else)
"""

POLICIES = """\
$RELAYED
  RELAY {}
$ACCEPTED
  ACCEPT {}
$BLOCKED
  REJECT {}
$SKIP
  CONTINUE {}
"""


def hat_with(groups: str) -> str:
    """Return a HAT text made of the standard policies followed by *groups*."""
    return POLICIES + groups


def error_of(text: str, **kwargs: int) -> ConfigError:
    """Parse *text* expecting a ConfigError, and return it."""
    with pytest.raises(ConfigError) as info:
        parse_hat(text, **kwargs)
    return info.value


class TestSeedExample:
    def test_policies_are_parsed(self) -> None:
        """The seed HAT defines $RELAYED as RELAY and $BLOCKED as REJECT with no params."""
        hat = parse_hat(SEED)
        assert set(hat.policies) == {"$RELAYED", "$BLOCKED"}
        assert hat.policies["$RELAYED"] == MailFlowPolicy("$RELAYED", "RELAY", {})
        assert hat.policies["$BLOCKED"].action == "REJECT"
        assert dict(hat.policies["$BLOCKED"].params) == {}

    def test_groups_in_order_with_comments(self) -> None:
        """RELAYLIST (10.1.2.3 -> $RELAYED) comes before the ALL catch-all, comments unwrapped."""
        hat = parse_hat(SEED)
        relay, catch_all = hat.groups
        assert (relay.name, relay.members, relay.policy) == ("RELAYLIST", ("10.1.2.3",),
                                                             "$RELAYED")
        assert relay.comment == "Only select hosts can relay from this box"
        assert (catch_all.name, catch_all.members, catch_all.policy) == ("ALL", ("ALL",),
                                                                         "$BLOCKED")
        assert catch_all.comment == "Everyone else"

    def test_group_lines_are_file_lines(self) -> None:
        """A group's line is its header's line in the text, shifted by first_line."""
        lines = SEED.splitlines()
        hat = parse_hat(SEED, first_line=40)
        for group in hat.groups:
            header = "ALL" if group.name == "ALL" else f"{group.name}:"
            assert lines[group.line - 40] == header

    def test_text_is_kept(self) -> None:
        """The original text is kept verbatim for writing back."""
        assert parse_hat(SEED).text == SEED

    def test_relay_host_relays(self) -> None:
        """10.1.2.3 is relayed through RELAYLIST by the member that names it."""
        hat = parse_hat(SEED)
        decision = match_hat(hat, "10.1.2.3")
        assert decision.action == "RELAY"
        assert decision.policy is hat.policies["$RELAYED"]
        assert (decision.group, decision.rule) == ("RELAYLIST", "10.1.2.3")

    def test_other_host_is_blocked_by_all(self) -> None:
        """Any other host falls through to ALL and is rejected."""
        hat = parse_hat(SEED)
        decision = match_hat(hat, "10.9.9.9")
        assert decision.action == "REJECT"
        assert decision.policy is hat.policies["$BLOCKED"]
        assert (decision.group, decision.rule) == ("ALL", "ALL")

    def test_indented_block_is_dedented(self) -> None:
        """A HAT indented as a whole inside XML parses the same as the seed."""
        indented = "\n".join("    " + ln if ln else ln for ln in SEED.splitlines())
        assert parse_hat(indented).groups == parse_hat(SEED).groups

    def test_blank_and_comment_lines_ignored(self) -> None:
        """Blank lines and # comments anywhere do not change the result."""
        noisy = SEED.replace("RELAYLIST:", "# relaying hosts\n\nRELAYLIST:\n  # one host")
        hat = parse_hat(noisy)
        assert [g.members for g in hat.groups] == [("10.1.2.3",), ("ALL",)]


class TestMembers:
    def decide(self, members: str, ip: str, hostname: str | None = None) -> tuple[str, str]:
        """Match *ip* against a LIST group of *members* (-> $RELAYED) and ALL (-> $BLOCKED)."""
        hat = parse_hat(hat_with(f"LIST:\n  {members}\n  $RELAYED\nALL\n  $BLOCKED\n"))
        decision = match_hat(hat, ip, hostname)
        return decision.group, decision.rule

    def test_cidr(self) -> None:
        """An IPv4 CIDR matches addresses inside it only."""
        assert self.decide("10.0.0.0/8", "10.200.3.4") == ("LIST", "10.0.0.0/8")
        assert self.decide("10.0.0.0/8", "11.0.0.1")[0] == "ALL"

    def test_ipv6_address_and_cidr(self) -> None:
        """IPv6 addresses and prefixes match IPv6 peers, in any textual form."""
        assert self.decide("2001:db8::/32", "2001:DB8:1::5") == ("LIST", "2001:db8::/32")
        assert self.decide("2001:db8::1", "2001:0db8:0:0::1") == ("LIST", "2001:db8::1")
        assert self.decide("2001:db8::/32", "2001:db9::1")[0] == "ALL"

    def test_ipv4_mapped_ipv6_matches_ipv4_members(self) -> None:
        """An IPv4-mapped IPv6 peer matches IPv4 addresses and CIDRs."""
        assert self.decide("10.1.2.3", "::ffff:10.1.2.3") == ("LIST", "10.1.2.3")
        assert self.decide("10.0.0.0/8", "::ffff:10.9.9.9") == ("LIST", "10.0.0.0/8")

    def test_last_octet_range(self) -> None:
        """10.1.1.10-20 covers .10 to .20 inclusive and nothing else."""
        assert self.decide("10.1.1.10-20", "10.1.1.10")[0] == "LIST"
        assert self.decide("10.1.1.10-20", "10.1.1.20")[0] == "LIST"
        assert self.decide("10.1.1.10-20", "10.1.1.21")[0] == "ALL"
        assert self.decide("10.1.1.10-20", "10.1.2.15")[0] == "ALL"

    def test_full_range(self) -> None:
        """A full a-b range spans octet boundaries, inclusive at both ends."""
        rng = "10.1.1.10-10.1.2.20"
        assert self.decide(rng, "10.1.1.250") == ("LIST", rng)
        assert self.decide(rng, "10.1.2.20")[0] == "LIST"
        assert self.decide(rng, "10.1.1.9")[0] == "ALL"
        assert self.decide(rng, "10.1.2.21")[0] == "ALL"

    def test_hostname_needs_verified_name(self) -> None:
        """A hostname member matches case-insensitively, only when a hostname is given."""
        assert self.decide("mail.example.com", "192.0.2.1", "MAIL.Example.com.") == (
            "LIST", "mail.example.com")
        assert self.decide("mail.example.com", "192.0.2.1")[0] == "ALL"
        assert self.decide("mail.example.com", "192.0.2.1", "smtp.example.com")[0] == "ALL"

    def test_partial_domain_matches_subdomains_only(self) -> None:
        """.example.com matches any subdomain of example.com but not example.com itself."""
        assert self.decide(".example.com", "192.0.2.1", "a.b.example.com") == (
            "LIST", ".example.com")
        assert self.decide(".example.com", "192.0.2.1", "example.com")[0] == "ALL"
        assert self.decide(".example.com", "192.0.2.1", "badexample.com")[0] == "ALL"

    def test_several_members_on_a_line(self) -> None:
        """Members separated by commas or whitespace are kept as written, in order."""
        hat = parse_hat(hat_with("LIST:\n  10.0.0.1, 10.0.0.2 .example.org\n"
                                 "  10.0.0.3\n  $RELAYED\n"))
        assert hat.groups[0].members == ("10.0.0.1", "10.0.0.2", ".example.org", "10.0.0.3")
        assert match_hat(hat, "10.0.0.2").rule == "10.0.0.2"

    def test_all_member_matches_everything(self) -> None:
        """ALL as a member of a named group matches any host."""
        assert self.decide("ALL", "203.0.113.7") == ("LIST", "ALL")

    def test_first_matching_member_is_the_rule(self) -> None:
        """When several members match, the first one written is reported."""
        assert self.decide("10.0.0.0/8 10.1.2.3", "10.1.2.3") == ("LIST", "10.0.0.0/8")

    def test_invalid_peer_address_raises(self) -> None:
        """match_hat rejects a peer string that is not an IP address."""
        with pytest.raises(ValueError):
            self.decide("10.0.0.0/8", "not-an-ip")


class TestOrderAndDefaults:
    def test_first_group_wins(self) -> None:
        """The first group containing the host decides, even if a later one matches too."""
        hat = parse_hat(hat_with("A:\n  10.0.0.0/8\n  $ACCEPTED\nB:\n  10.1.2.3\n  $RELAYED\n"))
        decision = match_hat(hat, "10.1.2.3")
        assert (decision.group, decision.action) == ("A", "ACCEPT")

    def test_continue_skips_to_next_group(self) -> None:
        """A group whose policy is CONTINUE is passed over and matching goes on."""
        hat = parse_hat(hat_with("A:\n  10.1.2.3\n  $SKIP\nB:\n  10.0.0.0/8\n  $RELAYED\n"))
        decision = match_hat(hat, "10.1.2.3")
        assert (decision.group, decision.rule, decision.action) == ("B", "10.0.0.0/8", "RELAY")

    def test_no_match_without_all_is_implicit_reject(self) -> None:
        """With no ALL group an unmatched host gets the implicit $BLOCKED REJECT decision."""
        hat = parse_hat(hat_with("A:\n  10.1.2.3\n  $RELAYED\n"))
        decision = match_hat(hat, "192.0.2.1")
        assert decision.action == "REJECT"
        assert decision.policy == MailFlowPolicy("$BLOCKED", "REJECT", {})
        assert (decision.group, decision.rule) == ("ALL", "ALL")

    def test_empty_hat_rejects_everything(self) -> None:
        """An empty HAT parses and rejects every host."""
        hat = parse_hat("\n  \n")
        assert hat.groups == () and dict(hat.policies) == {}
        assert match_hat(hat, "10.1.2.3").action == "REJECT"

    def test_policy_line_may_precede_members(self) -> None:
        """The $POLICY line may come before the members, as AsyncOS exports write it."""
        hat = parse_hat(hat_with("A:\n  $RELAYED (first)\n  10.1.2.3\n"))
        assert hat.groups[0].members == ("10.1.2.3",)
        assert hat.groups[0].comment == "first"

    def test_group_with_no_members_matches_nothing(self) -> None:
        """A group with only a policy line is valid and never matches."""
        hat = parse_hat(hat_with("EMPTY:\n  $RELAYED\nALL\n  $ACCEPTED\n"))
        assert match_hat(hat, "10.1.2.3").group == "ALL"

    def test_sender_group_equality_ignores_matchers(self) -> None:
        """SenderGroups built directly compare equal to parsed ones and match the same."""
        hat = parse_hat(SEED)
        built = SenderGroup("RELAYLIST", ("10.1.2.3",), "$RELAYED",
                            "Only select hosts can relay from this box", hat.groups[0].line)
        assert built == hat.groups[0]
        rebuilt = dataclasses.replace(hat, groups=(built,))
        assert match_hat(rebuilt, "10.1.2.3").group == "RELAYLIST"


class TestParams:
    def test_single_line_params(self) -> None:
        """Quoted and bare values are parsed into a str dict with quotes stripped."""
        hat = parse_hat('$P\n  ACCEPT { max_msg_size = "10485760" tls = preferred '
                        'greeting = "hi there" }\nALL\n  $P\n')
        assert dict(hat.policies["$P"].params) == {
            "max_msg_size": "10485760", "tls": "preferred", "greeting": "hi there"}

    def test_multi_line_params(self) -> None:
        """Params may span several lines, with the closing brace on its own line."""
        text = ('$P\n  ACCEPT {\n    max_rcpts_per_msg = 100\n    max_concurrency = 10\n'
                '    max_conn_per_ip = "5"\n    tls = "REQUIRED"\n    note = "a } b"\n'
                '  }\nALL\n  $P\n')
        params = parse_hat(text).policies["$P"].params
        assert dict(params) == {"max_rcpts_per_msg": "100", "max_concurrency": "10",
                                "max_conn_per_ip": "5", "tls": "required", "note": "a } b"}

    def test_closing_brace_at_column_zero(self) -> None:
        """A closing brace written at column 0 still closes the params."""
        hat = parse_hat("$P\n  ACCEPT {\n    tls = off\n}\nALL\n  $P\n")
        assert dict(hat.policies["$P"].params) == {"tls": "off"}

    def test_params_are_read_only(self) -> None:
        """A policy's params mapping cannot be mutated after parsing."""
        params = parse_hat(SEED).policies["$RELAYED"].params
        with pytest.raises(TypeError):
            params["tls"] = "off"  # type: ignore[index]

    def test_action_is_case_insensitive(self) -> None:
        """Actions are normalised to upper case."""
        assert parse_hat("$P\n  relay {}\n").policies["$P"].action == "RELAY"


# (text, line inside text, field, fragment of message)
ERRORS = [
    pytest.param("A:\n  10.0.0.1\n  $NOPE\n", 3, "hat.A", "not defined", id="undefined-policy"),
    pytest.param("$P\n  DISCARD {}\n", 2, "hat.$P", "unknown action", id="unknown-action"),
    pytest.param("$P\n  ACCEPT {\n    tls = off\n$Q\n  REJECT {}\n", 2, "hat.$P",
                 "unbalanced", id="unbalanced-open"),
    pytest.param("$P\n  ACCEPT tls = off }\n", 2, "hat.$P", "unbalanced", id="unbalanced-close"),
    pytest.param("$P\n  ACCEPT { a = { } }\n", 2, "hat.$P", "nested", id="nested-brace"),
    pytest.param("$P\n  ACCEPT {\n    tls = maybe\n  }\n", 3, "hat.$P.tls", "tls",
                 id="bad-tls"),
    pytest.param("$P\n  ACCEPT { max_msg_size = 10MB }\n", 2, "hat.$P.max_msg_size",
                 "max_msg_size", id="bad-int"),
    pytest.param("$P\n  ACCEPT {\n\n    max_rcpts_per_msg = 0 }\n", 4,
                 "hat.$P.max_rcpts_per_msg", "max_rcpts_per_msg", id="zero-int"),
    pytest.param("$P\n  ACCEPT { tls = off tls = on }\n", 2, "hat.$P.tls", "duplicate",
                 id="duplicate-param"),
    pytest.param('$P\n  ACCEPT { note = "open }\n', 2, "hat.$P", "unterminated quote",
                 id="unterminated-quote"),
    pytest.param("$P\n  ACCEPT { junk }\n", 2, "hat.$P", "malformed parameter",
                 id="malformed-param"),
    pytest.param("$P\n  ACCEPT {}\n  REJECT {}\n", 3, "hat.$P", "unexpected", id="extra-line"),
    pytest.param("$P\nALL\n  $P\n", 1, "hat.$P", "no action", id="policy-without-action"),
    pytest.param("$P\n  ACCEPT {}\nA:\n  10.0.0.1\n  10.0.0.300\n  $P\n", 5, "hat.A",
                 "10.0.0.300", id="bad-ipv4"),
    pytest.param("$P\n  ACCEPT {}\nA:\n  10.0.0.1/8\n  $P\n", 4, "hat.A", "10.0.0.1/8",
                 id="cidr-host-bits"),
    pytest.param("$P\n  ACCEPT {}\nA:\n  10.1.1.20-10\n  $P\n", 4, "hat.A", "10.1.1.20-10",
                 id="reversed-range"),
    pytest.param("$P\n  ACCEPT {}\nA:\n  10.1.1.10-300\n  $P\n", 4, "hat.A", "10.1.1.10-300",
                 id="range-octet-too-big"),
    pytest.param("$P\n  ACCEPT {}\nA:\n  mail..example.com\n  $P\n", 4, "hat.A",
                 "mail..example.com", id="bad-hostname"),
    pytest.param("$P\n  ACCEPT {}\nA:\n  10.0.0.1\nALL\n  $P\n", 3, "hat.A", "no policy",
                 id="group-without-policy"),
    pytest.param("$P\n  ACCEPT {}\nA:\n  $P\n  $P\n", 5, "hat.A", "more than one",
                 id="two-policy-lines"),
    pytest.param("$P\n  ACCEPT {}\n$P\n  REJECT {}\n", 3, "hat.$P", "duplicate policy",
                 id="duplicate-policy"),
    pytest.param("$P\n  ACCEPT {}\nA:\n  $P\nA:\n  $P\n", 5, "hat.A", "duplicate sender group",
                 id="duplicate-group"),
    pytest.param("$P\n  ACCEPT {}\nALL\n  $P\nALL\n  $P\n", 5, "hat.ALL", "duplicate",
                 id="duplicate-all"),
    pytest.param("$P\n  ACCEPT {}\nALL\n  10.0.0.1\n  $P\n", 4, "hat.ALL", "no members",
                 id="all-with-members"),
    pytest.param("$P\n  ACCEPT {}\nALL:\n  $P\n", 3, "hat.ALL", "reserved", id="all-colon"),
    pytest.param("\n  10.0.0.1\n$P\n  ACCEPT {}\n", 2, "hat", "no parent", id="orphan-line"),
    pytest.param("$P\n  ACCEPT {}\nwhat is this\n", 3, "hat", "unrecognised", id="garbage"),
]


class TestErrors:
    @pytest.mark.parametrize(("text", "line", "field", "fragment"), ERRORS)
    def test_error_line_and_field(self, text: str, line: int, field: str,
                                  fragment: str) -> None:
        """Each malformed HAT raises ConfigError at the offending line with the right field."""
        err = error_of(text)
        assert (err.line, err.field) == (line, field)
        assert fragment.lower() in err.message.lower()

    @pytest.mark.parametrize(("text", "line", "field", "fragment"), ERRORS)
    def test_first_line_shifts_reported_line(self, text: str, line: int, field: str,
                                             fragment: str) -> None:
        """With first_line=N the reported line is N-1 plus the line inside the text."""
        err = error_of(text, first_line=120)
        assert (err.line, err.field) == (line + 119, field)

    def test_error_names_the_file_position(self) -> None:
        """The error's string form carries the line so an operator can find it."""
        assert ":7: hat.A:" in str(error_of("$P\n  ACCEPT {}\nA:\n  $NOPE\n", first_line=4))


class TestRat:
    RAT = make_rat([
        ("admin@example.com", "REJECT", 10),
        ("postmaster@", "ACCEPT", 11),
        ("example.com", "ACCEPT", 12),
        (".example.org", "ACCEPT", 13),
    ])

    def matched(self, rat: Rat, recipient: str) -> str | None:
        """Return the address of the entry matching *recipient*, or None."""
        entry = match_rat(rat, recipient)
        return None if entry is None else entry.address

    def test_exact_address(self) -> None:
        """user@domain matches that address only, case-insensitively, before the domain rule."""
        assert self.matched(self.RAT, "Admin@Example.COM") == "admin@example.com"
        assert match_rat(self.RAT, "admin@example.com").access == "REJECT"  # type: ignore[union-attr]
        assert self.matched(self.RAT, "admin@example.net") is None

    def test_local_part_at_any_domain(self) -> None:
        """user@ matches that local part at any domain, and a bare local part."""
        assert self.matched(self.RAT, "POSTMASTER@elsewhere.net") == "postmaster@"
        assert self.matched(self.RAT, "postmaster") == "postmaster@"
        assert self.matched(self.RAT, "postmistress@elsewhere.net") is None

    def test_domain_matches_only_that_domain(self) -> None:
        """A bare domain matches recipients at that domain but not its subdomains."""
        assert self.matched(self.RAT, "bob@example.com") == "example.com"
        assert self.matched(self.RAT, "bob@sub.example.com") is None

    def test_partial_domain_matches_subdomains_only(self) -> None:
        """.domain matches recipients at subdomains but not at the domain itself."""
        assert self.matched(self.RAT, "bob@mx.Example.org") == ".example.org"
        assert self.matched(self.RAT, "bob@example.org") is None
        assert self.matched(self.RAT, "bob@badexample.org") is None

    def test_all_matches_everything_in_order(self) -> None:
        """ALL matches any recipient, and earlier entries still win over it."""
        rat = make_rat([("user@a.test", "ACCEPT", 1), ("all", "reject", 2)])
        assert match_rat(rat, "user@a.test").access == "ACCEPT"  # type: ignore[union-attr]
        entry = match_rat(rat, "<someone@b.test>")
        assert entry is not None and (entry.address, entry.access) == ("all", "REJECT")

    def test_entries_keep_order_and_lines(self) -> None:
        """make_rat preserves entry order and line numbers."""
        assert [(e.address, e.line) for e in self.RAT.entries] == [
            ("admin@example.com", 10), ("postmaster@", 11), ("example.com", 12),
            (".example.org", 13)]

    def test_empty_rat_matches_nothing(self) -> None:
        """An empty RAT matches no recipient, leaving the rejection to the caller."""
        assert match_rat(make_rat([]), "bob@example.com") is None

    @pytest.mark.parametrize("address", [
        "", "a b@example.com", "@example.com", "user@.example.com", "user@exa mple.com",
        "..example.com", "example..com", "a@b@c.com", "exa_mple.com/x",
    ])
    def test_malformed_address(self, address: str) -> None:
        """A malformed rat_address raises ConfigError on rat.rat_address at its line."""
        with pytest.raises(ConfigError) as info:
            make_rat([("ALL", "ACCEPT", 3), (address, "ACCEPT", 4)])
        assert (info.value.field, info.value.line) == ("rat.rat_address", 4)

    @pytest.mark.parametrize("access", ["", "ALLOW", "TCPREFUSE", "RELAY"])
    def test_bad_access(self, access: str) -> None:
        """An access other than ACCEPT or REJECT raises ConfigError on rat.access."""
        with pytest.raises(ConfigError) as info:
            make_rat([("example.com", access, 8)])
        assert (info.value.field, info.value.line) == ("rat.access", 8)

    def test_duplicate_address(self) -> None:
        """The same address twice (in any case) is rejected at the second entry's line."""
        with pytest.raises(ConfigError) as info:
            make_rat([("example.com", "ACCEPT", 5), ("EXAMPLE.com", "REJECT", 6)])
        assert (info.value.field, info.value.line) == ("rat.rat_address", 6)

    def test_entry_normalises_access(self) -> None:
        """RatEntry upper-cases access and strips the address as written."""
        assert RatEntry(" example.com ", "accept") == RatEntry("example.com", "ACCEPT", 0)


class TestNamesHosts:
    def test_only_tables_with_hostname_members_need_reverse_dns(self) -> None:
        """A HAT of addresses needs no lookup; one with a hostname or .domain member does."""
        ips = parse_hat("$A\n  ACCEPT {}\nG:\n  10.0.0.0/8, 192.0.2.1-5\n    $A\nALL\n  $A\n")
        names = parse_hat("$A\n  ACCEPT {}\nG:\n  .example.com\n    $A\nALL\n  $A\n")
        assert not names_hosts(ips)
        assert names_hosts(names)
