"""Route-based tunnels (``ipsec_tunnels[].interface``) as they reach each gateway's engine configuration:
mode route with the interface and that end's addresses, the children that carry everything by default,
explicit children, an unmanaged peer, and two tunnels of one host that would share an interface.
Every configuration is also loaded by the engine's own parse_config."""

from __future__ import annotations

import copy

import pytest
from inventory_cases import CORPUS_DIR, load_inventory
from pyike.config import parse_config
from pyike.config.build_route import default_if_id
from pyike_inventory import Inventory, engine_configs, validate_inventory

PSK = "route-based-psk-5d2b8e1f0c7a"
GROUPS = {
    "ipsec_ike_groups": {"ike": {"proposals": ["aes256gcm16-prfsha256-x25519"]}},
    "ipsec_esp_groups": {"esp": {"proposals": ["aes256gcm16"]}},
}
HOSTS = {
    "hq": {"ipsec_public_address": "192.0.2.1", "ipsec_lan_subnets": ["10.1.0.0/24"]},
    "branch": {"ipsec_public_address": "198.51.100.1", "ipsec_lan_subnets": ["10.2.0.0/24"]},
    "shop": {"ipsec_public_address": "198.51.100.2", "ipsec_lan_subnets": ["10.3.0.0/24"]},
}


def tunnel(name="hq-branch", right="branch", **fields):
    out = {"name": name, "left": "hq", "right": right, "ike_group": "ike", "esp_group": "esp", "psk": PSK}
    out.update(fields)
    return out


def inventory(*tunnels):
    return dict(copy.deepcopy(GROUPS), ipsec_tunnels=list(tunnels))


def loaded(data, hosts=None):
    """The engine configurations, each loaded by the engine (and the loaded form, by host)."""
    configs = engine_configs(data, copy.deepcopy(hosts or HOSTS))
    return configs, {host: parse_config(config, source=host) for host, config in configs.items()}


def problems(data, hosts=None):
    return [str(p) for p in validate_inventory(data, copy.deepcopy(hosts or HOSTS))]


def children(config, connection="hq-branch"):
    return {
        name: (child["local_ts"], child["remote_ts"])
        for name, child in config["connections"][connection]["children"].items()
    }


def test_each_managed_end_gets_mode_route_with_its_own_addresses():
    configs, engine = loaded(
        inventory(
            tunnel(
                interface={
                    "name": "vti-branch",
                    "if_id": 42,
                    "mtu": 1400,
                    "left_addresses": ["169.254.10.1/30"],
                    "right_addresses": ["169.254.10.2/30"],
                }
            )
        )
    )
    hq, branch = configs["hq"]["connections"]["hq-branch"], configs["branch"]["connections"]["hq-branch"]
    assert hq["mode"] == branch["mode"] == "route"
    assert hq["interface"] == {
        "name": "vti-branch",
        "if_id": 42,
        "addresses": ["169.254.10.1/30"],
        "mtu": 1400,
    }
    assert branch["interface"] == {
        "name": "vti-branch",
        "if_id": 42,
        "addresses": ["169.254.10.2/30"],
        "mtu": 1400,
    }
    assert engine["hq"].connections["hq-branch"].interface.addresses == ("169.254.10.1/30",)
    assert engine["branch"].connections["hq-branch"].interface.if_id == 42


def test_if_id_and_mtu_are_left_to_the_engine_when_not_given():
    configs, engine = loaded(inventory(tunnel(interface={"name": "vti-branch"})))
    assert configs["hq"]["connections"]["hq-branch"]["interface"] == {"name": "vti-branch", "addresses": []}
    interface = engine["hq"].connections["hq-branch"].interface
    assert (interface.if_id, interface.mtu) == (default_if_id("vti-branch"), None)


def test_a_policy_based_tunnel_has_no_mode_or_interface():
    configs, _engine = loaded(inventory(tunnel()))
    assert "mode" not in configs["hq"]["connections"]["hq-branch"]
    assert "interface" not in configs["hq"]["connections"]["hq-branch"]


