"""Selector fields of inner packets and traffic-selector matching."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from esp_packets import ipv4, ipv6
from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.esp import NO_PORT, SelectorSet, TrafficSelector, flow_key


def addr(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def test_flow_key_ipv4_transport_protocols():
    assert flow_key(ipv4("10.1.0.1", "10.2.0.1", 6, sport=1234, dport=443)) == (
        4,
        addr("10.1.0.1"),
        addr("10.2.0.1"),
        6,
        1234,
        443,
    )
    assert flow_key(ipv4(proto=132, sport=7, dport=9))[3:] == (132, 7, 9)
    assert flow_key(ipv4(proto=1, body=b"\x08\x00\x00\x00"))[3:] == (1, NO_PORT, NO_PORT)
    # non-initial fragment: the transport header is elsewhere, ports are unknown
    assert flow_key(ipv4(proto=17, fragment_offset=185))[3:] == (17, NO_PORT, NO_PORT)
    # truncated transport header
    assert flow_key(ipv4(proto=17)[:22])[3:] == (17, NO_PORT, NO_PORT)


def test_flow_key_ipv4_with_options():
    packet = bytearray(ipv4(proto=17, sport=53, dport=5353))
    options = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    packet = bytes([0x46]) + bytes(packet[1:20]) + options + bytes(packet[20:])
    assert flow_key(packet)[3:] == (17, 53, 5353)


def test_flow_key_ipv6_walks_extension_headers():
    hop_by_hop = bytes([43, 0]) + bytes(6)  # next: routing
    routing = bytes([44, 0]) + bytes(6)  # next: fragment
    fragment = bytes([6, 0]) + struct.pack("!H", 0) + bytes(4)  # first fragment, next: TCP
    packet = ipv6(proto=6, sport=22, dport=2222, extensions=hop_by_hop + routing + fragment, first_header=0)
    assert flow_key(packet) == (6, addr("2001:db8:1::1"), addr("2001:db8:2::1"), 6, 22, 2222)
    later_fragment = bytes([6, 0]) + struct.pack("!H", 100 << 3) + bytes(4)
    packet = ipv6(proto=6, extensions=later_fragment, first_header=44)
    assert flow_key(packet)[3:] == (6, NO_PORT, NO_PORT)
    assert flow_key(ipv6(proto=58, body=b"\x80\x00\x00\x00"))[3:] == (58, NO_PORT, NO_PORT)


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x45" * 19,
        b"\x44" + bytes(30),  # IHL 4
        b"\x4f" + bytes(30),  # IHL 15 > length
        b"\x60" + bytes(38),
        b"\x50" + bytes(60),
        ipv6(extensions=bytes([17, 200]) + bytes(6), first_header=0),  # extension past the end
        ipv6(extensions=bytes([0, 0]) + bytes(6), first_header=0)[:44],
    ],
)
def test_flow_key_rejects_malformed_headers(packet):
    assert flow_key(packet) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_flow_key_never_raises(data):
    key = flow_key(data)
    assert key is None or key[0] in (4, 6)
    assert flow_key(memoryview(data)) == key


def test_selector_validation():
    with pytest.raises(ValueError, match="mixes IPv4 and IPv6"):
        TrafficSelector.from_range("10.0.0.1", "::1")
    with pytest.raises(ValueError, match="ends before it starts"):
        TrafficSelector.from_range("10.0.0.9", "10.0.0.1")
    with pytest.raises(ValueError, match="port range"):
        TrafficSelector.from_range("10.0.0.1", start_port=80, end_port=79)
    with pytest.raises(ValueError, match="protocol"):
        TrafficSelector.from_range("10.0.0.1", protocol=256)
    with pytest.raises(ValueError, match="not-an-address"):
        TrafficSelector.from_range("not-an-address")
    ts = TrafficSelector.from_network("10.1.2.3/24", protocol=6, start_port=80, end_port=80)
    assert (ts.start, ts.end) == (
        int(ipaddress.ip_address("10.1.2.0")),
        int(ipaddress.ip_address("10.1.2.255")),
    )
    assert ts == TrafficSelector.from_range("10.1.2.0", "10.1.2.255", 6, 80, 80)
    assert len({ts, TrafficSelector.from_range("10.1.2.0", "10.1.2.255", 6, 80, 80)}) == 1
    assert repr(ts) == "TrafficSelector('10.1.2.0/24[tcp/80]')"
    # packed octets, as in a TS payload
    packed = TrafficSelector.from_range(addr("2001:db8::"), addr("2001:db8::ffff"), 17, 500, 500)
    assert packed == TrafficSelector.from_range("2001:db8::", "2001:db8::ffff", 17, 500, 500)
    assert packed.version == 6


def test_port_semantics():
    v4 = int(ipaddress.ip_address("10.0.0.1"))
    any_port = TrafficSelector.from_network("10.0.0.0/8")
    web = TrafficSelector.from_network("10.0.0.0/8", protocol=6, start_port=80, end_port=443)
    opaque = TrafficSelector.from_network("10.0.0.0/8", protocol=17, start_port=65535, end_port=0)
    assert any_port.covers(4, v4, 1, NO_PORT)
    assert any_port.covers(4, v4, 6, 12345)
    assert web.covers(4, v4, 6, 80) and web.covers(4, v4, 6, 443)
    assert not web.covers(4, v4, 6, 444)
    assert not web.covers(4, v4, 17, 80)  # protocol differs
    assert not web.covers(4, v4, 6, NO_PORT)  # a fragment cannot prove its port
    assert opaque.covers(4, v4, 17, NO_PORT)
    assert not opaque.covers(4, v4, 17, 53)
    assert not any_port.covers(6, v4, 6, 80)  # family differs


def test_selector_set_inbound_is_reversed_and_cached():
    selectors = SelectorSet(
        local=[TrafficSelector.from_network("10.2.0.0/16")],
        remote=[TrafficSelector.from_network("10.1.0.0/16"), TrafficSelector.from_network("2001:db8:1::/48")],
        cache_size=4,
    )
    assert selectors.allows_inbound(ipv4("10.1.0.1", "10.2.0.1"))
    assert not selectors.allows_inbound(ipv4("10.2.0.1", "10.1.0.1"))
    assert not selectors.allows_inbound(ipv6("2001:db8:1::1", "2001:db8:2::1"))  # no IPv6 local
    assert not selectors.allows_inbound(b"\x45" * 10)
    for i in range(20):
        assert selectors.allows_inbound(ipv4(f"10.1.0.{i}", "10.2.0.1"))
        assert len(selectors._cache) <= 4
    key = flow_key(ipv4("10.2.0.1", "10.1.0.1"))
    assert selectors.allows_outbound(key)
    with pytest.raises(ValueError, match="at least one"):
        SelectorSet([], selectors.remote)


def test_selector_set_with_ports_checks_each_packet():
    selectors = SelectorSet(
        local=[TrafficSelector.from_network("10.2.0.0/16", protocol=6, start_port=443, end_port=443)],
        remote=[TrafficSelector.from_network("10.1.0.0/16")],
    )
    assert selectors.allows_inbound(ipv4("10.1.0.1", "10.2.0.1", 6, dport=443))
    assert not selectors.allows_inbound(ipv4("10.1.0.1", "10.2.0.1", 6, dport=80))
    assert not selectors.allows_inbound(ipv4("10.1.0.1", "10.2.0.1", 17, dport=443))
    assert selectors.allows_inbound(ipv4("10.1.0.1", "10.2.0.1", 6, dport=443))
