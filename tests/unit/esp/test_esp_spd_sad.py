"""SPD policy order and caching; SAD dispatch and make-before-break rekey."""

from __future__ import annotations

import pytest
from esp_packets import CIPHER_CASES, cipher_for, ipv4, ipv6
from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.esp import SAD, SPD, InboundSA, OutboundSA, Policy, TrafficSelector, flow_key

net = TrafficSelector.from_network


def out_sa(spi: int) -> OutboundSA:
    return OutboundSA(spi, cipher_for(CIPHER_CASES[0], seed=spi))


def test_most_specific_policy_wins_regardless_of_insertion_order():
    spd = SPD()
    site, host, web = out_sa(1), out_sa(2), out_sa(3)
    spd.add(Policy("site", [net("10.1.0.0/16")], [net("10.2.0.0/16")], site))
    spd.add(
        Policy(
            "web", [net("10.1.0.0/16")], [net("10.2.0.0/16", protocol=6, start_port=443, end_port=443)], web
        )
    )
    spd.add(Policy("host", [net("10.1.0.0/16")], [net("10.2.7.7/32")], host))
    assert spd.lookup(ipv4("10.1.0.1", "10.2.0.1")) is site
    assert spd.lookup(ipv4("10.1.0.1", "10.2.7.7", proto=6, dport=443)) is host  # narrower address first
    assert spd.lookup(ipv4("10.1.0.1", "10.2.0.9", proto=6, dport=443)) is web
    assert spd.lookup(ipv4("10.1.0.1", "10.2.0.9", proto=6, dport=80)) is site
    assert spd.lookup(ipv4("10.1.0.1", "10.2.0.9", proto=17, dport=443)) is site


def test_priority_overrides_specificity():
    spd = SPD()
    broad, narrow = out_sa(1), out_sa(2)
    spd.add(Policy("narrow", [net("10.1.0.0/16")], [net("10.2.0.0/24")], narrow))
    spd.add(Policy("broad", [net("10.0.0.0/8")], [net("10.0.0.0/8")], broad, priority=-1))
    assert spd.lookup(ipv4("10.1.0.1", "10.2.0.1")) is broad


def test_multiple_selectors_and_ipv6():
    spd = SPD()
    sa = out_sa(1)
    spd.add(
        Policy(
            "dual",
            [net("10.1.0.0/16"), net("2001:db8:1::/48")],
            [net("10.2.0.0/16"), net("2001:db8:2::/48")],
            sa,
        )
    )
    assert spd.lookup(ipv4("10.1.0.1", "10.2.0.1")) is sa
    assert spd.lookup(ipv6("2001:db8:1::5", "2001:db8:2::5")) is sa
    assert spd.lookup(ipv6("2001:db8:1::5", "2001:db8:3::5")) is None
    assert spd.lookup(ipv4("10.2.0.1", "10.1.0.1")) is None  # reverse direction is not outbound
    assert spd.drops.no_policy == 2


def test_drops_are_counted():
    spd = SPD()
    spd.add(Policy("pending", [net("10.1.0.0/16")], [net("10.2.0.0/16")]))
    assert spd.lookup(ipv4("10.1.0.1", "10.2.0.1")) is None
    assert spd.lookup(ipv4("10.9.0.1", "10.2.0.1")) is None
    assert spd.lookup(b"\x45\x00") is None
    assert spd.lookup(b"") is None
    assert spd.drops.as_dict() == {"bad_inner": 2, "no_policy": 1, "no_sa": 1}


def test_switch_sa_takes_effect_on_cached_flows():
    spd = SPD()
    old, new = out_sa(1), out_sa(2)
    spd.add(Policy("p", [net("10.1.0.0/16")], [net("10.2.0.0/16")], old))
    packet = ipv4("10.1.0.1", "10.2.0.1")
    assert spd.lookup(packet) is old
    assert spd.switch_sa("p", new) is old
    assert spd.lookup(packet) is new
    with pytest.raises(KeyError):
        spd.switch_sa("missing", new)


def test_policy_changes_invalidate_the_cache():
    spd = SPD()
    site, host = out_sa(1), out_sa(2)
    spd.add(Policy("site", [net("10.1.0.0/16")], [net("10.2.0.0/16")], site))
    packet = ipv4("10.1.0.1", "10.2.7.7")
    assert spd.lookup(packet) is site
    spd.add(Policy("host", [net("10.1.0.0/16")], [net("10.2.7.7/32")], host))
    assert spd.lookup(packet) is host
    assert spd.remove("host").sa is host
    assert spd.lookup(packet) is site
    assert spd.replace(Policy("site", [net("10.1.0.0/16")], [net("10.3.0.0/16")], site)) is not None
    assert spd.lookup(packet) is None
    assert spd.remove("nothing") is None
    with pytest.raises(ValueError, match="already exists"):
        spd.add(Policy("site", [net("10.1.0.0/16")], [net("10.3.0.0/16")]))
    assert [p.name for p in spd.policies] == ["site"] and len(spd) == 1 and spd.get("site") is not None


