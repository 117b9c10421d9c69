"""Traps in the SPD: policies without an SA that call for one (RFC 4301 §4.4.1, §5.1)."""

from __future__ import annotations

from esp_packets import CIPHER_CASES, cipher_for, ipv4
from pyike.esp import SPD, OutboundSA, Policy, TrafficSelector

net = TrafficSelector.from_network


def out_sa(spi: int) -> OutboundSA:
    return OutboundSA(spi, cipher_for(CIPHER_CASES[0], seed=spi))


def trap(name, local, remote, seen):
    return Policy(name, [net(local)], [net(remote)], acquire=lambda policy, packet: seen.append((policy.name,
                  bytes(packet))))  # fmt: skip


def test_a_packet_that_meets_a_trap_goes_to_its_acquire_and_is_no_drop():
    spd, seen = SPD(), []
    spd.add(trap("trap:s2s/net", "10.1.0.0/24", "10.2.0.0/24", seen))
    packet = ipv4("10.1.0.10", "10.2.0.10")
    assert spd.lookup(packet) is None
    assert seen == [("trap:s2s/net", packet)]
    assert spd.drops.no_sa == 0 and spd.drops.no_policy == 0
    assert spd.lookup(ipv4("10.1.0.10", "10.3.0.10")) is None and spd.drops.no_policy == 1


def test_the_child_sa_policy_wins_over_its_trap_whatever_the_order():
    for order in (0, 1):
        spd, seen = SPD(), []
        policies = [trap("trap", "10.1.0.0/24", "10.2.0.0/24", seen), Policy("sa", [net("10.1.0.0/24")],
                    [net("10.2.0.0/24")], out_sa(1))]  # fmt: skip
        for policy in policies if order else reversed(policies):
            spd.add(policy)
        assert spd.lookup(ipv4("10.1.0.10", "10.2.0.10")).spi == 1
        assert seen == []


def test_a_narrowed_child_sa_leaves_the_rest_to_the_trap_and_a_narrower_trap_wins_over_a_wide_sa():
    spd, seen = SPD(), []
    spd.add(trap("trap:wide", "10.1.0.0/24", "10.2.0.0/24", seen))
    spd.add(Policy("narrowed", [net("10.1.0.0/24")], [net("10.2.0.0/25")], out_sa(1)))
    assert spd.lookup(ipv4("10.1.0.10", "10.2.0.10")).spi == 1
    assert spd.lookup(ipv4("10.1.0.10", "10.2.0.200")) is None and [n for n, _p in seen] == ["trap:wide"]
    spd.add(trap("trap:host", "10.1.0.0/24", "10.2.0.7/32", seen))
    assert spd.lookup(ipv4("10.1.0.10", "10.2.0.7")) is None
    assert [n for n, _p in seen] == ["trap:wide", "trap:host"]
    spd.remove("trap:host")
    assert spd.lookup(ipv4("10.1.0.10", "10.2.0.7")).spi == 1
