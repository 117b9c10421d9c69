"""The inventory model of the engine's options, as it reaches each gateway's engine configuration:
lifetimes, DPD, reauthentication and retransmission, the TUN MTU, an ESP group per child, a gateway
behind 1:1 NAT, %any spokes behind a hub, two hubs, and a deliberate default route.  Every
configuration is also loaded by the engine's own parse_config."""

from __future__ import annotations

import ipaddress

from inventory_cases import CORPUS_DIR, load_inventory
from pyike.config import parse_config
from pyike_inventory import engine_configs

PSK = "engine-options-psk-6c1f0a9e3b7d"


def _configs(data, hosts, groups=None):
    configs = engine_configs(data, hosts, groups)
    for host, config in configs.items():
        parse_config(config, source=host)
    return configs


def _corpus(case):
    return _configs(*load_inventory(CORPUS_DIR / case))


def test_group_options_and_settings_reach_the_engine():
    data = {
        "ipsec_ike_groups": {
            "ike": {
                "proposals": ["aes256gcm16-prfsha256-x25519"],
                "rekey_time": 7200,
                "reauth_time": 86400,
                "dpd_delay": 20,
                "dpd_action": "clear",
            }
        },
        "ipsec_esp_groups": {
            "esp": {"proposals": ["aes256gcm16"], "rekey_bytes": 2000000000, "life_bytes": 3000000000},
            "voice": {"proposals": ["aes128gcm16-x25519"], "rekey_packets": 1000000, "life_packets": 2000000},
        },
        "ipsec_tunnels": [
            {
                "name": "t",
                "left": "gw1",
                "right": "gw2",
                "ike_group": "ike",
                "esp_group": "esp",
                "psk": PSK,
                "children": [
                    {"name": "lan", "right_ts": ["10.2.0.0/25"]},
                    {"name": "voice", "right_ts": ["10.2.0.128/25"], "esp_group": "voice"},
                ],
            }
        ],
    }
    hosts = {
        "gw1": {
            "ipsec_public_address": "192.0.2.1",
            "ipsec_lan_subnets": ["10.1.0.0/24"],
            "ipsec_tun_mtu": 1380,
            "ipsec_retransmit_timeout": 1.5,
            "ipsec_retransmit_base": 2,
            "ipsec_retransmit_tries": 7,
        },
        "gw2": {"ipsec_public_address": "198.51.100.1", "ipsec_lan_subnets": ["10.2.0.0/24"]},
    }
    configs = _configs(data, hosts)
    assert configs["gw1"]["settings"] == {
        "listen": ["192.0.2.1"],
        "tun_mtu": 1380,
        "retransmit_timeout": 1.5,
        "retransmit_base": 2,
        "retransmit_tries": 7,
    }
    assert configs["gw2"]["settings"] == {"listen": ["198.51.100.1"]}
    for host in ("gw1", "gw2"):
        conn = configs[host]["connections"]["t"]
        assert (conn["rekey_time"], conn["reauth_time"], conn["dpd_delay"]) == (7200, 86400, 20)
        assert "dpd_action" not in conn  # clear is the engine's default
        lan, voice = conn["children"]["lan"], conn["children"]["voice"]
        assert lan["esp_proposals"] == ["aes256gcm16"]
        assert (lan["rekey_bytes"], lan["life_bytes"]) == (2000000000, 3000000000)
        assert voice["esp_proposals"] == ["aes128gcm16-x25519"]
        assert (voice["rekey_packets"], voice["life_packets"]) == (1000000, 2000000)


def test_dpd_action_restart_only_on_the_initiating_end():
    configs = _corpus("issue/warn-sha1.yml")
    assert configs["gw1"]["connections"]["t"]["dpd_action"] == "restart"
    assert "dpd_action" not in configs["gw2"]["connections"]["t"]


def test_a_gateway_behind_one_to_one_nat():
    configs = _corpus("identities/nat-local-address.yml")
    mine = configs["gw1"]["connections"]["t"]
    # It binds and sends from the local address, and shows the public one as its identity, which
    # is what the peer expects by default; the peer sends to the public address.
    assert mine["local"] == {"address": "172.31.5.10", "id": "192.0.2.1"}
    assert configs["gw1"]["settings"]["listen"] == ["172.31.5.10"]
    assert configs["gw2"]["connections"]["t"]["remote"] == {"address": "192.0.2.1"}


def test_a_spoke_with_a_dynamic_address_behind_a_hub():
    configs = _corpus("identities/dynamic-spoke.yml")
    hub, spoke = configs["gw1"]["connections"]["star-gw2"], configs["gw2"]["connections"]["star-gw2"]
    assert hub["remote"] == {"address": "%any", "id": "gw2.example.com"}
    assert hub["children"]["lan"]["start_action"] == "none"
    assert spoke["local"] == {"address": "192.168.1.10", "id": "gw2.example.com"}
    assert spoke["remote"] == {"address": "192.0.2.1"}
    assert spoke["children"]["lan"]["start_action"] == "start"


