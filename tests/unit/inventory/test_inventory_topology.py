"""Tunnels and topologies -> per-host engine configurations: exact selectors, names and sides."""

from __future__ import annotations

import copy

import pytest
from pyike.config import ConfigError, parse_config
from pyike_inventory import (
    Inventory,
    InventoryError,
    build_configs,
    build_secrets,
    engine_configs,
    psk_refs,
    validate_inventory,
)

GROUPS = {
    "ike_groups": {
        "ike": {"proposals": ["aes256gcm16-prfsha256-x25519"], "rekey_time": 7200, "dpd_delay": 10}
    },
    "esp_groups": {"esp": {"proposals": ["aes256gcm16-x25519"], "rekey_time": 1800, "life_bytes": 10**9}},
}


def data(**variables):
    out = {"ipsec_ike_groups": GROUPS["ike_groups"], "ipsec_esp_groups": GROUPS["esp_groups"]}
    out.update({"ipsec_" + key: value for key, value in variables.items()})
    return copy.deepcopy(out)


def gateway(site, groups=("gateways",), **extra):
    values = {
        "ipsec_public_address": "192.0.2.%d" % site,
        "ipsec_lan_subnets": ["10.%d.0.0/24" % site],
        "group_names": list(groups),
    }
    values.update(extra)
    return values


HOSTS = {
    "hub": gateway(1, ("hubs", "gateways")),
    "s2": gateway(2, ("spokes", "gateways")),
    "s3": gateway(3, ("spokes", "gateways")),
    "s4": gateway(4, ("spokes", "gateways")),
    "client": {"group_names": ["clients"]},
}

STAR = {
    "name": "star",
    "type": "hub_and_spoke",
    "hub": "hub",
    "spokes_group": "spokes",
    "ike_group": "ike",
    "esp_group": "esp",
    "psk": "star-shared-secret-4b7e19",
}


def selectors(config, connection, child="lan"):
    entry = config["connections"][connection]["children"][child]
    return entry["local_ts"], entry["remote_ts"]


def loads(configs):
    for host, config in configs.items():
        parse_config(config, source=host)


def test_hub_and_spoke_with_three_spokes():
    configs = engine_configs(data(topologies=[STAR]), HOSTS)
    loads(configs)
    assert sorted(configs) == ["hub", "s2", "s3", "s4"]  # the client has no address and no tunnel
    hub = configs["hub"]
    assert list(hub["connections"]) == ["star-s2", "star-s3", "star-s4"]
    # The hub's side mirrors each spoke: its LAN and every other spoke's LAN <-> that spoke's LAN.
    assert selectors(hub, "star-s2") == (["10.1.0.0/24", "10.3.0.0/24", "10.4.0.0/24"], ["10.2.0.0/24"])
    assert selectors(hub, "star-s3") == (["10.1.0.0/24", "10.2.0.0/24", "10.4.0.0/24"], ["10.3.0.0/24"])
    assert selectors(hub, "star-s4") == (["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"], ["10.4.0.0/24"])
    # Each spoke: its LAN <-> the hub's LAN and the other spokes' LANs, through the hub.
    assert list(configs["s2"]["connections"]) == ["star-s2"]
    assert selectors(configs["s2"], "star-s2") == (
        ["10.2.0.0/24"],
        ["10.1.0.0/24", "10.3.0.0/24", "10.4.0.0/24"],
    )
    assert selectors(configs["s3"], "star-s3") == (
        ["10.3.0.0/24"],
        ["10.1.0.0/24", "10.2.0.0/24", "10.4.0.0/24"],
    )
    assert selectors(configs["s4"], "star-s4") == (
        ["10.4.0.0/24"],
        ["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"],
    )
    # Spokes initiate, the hub waits.
    assert hub["connections"]["star-s3"]["children"]["lan"]["start_action"] == "none"
    assert configs["s3"]["connections"]["star-s3"]["children"]["lan"]["start_action"] == "start"


def test_hub_and_spoke_connection_is_exactly_the_engine_config():
    configs = engine_configs(data(topologies=[STAR]), HOSTS)
    assert configs["s2"] == {
        "settings": {"listen": ["192.0.2.2"]},
        "connections": {
            "star-s2": {
                "local": {"address": "192.0.2.2"},
                "remote": {"address": "192.0.2.1"},
                "auth": "psk",
                "psk": "star-shared-secret-4b7e19",
                "ike_proposals": ["aes256gcm16-prfsha256-x25519"],
                "rekey_time": 7200,
                "dpd_delay": 10,
                "dpd_action": "restart",  # the initiating end brings a dead tunnel back
                "children": {
                    "lan": {
                        "local_ts": ["10.2.0.0/24"],
                        "remote_ts": ["10.1.0.0/24", "10.3.0.0/24", "10.4.0.0/24"],
                        "esp_proposals": ["aes256gcm16-x25519"],
                        "start_action": "start",
                        "rekey_time": 1800,
                        "life_bytes": 10**9,
                    }
                },
            }
        },
    }


