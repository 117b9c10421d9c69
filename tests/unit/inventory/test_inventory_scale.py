"""How the checks across tunnels grow with the inventory: counted in selector comparisons
(Inventory.comparisons), not in seconds, so that the test means the same on a busy machine.

A hub with N spokes has N tunnels; a full mesh of M members has M(M-1)/2.  The checks must stay
linear in the tunnels (and their selectors): comparing every pair of tunnels, as the checker once
did, grows with the square of the tunnels and fails here.  bench/validate_scale.py measures the time.
"""

from __future__ import annotations

import ipaddress

from pyike_inventory import Inventory

PSK = "scale-test-psk-0f8e2d71c4a9b5e6"
GROUPS = {
    "ipsec_ike_groups": {"ike": {"proposals": ["aes256gcm16-prfsha256-x25519"]}},
    "ipsec_esp_groups": {"esp": {"proposals": ["aes256gcm16"]}},
}


def _host(index: int):
    return {
        "ipsec_public_address": str(ipaddress.ip_address("100.64.0.0") + index),
        "ipsec_lan_subnets": ["10.%d.%d.0/24" % (index >> 8, index & 0xFF)],
    }


def hub_and_spoke(spokes: int) -> Inventory:
    hosts = {"s%d" % i: _host(i) for i in range(1, spokes + 1)}
    hosts["hub"] = {"ipsec_public_address": "192.0.2.1", "ipsec_lan_subnets": ["172.16.0.0/24"]}
    topology = {"name": "star", "type": "hub_and_spoke", "hub": "hub", "spokes_group": "spokes"}
    data = {**GROUPS, "ipsec_topologies": [{**topology, "ike_group": "ike", "esp_group": "esp", "psk": PSK}]}
    groups = {"all": list(hosts), "spokes": ["s%d" % i for i in range(1, spokes + 1)]}
    return Inventory(data, hosts, groups, engine="builtin")


def full_mesh(members: int) -> Inventory:
    hosts = {"m%d" % i: _host(i) for i in range(1, members + 1)}
    topology = {"name": "mesh", "type": "full_mesh", "members_group": "all"}
    data = {**GROUPS, "ipsec_topologies": [{**topology, "ike_group": "ike", "esp_group": "esp", "psk": PSK}]}
    return Inventory(data, hosts, {"all": list(hosts)}, engine="builtin")


def _per_tunnel(inventory: Inventory) -> float:
    assert inventory.problems == []
    assert inventory.comparisons[0] > 0
    return inventory.comparisons[0] / len(inventory.tunnels)


def test_hub_and_spoke_comparisons_grow_linearly():
    small, large = hub_and_spoke(100), hub_and_spoke(800)
    assert len(large.tunnels) == 8 * len(small.tunnels)
    # Linear: the same per tunnel (within a quarter); pairwise would be 8 times as many per tunnel.
    assert _per_tunnel(large) <= 1.25 * _per_tunnel(small)


def test_full_mesh_comparisons_grow_with_the_tunnels_not_their_square():
    small, large = full_mesh(10), full_mesh(40)
    assert len(large.tunnels) == 780 and len(small.tunnels) == 45
    # Every member has M-1 tunnels to compare on its side: linear in the tunnels overall.  Pairs of
    # tunnels per member would give about 4 times as many per tunnel here, pairs overall 17 times.
    assert _per_tunnel(large) <= 1.5 * _per_tunnel(small)


def test_an_overlap_is_still_found_in_a_large_hub():
    """The sweep that keeps the count low still finds the one overlapping pair among a thousand."""
    inventory = hub_and_spoke(1000)
    assert inventory.problems == []
    hosts = {name: dict(values) for name, values in inventory.raw_hosts.items()}
    hosts["s1000"]["ipsec_lan_subnets"] = ["10.0.1.0/24"]  # s1's LAN
    again = Inventory(inventory.data, hosts, inventory.groups, engine="builtin")
    assert any("10.0.1.0/24" in str(problem) for problem in again.problems)