def test_two_hubs_give_every_spoke_a_tunnel_to_each():
    configs = _corpus("identities/two-hubs.yml")
    assert sorted(configs["gw3"]["connections"]) == ["star-gw1-gw3", "star-gw2-gw3"]
    assert sorted(configs["gw4"]["connections"]) == ["star-gw1-gw4", "star-gw2-gw4"]
    assert sorted(configs["gw1"]["connections"]) == ["star-gw1-gw3", "star-gw1-gw4"]
    to_second = configs["gw3"]["connections"]["star-gw2-gw3"]
    assert to_second["remote"]["address"] == "192.0.2.2"
    assert to_second["children"]["lan"]["remote_ts"] == ["10.1.1.0/24", "10.4.0.0/24"]


def _covers(selectors, address):
    address = int(ipaddress.ip_address(address))
    for text in selectors:
        if "-" in text:
            start, end = (int(ipaddress.ip_address(part)) for part in text.split("-"))
        else:
            network = ipaddress.ip_network(text)
            start, end = int(network.network_address), int(network.broadcast_address)
        if start <= address <= end:
            return True
    return False


def test_a_deliberate_default_route_leaves_out_what_must_not_enter_the_tunnel():
    configs = _corpus("issue/default-route-deliberate.yml")
    captured = configs["gw1"]["connections"]["t"]["children"]["all"]["remote_ts"]
    assert configs["gw2"]["connections"]["t"]["children"]["all"]["local_ts"] == captured
    for outside in ("198.51.100.1", "192.0.2.1", "10.1.0.7", "127.0.0.1", "169.254.1.1"):
        assert not _covers(captured, outside), outside
    for inside in ("8.8.8.8", "10.2.0.5", "198.51.100.2", "192.0.2.2", "10.9.9.9"):
        assert _covers(captured, inside), inside


def _trap_inventory(**tunnel):
    data = {
        "ipsec_ike_groups": {"ike": {"proposals": ["aes256gcm16-prfsha256-x25519"]}},
        "ipsec_esp_groups": {"esp": {"proposals": ["aes256gcm16"]}},
        "ipsec_tunnels": [
            {
                "name": "t",
                "left": "gw1",
                "right": "gw2",
                "ike_group": "ike",
                "esp_group": "esp",
                "psk": PSK,
                **tunnel,
            }
        ],
    }
    hosts = {
        "gw1": {"ipsec_public_address": "192.0.2.1", "ipsec_lan_subnets": ["10.1.0.0/24"]},
        "gw2": {"ipsec_public_address": "198.51.100.1", "ipsec_lan_subnets": ["10.2.0.0/24"]},
    }
    return _configs(data, hosts)


def test_a_trapped_tunnel_initiates_on_traffic_and_comes_back_on_traffic():
    configs = _trap_inventory(start_action="trap", close_action="trap")
    left, right = configs["gw1"]["connections"]["t"], configs["gw2"]["connections"]["t"]
    assert (left["children"]["lan"]["start_action"], left["children"]["lan"]["close_action"]) == (
        "trap",
        "trap",
    )
    assert left["dpd_action"] == "trap"  # a dead peer: initiate again on the next packet
    assert right["children"]["lan"]["start_action"] == "none"
    assert "close_action" not in right["children"]["lan"] and "dpd_action" not in right


def test_close_action_start_and_an_explicit_dpd_action():
    configs = _trap_inventory(close_action="start")
    left = configs["gw1"]["connections"]["t"]
    assert left["children"]["lan"]["close_action"] == "start"
    assert left["dpd_action"] == "restart"
    assert "close_action" not in configs["gw2"]["connections"]["t"]["children"]["lan"]


def test_an_unmanaged_peer_by_dns_name_reaches_the_engine_as_a_name_with_its_id():
    data = {
        "ipsec_ike_groups": {"ike": {"proposals": ["aes256gcm16-prfsha256-x25519"]}},
        "ipsec_esp_groups": {"esp": {"proposals": ["aes256gcm16"]}},
        "ipsec_tunnels": [
            {
                "name": "branch",
                "left": "gw1",
                "right": {
                    "address": "VPN.Branch.example.",
                    "id": "vpn.branch.example",
                    "subnets": ["10.9.0.0/24"],
                },
                "ike_group": "ike",
                "esp_group": "esp",
                "psk": PSK,
            }
        ],
    }
    hosts = {"gw1": {"ipsec_public_address": "192.0.2.1", "ipsec_lan_subnets": ["10.1.0.0/24"]}}
    conn = _configs(data, hosts)["gw1"]["connections"]["branch"]
    assert conn["remote"] == {"address": "vpn.branch.example", "id": "vpn.branch.example"}
    assert conn["dpd_action"] == "restart"