def test_spokes_as_a_list_keep_their_order_and_the_hub_may_be_in_the_group():
    star = dict(STAR, spokes=["s4", "s2"])
    del star["spokes_group"]
    configs = engine_configs(data(topologies=[star]), HOSTS)
    assert list(configs["hub"]["connections"]) == ["star-s4", "star-s2"]
    # spokes_group "gateways" contains the hub: it is left out, not a spoke of itself.
    star = dict(STAR, spokes_group="gateways")
    configs = engine_configs(data(topologies=[star]), HOSTS)
    assert list(configs["hub"]["connections"]) == ["star-s2", "star-s3", "star-s4"]


def test_full_mesh_of_three_has_three_tunnels():
    mesh = {
        "name": "mesh",
        "type": "full_mesh",
        "members": ["s2", "s3", "s4"],
        "ike_group": "ike",
        "esp_group": "esp",
        "psk": "mesh-default-secret-c20d8",
        "psks": {"s4-s2": "mesh-secret-for-2-and-4"},
    }
    inventory = Inventory(data(topologies=[mesh]), HOSTS)
    assert [t.name for t in inventory.tunnels] == ["mesh-s2-s3", "mesh-s2-s4", "mesh-s3-s4"]
    configs = engine_configs(data(topologies=[mesh]), HOSTS)
    loads(configs)
    assert sorted(configs) == ["hub", "s2", "s3", "s4"]
    assert configs["hub"]["connections"] == {}  # has an address but no tunnel: an idle engine
    assert list(configs["s2"]["connections"]) == ["mesh-s2-s3", "mesh-s2-s4"]
    assert list(configs["s3"]["connections"]) == ["mesh-s2-s3", "mesh-s3-s4"]
    assert list(configs["s4"]["connections"]) == ["mesh-s2-s4", "mesh-s3-s4"]
    assert selectors(configs["s3"], "mesh-s2-s3") == (["10.3.0.0/24"], ["10.2.0.0/24"])
    assert selectors(configs["s3"], "mesh-s3-s4") == (["10.3.0.0/24"], ["10.4.0.0/24"])
    # The member listed first initiates.
    assert configs["s2"]["connections"]["mesh-s2-s3"]["children"]["lan"]["start_action"] == "start"
    assert configs["s3"]["connections"]["mesh-s2-s3"]["children"]["lan"]["start_action"] == "none"
    # Per-tunnel keys (either host order) override the topology's key.
    assert configs["s2"]["connections"]["mesh-s2-s4"]["psk"] == "mesh-secret-for-2-and-4"
    assert configs["s4"]["connections"]["mesh-s2-s4"]["psk"] == "mesh-secret-for-2-and-4"
    assert configs["s3"]["connections"]["mesh-s3-s4"]["psk"] == "mesh-default-secret-c20d8"


def test_unmanaged_peer():
    tunnel = {
        "name": "moon",
        "left": "hub",
        "right": {
            "address": "203.0.113.5",
            "id": "moon.example.com",
            "subnets": ["10.50.0.0/16"],
            "port": 4501,
        },
        "ike_group": "ike",
        "esp_group": "esp",
        "psk_file": "/etc/pyike/psk/moon",
        "encap": True,
    }
    hosts = {"hub": gateway(1, ipsec_id="hub.example.com", ipsec_listen=["0.0.0.0"])}
    configs = engine_configs(data(tunnels=[tunnel]), hosts)
    assert configs == {
        "hub": {
            "settings": {"listen": ["0.0.0.0"]},
            "connections": {
                "moon": {
                    "local": {"address": "192.0.2.1", "id": "hub.example.com"},
                    "remote": {"address": "203.0.113.5", "id": "moon.example.com", "port": 4501},
                    "auth": "psk",
                    "psk_file": "/etc/pyike/psk/moon",
                    "ike_proposals": ["aes256gcm16-prfsha256-x25519"],
                    "rekey_time": 7200,
                    "dpd_delay": 10,
                    "dpd_action": "restart",  # the initiating end brings a dead tunnel back
                    "encap": True,
                    "children": {
                        "lan": {
                            "local_ts": ["10.1.0.0/24"],
                            "remote_ts": ["10.50.0.0/16"],
                            "esp_proposals": ["aes256gcm16-x25519"],
                            "start_action": "start",
                            "rekey_time": 1800,
                            "life_bytes": 10**9,
                        }
                    },
                }
            },
        }
    }


