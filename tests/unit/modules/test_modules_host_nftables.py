"""Which nftables chains the gateway opens, and when a second run changes nothing (pyike_host.nftables).

The rulesets are what ``nft -j list ruleset`` prints (its JSON schema); tests/integration/test_host_nftables.py
loads the generated scripts into a real nft.
"""

from __future__ import annotations

import modules_support  # noqa: F401  (makes ansible_collections.pyike.ipsec importable)
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host import nftables

SPEC = {
    "tun": "pyike0",
    "ike_ports": [500, 4500],
    "peers": {"any": False, "4": ["198.51.100.1"], "6": ["2001:db8:2::1"]},
    "tunnels": [
        {"version": 4, "local": ["10.1.0.0/24"], "remote": ["10.2.0.0/24"]},
        {"version": 6, "local": ["fd00:0:1::/64"], "remote": ["fd00:0:2::/64"]},
    ],
    "open": True,
    "mss": {"4": 1360, "6": 1340},
}


def ruleset(*tables):
    """tables: (family, name, {chain: (hook or None, policy, [rules])}); a rule is a list of expressions."""
    items, handle = [], 100
    for family, name, chains in tables:
        items.append({"table": {"family": family, "name": name, "handle": 1}})
        for chain, (hook, policy, rules) in chains.items():
            entry = {"family": family, "table": name, "name": chain, "handle": 2}
            if hook:
                entry.update(type="filter", hook=hook, prio=0, policy=policy)
            items.append({"chain": entry})
            for expr in rules:
                handle += 1
                rule = {"family": family, "table": name, "chain": chain, "handle": handle}
                if isinstance(expr, tuple):  # (expressions, comment)
                    expr, rule["comment"] = expr
                rule["expr"] = expr
                items.append({"rule": rule})
    return nftables.Ruleset({"nftables": [{"metainfo": {"version": "1.0.6"}}, *items]})


DROP = [{"drop": None}]
ACCEPT = [{"accept": None}]


def test_a_ruleset_that_drops_by_default_gets_our_chains_and_jumps():
    rs = ruleset(("inet", "filter", {"input": ("input", "drop", []), "forward": ("forward", "drop", []),
                                     "output": ("output", "drop", [])}))  # fmt: skip
    plan = nftables.plan(SPEC, rs)
    assert sorted(plan.opened) == ["inet filter forward", "inet filter input"]  # output is not ours to open
    script = plan.script()
    assert 'insert rule inet filter input jump pyike_ipsec_input comment "pyike.ipsec"' in script
    assert 'insert rule inet filter forward jump pyike_ipsec_forward comment "pyike.ipsec"' in script
    assert "ip saddr 198.51.100.1 udp dport { 500, 4500 } accept" in script
    assert "ip6 saddr 2001:db8:2::1 meta l4proto esp accept" in script
    assert 'oifname "pyike0" ip saddr 10.1.0.0/24 ip daddr 10.2.0.0/24 accept' in script
    assert 'iifname "pyike0" ip6 saddr fd00:0:2::/64 ip6 daddr fd00:0:1::/64 accept' in script
    assert "tcp option maxseg size set 1360" in script and "tcp option maxseg size set 1340" in script


def test_only_chains_that_can_drop_are_opened():
    rs = ruleset(
        ("inet", "accepting", {"input": ("input", "accept", [ACCEPT])}),
        ("ip", "rejecting", {"input": ("input", "accept", [[{"jump": {"target": "checks"}}]]),
                             "checks": (None, None, [[{"reject": None}]])}),
        ("ip6", "v6only", {"fwd": ("forward", "drop", [])}),
        ("ip", "filter", {"INPUT": ("input", "drop", [])}),  # iptables-nft
        ("inet", "firewalld", {"filter_INPUT": ("input", "accept", [DROP])}),
    )  # fmt: skip
    plan = nftables.plan(SPEC, rs)
    assert sorted(plan.opened) == ["ip rejecting input", "ip6 v6only fwd"]
    assert sorted(plan.skipped) == [
        "inet firewalld (managed by firewalld)",
        "ip filter (looks managed by iptables(-nft))",
    ]
    script = plan.script()
    # each table gets only the rules of its family
    ip_rules = [line for line in script.splitlines() if line.startswith("add rule ip rejecting")]
    assert ip_rules and not any("ip6 " in line for line in ip_rules)
    ip6_rules = [line for line in script.splitlines() if line.startswith("add rule ip6 v6only")]
    assert ip6_rules and all(" ip6 " in line for line in ip6_rules)


