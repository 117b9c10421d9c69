"""Traffic selector narrowing through two in-process engines (RFC 7296 §2.9, §3.13.1).

The inventory checker and the engine narrow with the same function, so a tunnel the inventory
accepts is one the engines agree on; selectors of TS types other than 7/8 are ignored.
"""

from __future__ import annotations

import random

from ike_harness import LEFT, RIGHT, Net, _engine, pair
from pyike.config import parse_config
from pyike.crypto.proposals import parse_proposals
from pyike.ids import ExchangeType, ProtocolId
from pyike.ike.events import ChildSaUp, Failure
from pyike.ike.policy import ChildPolicy, policy_from_config
from pyike.ike.sa import ESTABLISHED
from pyike.selectors import TrafficSelector
from pyike.wire import RawSelector
from pyike.wire.message import decode_message
from pyike_inventory import engine_configs, validate_inventory

TS_SECLABEL = 10  # RFC 9478
SECLABEL = RawSelector(TS_SECLABEL, 0, b"system_u:object_r:ipsec_spd_t:s0\x00")


def exchanges(net):
    return [decode_message(d.data).header.exchange for d in net.wire]


def net_ts(*texts):
    return [TrafficSelector.parse(text) for text in texts]


def test_inventory_and_engines_agree_on_opaque_port_selectors():
    """Regression: the engine's own narrowing dropped OPAQUE ports ([udp/opaque]), which the inventory
    checker keeps, so an accepted inventory gave TS_UNACCEPTABLE at run time."""
    inventory = {
        "ipsec_ike_groups": {"ike": {"proposals": ["aes256gcm16-prfsha256-x25519"]}},
        "ipsec_esp_groups": {"esp": {"proposals": ["aes256gcm16"]}},
        "ipsec_tunnels": [
            {
                "name": "frag",
                "left": "gw1",
                "right": "gw2",
                "ike_group": "ike",
                "esp_group": "esp",
                "psk": "frag-tunnel-secret-of-28-chars",
                "children": [
                    {"name": "lan", "left_ts": ["10.1.0.0/24[udp/opaque]"], "right_ts": ["10.2.0.0/24[udp]"]}
                ],
            }
        ],
    }
    hosts = {
        "gw1": {"ipsec_public_address": LEFT, "ipsec_lan_subnets": ["10.1.0.0/24"], "group_names": ["gw"]},
        "gw2": {"ipsec_public_address": RIGHT, "ipsec_lan_subnets": ["10.2.0.0/24"], "group_names": ["gw"]},
    }
    assert validate_inventory(inventory, hosts) == []
    configs = engine_configs(inventory, hosts)
    engines = {}
    for seed, (host, address) in enumerate((("gw1", LEFT), ("gw2", RIGHT))):
        conn = parse_config(configs[host], source=host).connections["frag"]
        engines[address] = _engine(policy_from_config(conn), random.Random(seed))
    net = Net(engines)
    engines[LEFT].initiate("frag", None, now=0.0)
    net.run()
    assert not net.of(LEFT, Failure) and not net.of(RIGHT, Failure)
    (left_up,), (right_up,) = net.of(LEFT, ChildSaUp), net.of(RIGHT, ChildSaUp)
    assert left_up.local_ts == right_up.remote_ts == net_ts("10.1.0.0/24[udp/opaque]")
    assert left_up.remote_ts == right_up.local_ts == net_ts("10.2.0.0/24[udp]")


def test_a_seclabel_selector_in_ike_auth_is_ignored():
    net, left, _right = pair()
    child = left.policies["s2s"].children["net"]
    child.local_ts.append(SECLABEL)  # what a peer doing labeled IPsec (RFC 9478) also proposes
    child.remote_ts.insert(0, SECLABEL)
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert not net.of(LEFT, Failure) and not net.of(RIGHT, Failure)
    (left_up,), (right_up,) = net.of(LEFT, ChildSaUp), net.of(RIGHT, ChildSaUp)
    assert right_up.remote_ts == left_up.local_ts == net_ts("10.1.0.0/24")
    assert right_up.local_ts == left_up.remote_ts == net_ts("10.2.0.0/24")
    assert exchanges(net) == [ExchangeType.IKE_SA_INIT] * 2 + [ExchangeType.IKE_AUTH] * 2


def test_a_seclabel_selector_in_create_child_sa_is_ignored():
    net, left, right = pair()
    esp = parse_proposals("aes256gcm16", ProtocolId.ESP)
    left.policies["s2s"].children["web"] = ChildPolicy(
        "web", [SECLABEL, *net_ts("10.1.1.80/32[tcp]")], [*net_ts("10.2.0.0/24"), SECLABEL], esp
    )
    right.policies["s2s"].children["web"] = ChildPolicy(
        "web", net_ts("10.2.0.0/24[tcp/80-443]"), net_ts("10.1.1.0/24"), esp
    )
    left.initiate("s2s", None, now=0.0)
    net.run()
    left.initiate("s2s", "web", now=1.0)  # the IKE SA is up: the new child comes with CREATE_CHILD_SA
    net.run(now=1.0)
    assert exchanges(net)[-2:] == [ExchangeType.CREATE_CHILD_SA] * 2
    assert not net.of(LEFT, Failure) and not net.of(RIGHT, Failure)
    left_web = [e for e in net.of(LEFT, ChildSaUp) if e.child == "web"]
    right_web = [e for e in net.of(RIGHT, ChildSaUp) if e.child == "web"]
    assert len(left_web) == len(right_web) == 1
    assert left_web[0].local_ts == right_web[0].remote_ts == net_ts("10.1.1.80/32[tcp]")
    assert left_web[0].remote_ts == right_web[0].local_ts == net_ts("10.2.0.0/24[tcp/80-443]")


def test_only_a_seclabel_selector_gives_ts_unacceptable_and_keeps_the_ike_sa():
    net, left, right = pair()
    left.policies["s2s"].children["net"].local_ts[:] = [SECLABEL]
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert not net.of(LEFT, ChildSaUp) and not net.of(RIGHT, ChildSaUp)
    assert any("TS_UNACCEPTABLE" in f.reason for f in net.of(RIGHT, Failure))
    assert any("TS_TYPE_10(" in f.reason for f in net.of(RIGHT, Failure))
    assert [sa.state for sa in left.sas.values()] == [sa.state for sa in right.sas.values()] == [ESTABLISHED]