def test_the_default_child_carries_every_ipv4_address_on_both_ends():
    configs, _engine = loaded(inventory(tunnel(interface={"name": "vti-branch"})))
    for host in ("hq", "branch"):
        assert children(configs[host]) == {"lan": (["0.0.0.0/0"], ["0.0.0.0/0"])}


def test_an_ipv6_interface_address_adds_every_ipv6_address():
    interface = {"name": "vti-branch", "right_addresses": ["fd00:10::2/64"]}
    configs, _engine = loaded(inventory(tunnel(interface=interface)))
    assert children(configs["hq"]) == {"lan": (["0.0.0.0/0", "::/0"], ["0.0.0.0/0", "::/0"])}


def test_an_ipv6_lan_of_either_end_adds_every_ipv6_address():
    hosts = copy.deepcopy(HOSTS)
    hosts["branch"]["ipsec_lan_subnets"] = ["10.2.0.0/24", "2001:db8:2::/64"]
    configs, _engine = loaded(inventory(tunnel(interface={"name": "vti-branch"})), hosts)
    assert children(configs["branch"]) == {"lan": (["0.0.0.0/0", "::/0"], ["0.0.0.0/0", "::/0"])}


def test_explicit_children_override_and_a_side_left_out_carries_everything_of_the_given_sides_families():
    data = inventory(
        tunnel(
            interface={"name": "vti-branch", "left_addresses": ["fd00:10::1/64"]},
            children=[
                {"name": "web", "left_ts": ["10.1.0.0/24[tcp/443]"], "right_ts": ["10.2.0.0/24"]},
                {"name": "v6", "right_ts": ["2001:db8:2::/64"]},
            ],
        )
    )
    configs, _engine = loaded(data)
    assert children(configs["hq"]) == {
        "web": (["10.1.0.0/24[tcp/443]"], ["10.2.0.0/24"]),
        "v6": (["::/0"], ["2001:db8:2::/64"]),
    }
    assert children(configs["branch"])["v6"] == (["2001:db8:2::/64"], ["::/0"])


def test_a_child_that_gives_no_side_carries_everything_in_the_tunnels_families():
    interface = {"name": "vti-branch", "left_addresses": ["fd00:10::1/64"]}
    configs, _engine = loaded(
        inventory(tunnel(interface=interface, children=[{"name": "all", "esp_group": "esp"}]))
    )
    assert children(configs["hq"]) == {"all": (["0.0.0.0/0", "::/0"], ["0.0.0.0/0", "::/0"])}


def test_remote_selectors_that_would_capture_the_gateway_are_not_refused_nor_carved():
    """0.0.0.0/0 holds both gateways' LANs and addresses: refused in policy mode, used as is in route mode."""
    policy = tunnel(children=[{"name": "all", "left_ts": ["0.0.0.0/0"], "right_ts": ["0.0.0.0/0"]}])
    assert any("capture" in text for text in problems(inventory(policy)))
    configs, _engine = loaded(inventory(dict(policy, interface={"name": "vti-branch"})))
    assert children(configs["hq"]) == {"all": (["0.0.0.0/0"], ["0.0.0.0/0"])}


def test_an_unmanaged_peer_gets_nothing_and_the_managed_end_its_own_addresses():
    peer = {"address": "203.0.113.7", "id": "moon.example.com", "subnets": ["10.4.0.0/24"]}
    interface = {"name": "vti-moon", "left_addresses": ["169.254.20.1/30"]}
    configs, _engine = loaded(inventory(tunnel("hq-moon", right=peer, interface=interface)))
    assert sorted(configs) == ["branch", "hq", "shop"]  # hosts with an address get a configuration
    assert configs["branch"]["connections"] == {}
    assert configs["hq"]["connections"]["hq-moon"]["interface"]["addresses"] == ["169.254.20.1/30"]


def test_addresses_for_an_unmanaged_end_are_refused():
    peer = {"address": "203.0.113.7", "subnets": ["10.4.0.0/24"]}
    interface = {"name": "vti-moon", "right_addresses": ["169.254.20.2/30"]}
    assert problems(inventory(tunnel("hq-moon", right=peer, interface=interface))) == [
        "ipsec_tunnels[0].interface.right_addresses: the right end is an unmanaged peer: the interface is made "
        "only on managed ends, so these addresses would go unused; configure them on the peer itself and "
        "remove right_addresses"
    ]


