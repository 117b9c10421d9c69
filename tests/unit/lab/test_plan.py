from __future__ import annotations

import pytest
from pyike_lab.plan import LabPlanError, build_plan, default_wan_address


def _hosts(*specs):
    return [dict(zip(("name", "site", "role"), spec)) for spec in specs]


def test_two_sites_addresses_links_and_routes():
    plan = build_plan(
        "demo", _hosts(("gw1", 1, "gateway"), ("c1", 1, "client"), ("gw2", 2, "gateway"), ("c2", 2, "client"))
    )
    assert [h.name for h in plan.hosts] == ["internet", "gw1", "gw2", "c1", "c2"]
    gw1, gw2 = plan.host("gw1"), plan.host("gw2")
    assert gw1.addresses == {
        "wan0": ["192.0.2.1/24", "2001:db8:1::1/64"],
        "lan0": ["10.1.0.1/24", "fd00:0:1::1/64"],
    }
    assert gw2.addresses == {
        "wan0": ["198.51.100.1/24", "2001:db8:2::1/64"],
        "lan0": ["10.2.0.1/24", "fd00:0:2::1/64"],
    }
    assert (
        gw1.default_gateway == "192.0.2.254" and gw1.default_gateway6 == "2001:db8:1::fe" and gw1.forwarding
    )
    assert plan.host("internet").addresses == {
        "inet0": ["192.0.2.254/24", "198.51.100.254/24", "2001:db8:1::fe/64", "2001:db8:2::fe/64"]
    }
    c2 = plan.host("c2")
    assert c2.addresses == {"eth0": ["10.2.0.10/24", "fd00:0:2::a/64"]} and c2.default_gateway == "10.2.0.1"
    assert c2.default_gateway6 == "fd00:0:2::1"
    assert [(link.a_host, link.b_host, link.b_bridge) for link in plan.links] == [
        ("gw1", "internet", "inet0"),
        ("gw2", "internet", "inet0"),
        ("c1", "gw1", "lan0"),
        ("c2", "gw2", "lan0"),
    ]


def test_wan_addresses_cycle_through_the_documentation_ranges():
    assert [str(default_wan_address(site)) for site in (1, 2, 3, 4, 5)] == [
        "192.0.2.1/24",
        "198.51.100.1/24",
        "203.0.113.1/24",
        "192.0.2.2/24",
        "198.51.100.2/24",
    ]


def test_clients_are_numbered_per_site_and_explicit_addresses_are_kept():
    hosts = _hosts(("gw1", 1, "gateway"), ("b", 1, "client"), ("a", 1, "client"))
    hosts.append({"name": "c", "site": 1, "role": "client", "lan_address": "10.1.0.99/24"})
    plan = build_plan("demo", hosts)
    assert plan.host("a").addresses["eth0"] == ["10.1.0.10/24", "fd00:0:1::a/64"]
    assert plan.host("b").addresses["eth0"] == ["10.1.0.11/24", "fd00:0:1::b/64"]
    assert plan.host("c").addresses["eth0"] == ["10.1.0.99/24", "fd00:0:1::63/64"]


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ([], "has no hosts"),
        (_hosts(("gw1", 0, "gateway")), "'gw1': pyike_lab_site must be an integer from 1 to 250"),
        (_hosts(("gw1", "one", "gateway")), "'gw1': pyike_lab_site must be an integer"),
        (_hosts(("gw1", 1, "router")), "'gw1': pyike_lab_role must be one of gateway, client"),
        (
            _hosts(("gw1", 1, "gateway"), ("gw9", 1, "gateway")),
            "'gw1' and 'gw9': both are the gateway of site 1",
        ),
        (_hosts(("c1", 3, "client")), "'c1': site 3 has no gateway"),
        (_hosts(("gw1", 1, "gateway"), ("gw1", 2, "gateway")), "'gw1': name is used twice"),
        (_hosts(("internet", 1, "gateway")), "reserved"),
        (_hosts(("GW_1", 1, "gateway")), "'GW_1': names must be lowercase"),
        ([{"name": "gw1", "site": 1, "wan_address": "192.0.2.7"}], "needs a prefix length"),
        ([{"name": "gw1", "site": 1, "wan_address": "192.0.2.300/24"}], "is not an IPv4 address/prefix"),
        ([{"name": "gw1", "site": 1, "wan_address": "192.0.2.254/24"}], "is the internet router's address"),
        (
            [{"name": "gw1", "site": 1}, {"name": "gw2", "site": 2, "wan_address": "192.0.2.1/24"}],
            "'gw2': WAN address 192.0.2.1 is already used by 'gw1'",
        ),
        (
            [
                *_hosts(("gw1", 1, "gateway")),
                {"name": "c1", "site": 1, "role": "client", "lan_address": "10.2.0.5/24"},
            ],
            "outside its site's LAN 10.1.0.0/24",
        ),
    ],
)
def test_bad_inventories_name_the_host_and_field(hosts, message):
    with pytest.raises(LabPlanError) as error:
        build_plan("demo", hosts)
    assert message in str(error.value)


def test_bad_lab_name():
    with pytest.raises(LabPlanError, match="lab name 'Demo Lab'"):
        build_plan("Demo Lab", _hosts(("gw1", 1, "gateway")))


def test_a_stock_gateway_keeps_forwarding_off_and_gets_its_ruleset():
    ruleset = (
        "table inet filter {\n  chain input { type filter hook input priority filter; policy drop; }\n}\n"
    )
    hosts = [
        {"name": "gw1", "site": 1, "role": "gateway", "forwarding": False, "nftables": ruleset},
        {"name": "gw2", "site": 2, "role": "gateway"},
        {"name": "c1", "site": 1, "role": "client", "nftables": ruleset},
    ]
    plan = build_plan("demo", hosts)
    assert not plan.host("gw1").forwarding and plan.host("gw1").nftables == ruleset
    assert plan.host("gw2").forwarding and plan.host("gw2").nftables is None
    assert plan.host("c1").nftables == ruleset and not plan.host("c1").forwarding


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"forwarding": "no"}, "pyike_lab_forwarding must be true or false"),
        ({"nftables": "  "}, "pyike_lab_nftables must be an nftables ruleset"),
        ({"nftables": ["table inet x {}"]}, "pyike_lab_nftables must be an nftables ruleset"),
    ],
)
def test_bad_stock_gateway_options_name_the_host_and_variable(extra, message):
    with pytest.raises(LabPlanError, match=message) as error:
        build_plan("demo", [dict({"name": "gw1", "site": 1, "role": "gateway"}, **extra)])
    assert "'gw1'" in str(error.value)