def test_unmanaged_peer_on_the_left_initiates_and_the_host_waits():
    tunnel = {
        "name": "road",
        "left": {"address": "%any", "id": "%any", "subnets": ["10.60.0.0/24"]},
        "right": "hub",
        "ike_group": "ike",
        "esp_group": "esp",
        "psk": "road-warrior-secret-9a3f6",
    }
    configs = engine_configs(data(tunnels=[tunnel]), {"hub": gateway(1)})
    loads(configs)
    conn = configs["hub"]["connections"]["road"]
    assert conn["remote"] == {"address": "%any", "id": "%any"}
    assert conn["children"]["lan"] == dict(
        conn["children"]["lan"], local_ts=["10.1.0.0/24"], remote_ts=["10.60.0.0/24"], start_action="none"
    )


def test_explicit_children_and_start_action_none():
    tunnel = {
        "name": "hq",
        "left": "s2",
        "right": "s3",
        "ike_group": "ike",
        "esp_group": "esp",
        "psk": "hq-secret-value-71e0c5d2",
        "start_action": "none",
        "children": [
            {"name": "web", "right_ts": ["10.3.0.80/32[tcp/443]"]},
            {"name": "mgmt", "left_ts": ["10.2.9.0/24"], "right_ts": ["10.3.9.0/24"]},
        ],
    }
    configs = engine_configs(data(tunnels=[tunnel]), HOSTS)
    loads(configs)
    assert selectors(configs["s2"], "hq", "web") == (["10.2.0.0/24"], ["10.3.0.80/32[tcp/443]"])
    assert selectors(configs["s3"], "hq", "web") == (["10.3.0.80/32[tcp/443]"], ["10.2.0.0/24"])
    assert selectors(configs["s3"], "hq", "mgmt") == (["10.3.9.0/24"], ["10.2.9.0/24"])
    assert {c["start_action"] for c in configs["s2"]["connections"]["hq"]["children"].values()} == {"none"}


def test_configs_without_secrets_keys_apart_and_where_they_come_from():
    tunnel = {"name": "moon", "left": "hub", "right": {"address": "203.0.113.5", "subnets": ["10.50.0.0/16"]}}
    tunnel.update(ike_group="ike", esp_group="esp", psk_file="/etc/pyike/psk/moon")
    inventory = Inventory(data(topologies=[STAR], tunnels=[tunnel]), HOSTS)
    configs = build_configs(inventory, include_secrets=False, limit=["hub", "s2"])
    assert list(configs) == ["hub", "s2"]
    conn = configs["s2"]["connections"]["star-s2"]
    assert "psk" not in conn and "psk_file" not in conn
    assert configs["hub"]["connections"]["moon"]["psk_file"] == "/etc/pyike/psk/moon"
    assert "star-shared-secret-4b7e19" not in repr(configs)
    assert "star-shared-secret-4b7e19" not in repr(inventory.tunnels)
    assert "star-shared-secret-4b7e19" not in repr([t.summary() for t in inventory.tunnels])
    # A configuration without its keys cannot be loaded by mistake.
    with pytest.raises(ConfigError, match="one of psk or psk_file is required"):
        parse_config(configs["s2"])
    assert build_secrets(inventory, ["hub", "s2"]) == {
        "hub": {
            "star-s2": "star-shared-secret-4b7e19",
            "star-s3": "star-shared-secret-4b7e19",
            "star-s4": "star-shared-secret-4b7e19",
        },
        "s2": {"star-s2": "star-shared-secret-4b7e19"},
    }
    assert psk_refs(inventory, ["hub"]) == {
        "hub": {
            "moon": "psk_file:/etc/pyike/psk/moon",
            "star-s2": "ipsec_topologies[0].psk",
            "star-s3": "ipsec_topologies[0].psk",
            "star-s4": "ipsec_topologies[0].psk",
        }
    }
    # Keys put back per connection give exactly the full configuration.
    full = build_configs(inventory, include_secrets=True)
    for host, secrets in build_secrets(inventory).items():
        merged = copy.deepcopy(build_configs(inventory, include_secrets=False)[host])
        for name, key in secrets.items():
            merged["connections"][name]["psk"] = key
        assert merged["connections"].keys() == full[host]["connections"].keys()
        for name in merged["connections"]:
            assert sorted(merged["connections"][name].items(), key=repr) == sorted(
                full[host]["connections"][name].items(), key=repr
            )


