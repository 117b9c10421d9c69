"""Which nftables chains the gateway opens, and when a second run changes nothing (pyike_host.nftables).

The rulesets are loaded into a real nft in a throwaway network namespace (netns_harness): the code
reads what nft lists and its scripts are applied by nft, so a rule nft would list differently from
how we write it shows up as a second run that changes something.
"""

from __future__ import annotations

import json

import modules_support  # noqa: F401 (makes ansible_collections.pyike.ipsec importable)  # pylint: disable=unused-import
import netns_harness
import pytest
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host import nftables

netns = netns_harness.netns

SPEC = {
    "tun": "pyike0",
    "ike_ports": [500, 4500],
    "peers": {"any": False, "4": ["198.51.100.1", "198.51.100.7"], "6": ["2001:db8:2::1"]},
    "tunnels": [
        {"version": 4, "local": ["10.1.0.0/24"], "remote": ["10.2.0.0/24", "10.3.0.0/24"]},
        {"version": 6, "local": ["fd00:0:1::/64"], "remote": ["fd00:0:2::/64"]},
    ],
    "open": True,
    "mss": {"4": 1360, "6": 1340},
}
SITE = netns_harness.DROPPING_SITE
# Tables that are not ours to change, and chains that may or may not drop.
OTHERS = """\
table inet accepting {
  chain input {
    type filter hook input priority filter; policy accept;
    accept
  }
}
table ip rejecting {
  chain checks {
    tcp dport 22 reject
  }
  chain input {
    type filter hook input priority filter; policy accept;
    jump checks
  }
}
table ip6 v6only {
  chain v6forward {
    type filter hook forward priority filter; policy drop;
  }
}
table ip filter {
  chain INPUT {
    type filter hook input priority filter; policy drop;
  }
}
table inet firewalld {
  chain filter_INPUT {
    type filter hook input priority filter + 10; policy accept;
    drop
  }
}
"""


@pytest.fixture
def nft(netns, monkeypatch):
    """The namespace, with the module's nft pointed into it."""
    monkeypatch.setattr(nftables, "NFT", netns.nft)
    return netns


def applied(spec, present=True):
    """Plan against the namespace's ruleset, apply, and return the plan."""
    result = nftables.plan(spec, nftables.Ruleset.read(), present=present)
    nftables.apply(result)
    return result


def chain_listing(nft, family, table, chain):
    return [line.strip() for line in nft.run(["nft", "list", "chain", family, table, chain]).splitlines()]


def test_a_ruleset_that_drops_by_default_is_opened_and_a_second_run_changes_nothing(nft):
    nft.load(SITE)
    first = applied(SPEC)
    assert sorted(first.opened) == ["inet filter forward", "inet filter input"]  # output is not ours to open
    assert len(first.changes) == 5
    input_chain = chain_listing(nft, "inet", "filter", "input")
    assert input_chain[3] == 'jump pyike_ipsec_input comment "pyike.ipsec"'  # first, before the site's rules
    assert "ct state established,related accept" in input_chain
    ours = "\n".join(chain_listing(nft, "inet", "filter", "pyike_ipsec_input"))
    assert "ip saddr { 198.51.100.1, 198.51.100.7 } udp dport { 500, 4500 } accept" in ours
    assert "ip6 saddr 2001:db8:2::1 meta l4proto esp accept" in ours
    forward = "\n".join(chain_listing(nft, "inet", "filter", "pyike_ipsec_forward"))
    assert 'oifname "pyike0" ip saddr 10.1.0.0/24 ip daddr { 10.2.0.0/24, 10.3.0.0/24 } accept' in forward
    assert 'iifname "pyike0" ip6 saddr fd00:0:2::/64 ip6 daddr fd00:0:1::/64 accept' in forward
    # the kernel dataplane's traffic, as nft lists it back: decrypted with an IPsec path, or routed to be encrypted
    assert "meta ipsec exists ip6 saddr fd00:0:2::/64 ip6 daddr fd00:0:1::/64 accept" in forward
    assert "rt ipsec exists ip saddr 10.1.0.0/24 ip daddr { 10.2.0.0/24, 10.3.0.0/24 } accept" in forward
    assert "meta ipsec exists ip6 saddr fd00:0:2::/64 ip6 daddr fd00:0:1::/64 accept" in "\n".join(
        chain_listing(nft, "inet", "filter", "pyike_ipsec_input"))  # fmt: skip
    mss = "\n".join(chain_listing(nft, "inet", "pyike_ipsec", "mss_clamp"))
    assert "type filter hook forward priority mangle; policy accept;" in mss
    assert "tcp option maxseg size set 1360" in mss and "tcp option maxseg size set 1340" in mss

    second = nftables.plan(SPEC, nftables.Ruleset.read())
    assert not second.changed and second.changes == []
    # the diff's "before" is nft's own listing of what is ours: equal to what we would write
    assert nftables.before_text(second) == nftables.after_text(second)