def _reference(policies, packet):
    """Linear search in the documented order, no cache."""
    key = flow_key(packet)
    version, src, dst, proto, sport, dport = key
    s, d = int.from_bytes(src, "big"), int.from_bytes(dst, "big")
    candidates = []
    for order, policy in enumerate(policies):
        for lo in policy.local:
            for re in policy.remote:
                if lo.covers(version, s, proto, sport) and re.covers(version, d, proto, dport):
                    specific = 0 if (lo.protocol or re.protocol) else 1
                    rank = (policy.priority, re.end - re.start, lo.end - lo.start, specific)
                    ports = (max(re.end_port - re.start_port, -1), max(lo.end_port - lo.start_port, -1))
                    candidates.append((*rank, *ports, order, policy))
    return min(candidates, key=lambda c: c[:-1])[-1] if candidates else None


prefix = st.tuples(st.integers(0, 3), st.sampled_from([8, 16, 24, 32]))


def _net(pair):
    third, length = pair
    return net(f"10.{third}.{third}.0/{length}")


@settings(max_examples=60, deadline=None)
@given(
    specs=st.lists(
        st.tuples(
            prefix, prefix, st.sampled_from([0, 6, 17]), st.sampled_from([(0, 65535), (80, 80), (1, 1024)])
        ),
        min_size=1,
        max_size=6,
    ),
    flows=st.lists(
        st.tuples(
            st.integers(0, 3), st.integers(0, 3), st.sampled_from([1, 6, 17]), st.sampled_from([53, 80, 8080])
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_cached_lookup_agrees_with_reference_search(specs, flows):
    spd = SPD(cache_size=5)
    policies = []
    for i, (local, remote, proto, (lo_port, hi_port)) in enumerate(specs):
        remote_ts = TrafficSelector(4, _net(remote).start, _net(remote).end, proto, lo_port, hi_port)
        policy = Policy(f"p{i}", [_net(local)], [remote_ts], out_sa(i + 1))
        spd.add(policy)
        policies.append(policy)
    for _pass in range(2):  # second pass is served from the cache where it survived
        for a, b, proto, dport in flows:
            packet = ipv4(f"10.{a}.{a}.1", f"10.{b}.{b}.1", proto, dport=dport)
            assert spd.lookup_policy(packet) is _reference(policies, packet)
    assert len(spd._table.cache) <= 5


def _sad_pair(spi: int):
    cipher = cipher_for(CIPHER_CASES[0], seed=spi)
    return OutboundSA(spi, cipher), InboundSA(spi, cipher)


def test_sad_dispatch_by_spi_and_counted_drops():
    sad = SAD()
    out1, in1 = _sad_pair(0x1001)
    out2, in2 = _sad_pair(0x1002)
    sad.add(in1)
    sad.add(in2)
    assert sad.decapsulate(out1.encapsulate(ipv4(body=b"one"))) == ipv4(body=b"one")
    assert sad.decapsulate(memoryview(out2.encapsulate(ipv4(body=b"two")))) == ipv4(body=b"two")
    assert sad.decapsulate(b"\x00\x00\x10\x03" + bytes(40)) is None
    assert sad.decapsulate(b"\x00\x00\x10") is None
    assert sad.drops.as_dict() == {"bad_length": 1, "unknown_spi": 1}
    assert 0x1001 in sad and len(sad) == 2 and {sa.spi for sa in sad} == {0x1001, 0x1002}
    with pytest.raises(ValueError, match="already installed"):
        sad.add(InboundSA(0x1001, in1.cipher))


def test_make_before_break_rekey():
    sad, spd = SAD(), SPD()
    # the peer's view: its outbound SAs towards us, and our inbound SAs
    peer_old, our_old = _sad_pair(0x2001)
    peer_new, our_new = _sad_pair(0x2002)
    sad.add(our_old)
    in_flight = peer_old.encapsulate_many([ipv4(body=bytes([i])) for i in range(3)])

    sad.add(our_new)  # 1. install the new inbound SA: both are live
    spd.add(Policy("child", [net("10.1.0.0/16")], [net("10.2.0.0/16")], out_sa(0x3001)))
    spd.switch_sa("child", out_sa(0x3002))  # 2. switch our outbound
    assert sad.decapsulate(peer_new.encapsulate(ipv4(body=b"new"))) == ipv4(body=b"new")
    assert sad.decapsulate_many(in_flight) == [ipv4(body=bytes([i])) for i in range(3)]
    assert sad.remove(0x2001) is our_old  # 3. remove the old one
    assert sad.decapsulate(peer_old.encapsulate(ipv4())) is None
    assert sad.drops.unknown_spi == 1
    assert spd.lookup(ipv4("10.1.0.1", "10.2.0.1")).spi == 0x3002
    assert sad.remove(0x2001) is None


def test_sad_replace_is_one_step():
    sad = SAD()
    _old_out, old = _sad_pair(0x4001)
    _new_out, new = _sad_pair(0x4002)
    sad.add(old)
    assert sad.replace(0x4001, new) is old
    assert sad.get(0x4001) is None and sad.get(0x4002) is new
    _other_out, other = _sad_pair(0x4003)
    sad.add(other)
    with pytest.raises(ValueError):
        sad.replace(0x4002, other)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_sad_never_raises(data):
    sad = SAD()
    sad.add(_sad_pair(0x01020304)[1])
    assert sad.decapsulate(data) is None