def test_host_names_that_are_not_valid_connection_names_are_made_safe():
    hosts = {"gw1.example.com": gateway(1), "gw2.example.com": gateway(2)}
    mesh = {"name": "m", "type": "full_mesh", "members_group": "all", "ike_group": "ike", "esp_group": "esp"}
    mesh["psks"] = {"gw2.example.com-gw1.example.com": "dotted-names-secret-e60f"}
    configs = engine_configs(data(topologies=[mesh]), hosts)
    loads(configs)
    assert list(configs["gw2.example.com"]["connections"]) == ["m-gw1-example-com-gw2-example-com"]


def test_groups_come_from_group_names_or_from_ansible():
    star = dict(STAR, spokes_group="east")
    hosts = copy.deepcopy(HOSTS)
    hosts["s3"]["group_names"].append("east")
    assert list(engine_configs(data(topologies=[star]), hosts)["hub"]["connections"]) == ["star-s3"]
    groups = {"all": list(HOSTS), "east": ["s4", "s2"]}
    assert list(engine_configs(data(topologies=[star]), HOSTS, groups)["hub"]["connections"]) == [
        "star-s4",
        "star-s2",
    ]


def test_null_variables_count_as_unset():
    hosts = {"gw1": dict(gateway(1), ipsec_id=None), "gw2": gateway(2)}
    inventory_data = data(tunnels=None, topologies=None)
    assert validate_inventory(inventory_data, hosts) == []
    assert engine_configs(inventory_data, hosts) == {
        "gw1": {"settings": {"listen": ["192.0.2.1"]}, "connections": {}},
        "gw2": {"settings": {"listen": ["192.0.2.2"]}, "connections": {}},
    }


def test_every_problem_is_reported_at_once():
    tunnels = [
        {
            "name": "a",
            "left": "s2",
            "right": "nowhere",
            "ike_group": "ike",
            "esp_group": "esp",
            "psk": "key-one-of-the-a-tunnel",
        },
        {
            "name": "b",
            "left": "s2",
            "right": "s3",
            "ike_group": "nope",
            "esp_group": "esp",
            "psk": "key-two-of-the-b-tunnel",
        },
        {
            "name": "c",
            "left": "s3",
            "right": "s4",
            "ike_group": "ike",
            "esp_group": "esp",
            "psk": "key-three-of-the-c-tunnel",
            "children": [{"name": "x", "left_ts": ["10.3.0.0/24", "10.0.0.0/33"]}],
        },
    ]
    with pytest.raises(InventoryError) as caught:
        engine_configs(data(tunnels=tunnels), HOSTS)
    assert [str(p) for p in caught.value.problems] == [
        "ipsec_tunnels[0].right: unknown host 'nowhere': it is not in the inventory",
        "ipsec_tunnels[1].ike_group: unknown IKE group 'nope' (ipsec_ike_groups defines: ike)",
        "ipsec_tunnels[2].children[0].left_ts[1]: '10.0.0.0/33' is not a valid network",
    ]


def test_overlap_between_a_topology_and_a_tunnel_is_found_on_the_shared_host():
    direct = {
        "name": "direct",
        "left": "s2",
        "right": "s4",
        "ike_group": "ike",
        "esp_group": "esp",
        "psk": "key-of-the-d-tunnel-83be",
    }
    problems = [str(p) for p in validate_inventory(data(topologies=[STAR], tunnels=[direct]), HOSTS)]
    # Explicit tunnels come first, so the generated one is blamed, on each host that has both.
    assert problems == [
        "ipsec_topologies[0]: on s2, the selectors of tunnel 'star-s2' child 'lan' overlap those of tunnel "
        "'direct' child 'lan' (ipsec_tunnels[0]): traffic 10.2.0.0/24 <-> 10.4.0.0/24 would match both",
        "ipsec_topologies[0]: on s4, the selectors of tunnel 'star-s4' child 'lan' overlap those of tunnel "
        "'direct' child 'lan' (ipsec_tunnels[0]): traffic 10.4.0.0/24 <-> 10.2.0.0/24 would match both",
    ]


def test_what_only_the_engine_refuses_is_still_reported(monkeypatch):
    from pyike_inventory import build

    original = build.build_configs

    def broken(inventory, include_secrets=True, limit=None):
        configs = original(inventory, include_secrets, limit)
        configs["s2"]["settings"]["tun_mtu"] = 10
        return configs

    monkeypatch.setattr(build, "build_configs", broken)
    problems = [str(p) for p in validate_inventory(data(topologies=[STAR]), HOSTS)]
    # Reported where it comes from: the host's settings; a connection's problem at its tunnel's path.
    assert problems == [
        "hostvars.s2: the engine refuses the configuration generated for s2: settings.tun_mtu: must be at least "
        "576, got 10"
    ]