def test_only_chains_that_can_drop_are_opened_and_managed_tables_are_left_alone(nft):
    nft.load(OTHERS)
    managed = {
        table: nft.run(["nft", "list", "table", *table.split()]) for table in ("ip filter", "inet firewalld")
    }
    result = applied(SPEC)
    assert sorted(result.opened) == ["ip rejecting input", "ip6 v6only v6forward"]
    assert sorted(result.skipped) == [
        "inet firewalld (managed by firewalld)",
        "ip filter (looks managed by iptables(-nft))",
    ]
    for table, listing in managed.items():
        assert nft.run(["nft", "list", "table", *table.split()]) == listing
    # each table gets only the rules of its family
    ip_rules = chain_listing(nft, "ip", "rejecting", "pyike_ipsec_input")
    assert any("ip saddr" in rule for rule in ip_rules) and not any("ip6 " in rule for rule in ip_rules)
    ip6_rules = chain_listing(nft, "ip6", "v6only", "pyike_ipsec_forward")
    assert any("ip6 saddr" in rule for rule in ip6_rules) and not any(
        " ip saddr" in rule for rule in ip6_rules
    )
    assert not nftables.plan(SPEC, nftables.Ruleset.read()).changed


def test_a_host_without_a_firewall_gets_only_the_mss_clamping(nft):
    result = applied(dict(SPEC, open=False))
    assert result.opened == [] and result.changes == [
        "wrote table inet pyike_ipsec (TCP MSS clamping, 4 rules)"
    ]
    assert nftables.Ruleset.read().tables == [
        ("inet", "pyike_ipsec")
    ]  # no filter of ours where there was none
    assert not nftables.plan(dict(SPEC, open=False), nftables.Ruleset.read()).changed


def test_any_peer_opens_ike_and_esp_to_everyone(nft):
    nft.load(SITE)
    applied(dict(SPEC, peers={"any": True, "4": [], "6": []}, ike_ports=[500]))
    rules = chain_listing(nft, "inet", "filter", "pyike_ipsec_input")
    assert rules[2].startswith("udp dport 500 accept") and rules[3].startswith("meta l4proto esp accept")
    assert not any("saddr 198.51.100" in rule for rule in rules)


def test_a_new_peer_rewrites_one_chain(nft):
    nft.load(SITE)
    applied(SPEC)
    moved = dict(SPEC, peers={"any": False, "4": ["198.51.100.2"], "6": ["2001:db8:2::1"]})
    result = applied(moved)
    assert result.changes == ["wrote chain pyike_ipsec_input in inet filter (8 rules)"]
    rules = "\n".join(chain_listing(nft, "inet", "filter", "pyike_ipsec_input"))
    assert "198.51.100.2" in rules and "198.51.100.1" not in rules and "198.51.100.7" not in rules
    assert (
        chain_listing(nft, "inet", "filter", "input").count('jump pyike_ipsec_input comment "pyike.ipsec"')
        == 1
    )
    assert not nftables.plan(moved, nftables.Ruleset.read()).changed