def test_any_peer_opens_ike_and_esp_to_everyone():
    spec = dict(SPEC, peers={"any": True, "4": [], "6": []})
    rules = nftables.helper_rules(spec, "inet", "input")
    assert rules[:2] == ["udp dport { 500, 4500 } accept", "meta l4proto esp accept"]


def in_sync_ruleset(spec):
    """The ruleset a first run leaves: the site's table with our chains and jumps, and our table."""
    comment = {
        hook: nftables.comment_for(nftables.helper_rules(spec, "inet", hook)) for hook in ("input", "forward")
    }
    mss = nftables.mss_rules(spec)
    return ruleset(
        ("inet", "filter", {
            "input": ("input", "drop", [([{"jump": {"target": "pyike_ipsec_input"}}], "pyike.ipsec")]),
            "forward": ("forward", "drop", [([{"jump": {"target": "pyike_ipsec_forward"}}], "pyike.ipsec")]),
            "pyike_ipsec_input": (None, None, [([], comment["input"])] * len(nftables.helper_rules(spec, "inet", "input"))),
            "pyike_ipsec_forward": (None, None, [([], comment["forward"])] * len(nftables.helper_rules(spec, "inet", "forward"))),
        }),
        ("inet", "pyike_ipsec", {"mss_clamp": (None, None, [([], nftables.comment_for(mss))] * len(mss))}),
    )  # fmt: skip


def test_a_second_run_changes_nothing_and_a_new_peer_rewrites_one_chain():
    rs = in_sync_ruleset(SPEC)
    assert not nftables.plan(SPEC, rs).changed
    moved = dict(SPEC, peers={"any": False, "4": ["198.51.100.2"], "6": ["2001:db8:2::1"]})
    plan = nftables.plan(moved, rs)
    assert plan.changes == ["wrote chain pyike_ipsec_input in inet filter (6 rules)"]
    assert plan.commands[:2] == [
        "add chain inet filter pyike_ipsec_input",
        "flush chain inet filter pyike_ipsec_input",
    ]


def test_a_chain_that_stops_dropping_loses_our_jump_and_chain():
    spec_rs = in_sync_ruleset(SPEC)
    spec_rs.chains[("inet", "filter")]["forward"]["policy"] = "accept"
    plan = nftables.plan(SPEC, spec_rs)
    assert "removed the jump to pyike_ipsec_forward from inet filter forward" in plan.changes
    assert "removed chain pyike_ipsec_forward from inet filter" in plan.changes
    assert plan.commands[0].startswith("delete rule inet filter forward handle ")


def test_leaving_the_firewall_alone_and_removing_everything():
    rs = in_sync_ruleset(SPEC)
    alone = nftables.plan(dict(SPEC, open=None, mss=None), rs)
    assert alone.commands == ["delete table inet pyike_ipsec"]  # MSS clamping off; the site's table untouched
    gone = nftables.plan({}, rs, present=False)
    assert sorted(gone.changes) == [
        "removed chain pyike_ipsec_forward from inet filter",
        "removed chain pyike_ipsec_input from inet filter",
        "removed table inet pyike_ipsec",
        "removed the jump to pyike_ipsec_forward from inet filter forward",
        "removed the jump to pyike_ipsec_input from inet filter input",
    ]
    assert not nftables.plan(
        {}, ruleset(("inet", "filter", {"input": ("input", "drop", [])})), present=False
    ).changed


def test_a_loop_of_jumps_is_no_trouble():
    rs = ruleset(("inet", "t", {"input": ("input", "accept", [[{"jump": {"target": "a"}}]]),
                                "a": (None, None, [[{"goto": {"target": "b"}}]]),
                                "b": (None, None, [[{"jump": {"target": "a"}}]])}))  # fmt: skip
    assert nftables.plan(SPEC, rs).opened == []


def test_the_boot_command_says_how_to_use_it(capsys):
    assert nftables.main(["bogus"]) == 2
    assert "usage: pyike-nftables apply|remove|check SPEC.json" in capsys.readouterr().err
    assert nftables.main(["apply", "/nonexistent/spec.json"]) == 1
    assert "No such file" in capsys.readouterr().err