def test_two_route_based_tunnels_of_one_host_may_overlap_but_not_share_an_interface():
    branch = tunnel(interface={"name": "vti-branch"})
    shop = tunnel("hq-shop", right="shop", interface={"name": "vti-shop"})
    configs, _engine = loaded(inventory(branch, shop))
    assert children(configs["hq"], "hq-shop") == children(configs["hq"], "hq-branch")
    shop["interface"]["name"] = "vti-branch"
    assert problems(inventory(branch, shop)) == [
        "ipsec_tunnels[1].interface.name: on hq, interface 'vti-branch' is already that of tunnel 'hq-branch' "
        "(ipsec_tunnels[0].interface): each route-based tunnel of a host needs an interface of its own"
    ]


def test_an_if_id_that_is_another_interfaces_default_is_refused_with_both_tunnels():
    branch = tunnel(interface={"name": "vti-branch"})
    shop = tunnel(
        "hq-shop", right="shop", interface={"name": "vti-shop", "if_id": default_if_id("vti-branch")}
    )
    assert problems(inventory(shop, branch)) == [
        "ipsec_tunnels[1].interface: on hq, if_id %d (the engine's default for the name 'vti-branch') is already "
        "that of interface 'vti-shop' of tunnel 'hq-shop' (ipsec_tunnels[0].interface): each route-based tunnel "
        "of a host needs an if_id of its own; set if_id on one" % default_if_id("vti-branch")
    ]


def test_one_name_on_tunnels_of_different_hosts_is_fine():
    """Names and if_ids are unique per host: the engine of each end makes its own interface."""
    hosts = dict(copy.deepcopy(HOSTS), lab={"ipsec_public_address": "198.51.100.3"})
    data = inventory(
        tunnel(interface={"name": "vti0"}),
        dict(tunnel("shop-lab", interface={"name": "vti0"}), left="shop", right="lab"),
    )
    configs, _engine = loaded(data, hosts)
    assert configs["lab"]["connections"]["shop-lab"]["interface"]["name"] == "vti0"
    assert configs["hq"]["connections"]["hq-branch"]["interface"]["name"] == "vti0"


def test_children_of_one_route_based_tunnel_still_may_not_overlap():
    data = inventory(tunnel(interface={"name": "vti-branch"}, children=[{"name": "a"}, {"name": "b"}]))
    found = problems(data)
    assert len(found) == 1 and found[0].startswith(
        "ipsec_tunnels[0].children[1]: the selectors of tunnel 'hq-branch' child 'b' overlap those of its child 'a'"
    )


def test_a_policy_based_tunnel_beside_a_route_based_one_keeps_its_checks():
    route = tunnel(interface={"name": "vti-branch"})
    policy = tunnel("hq-shop", right="shop", children=[{"name": "all", "right_ts": ["0.0.0.0/0"]}])
    assert [text.split(":", 1)[0] for text in problems(inventory(route, policy))] == [
        "ipsec_tunnels[1].children[0]"
    ]


@pytest.mark.parametrize("case", ["route-based.yml", "two-route-tunnels.yml", "explicit-children.yml"])
def test_corpus_cases_load_in_the_engine_as_route_based(case):
    data, hosts, groups = load_inventory(CORPUS_DIR / "interfaces" / case)
    for host, config in engine_configs(data, hosts, groups).items():
        engine = parse_config(config, source=host)
        routed = [name for name, conn in engine.connections.items() if conn.mode == "route"]
        assert routed == [name for name, conn in config["connections"].items() if "interface" in conn]


def test_the_summary_names_the_interface():
    checked = Inventory(
        inventory(tunnel(interface={"name": "vti-branch", "if_id": 42})), copy.deepcopy(HOSTS)
    )
    assert checked.tunnels[0].summary()["interface"] == {"name": "vti-branch", "if_id": 42}