def test_a_chain_that_stops_dropping_loses_our_jump_and_chain(nft):
    nft.load(SITE)
    applied(SPEC)
    nft.run(["nft", "chain inet filter forward { policy accept; }"])
    result = applied(SPEC)
    assert sorted(result.changes) == [
        "removed chain pyike_ipsec_forward from inet filter",
        "removed the jump to pyike_ipsec_forward from inet filter forward",
    ]
    listing = nft.listing()
    assert "pyike_ipsec_forward" not in listing and "jump pyike_ipsec_input" in listing


def test_leaving_the_firewall_alone_and_removing_everything(nft):
    nft.load(SITE)
    site = nft.listing()
    applied(SPEC)
    alone = applied(dict(SPEC, open=None, mss=None))
    assert alone.commands == ["delete table inet pyike_ipsec"]  # MSS clamping off; the site's table untouched
    assert "jump pyike_ipsec_input" in nft.listing()
    gone = applied({}, present=False)
    assert sorted(gone.changes) == [
        "removed chain pyike_ipsec_forward from inet filter",
        "removed chain pyike_ipsec_input from inet filter",
        "removed the jump to pyike_ipsec_forward from inet filter forward",
        "removed the jump to pyike_ipsec_input from inet filter input",
    ]
    assert nft.listing() == site
    assert not nftables.plan({}, nftables.Ruleset.read(), present=False).changed


def test_a_ruleset_changed_under_us_fails_whole_and_names_nfts_complaint(nft):
    nft.load(SITE)
    result = nftables.plan(SPEC, nftables.Ruleset.read())
    nft.run(["nft", "delete chain inet filter forward"])  # e.g. the site's ruleset was reloaded meanwhile
    changed = nft.listing()
    with pytest.raises(
        nftables.NftError,
        match=r"(?s)nft-in-pyike-unit-\w+ -f - failed \(rc=1\): .*No such file.*inet filter forward",
    ):
        nftables.apply(result)
    assert nft.listing() == changed  # one transaction: nothing of it was applied


def test_a_loop_of_jumps_is_no_trouble():
    # nft itself refuses a loop; a listing from elsewhere must still not recurse forever
    listing = {"nftables": [
        {"table": {"family": "inet", "name": "t", "handle": 1}},
        {"chain": {"family": "inet", "table": "t", "name": "input", "type": "filter", "hook": "input",
                   "prio": 0, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "t", "chain": "input", "expr": [{"jump": {"target": "a"}}]}},
        {"rule": {"family": "inet", "table": "t", "chain": "a", "expr": [{"goto": {"target": "b"}}]}},
        {"rule": {"family": "inet", "table": "t", "chain": "b", "expr": [{"jump": {"target": "a"}}]}},
    ]}  # fmt: skip
    assert nftables.plan(SPEC, nftables.Ruleset(listing)).opened == []


def test_the_boot_command_applies_checks_and_removes(nft, tmp_path, capsys):
    nft.load(SITE)
    site = nft.listing()
    spec = tmp_path / "nftables.json"
    spec.write_text(json.dumps(SPEC))
    assert nftables.main(["check", str(spec)]) == 1
    assert "to apply: inserted a jump to pyike_ipsec_input" in capsys.readouterr().out
    assert nftables.main(["apply", str(spec)]) == 0
    assert "wrote table inet pyike_ipsec" in capsys.readouterr().out
    assert nftables.main(["check", str(spec)]) == 0 and capsys.readouterr().out == ""
    assert nftables.main(["remove", str(spec)]) == 0
    assert nft.listing() == site


def test_the_boot_command_says_how_to_use_it(capsys):
    assert nftables.main(["bogus"]) == 2
    assert "usage: pyike-nftables apply|remove|check SPEC.json" in capsys.readouterr().err
    assert nftables.main(["apply", "/nonexistent/spec.json"]) == 1
    assert "No such file" in capsys.readouterr().err
