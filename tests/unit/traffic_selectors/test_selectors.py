"""The traffic selector value type: strongSwan syntax, packet matching, containment and intersection."""

from __future__ import annotations

import copy
import ipaddress
import pickle

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pyike.ids import TsType
from pyike.selectors import NO_PORT, SelectorError, TrafficSelector
from selector_strategies import packets, point, selectors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1.0.0/24", (4, "10.1.0.0", "10.1.0.255", 0, 0, 65535)),
        ("10.1.0.5/24", (4, "10.1.0.0", "10.1.0.255", 0, 0, 65535)),  # host bits dropped, as strongSwan does
        ("10.1.0.5", (4, "10.1.0.5", "10.1.0.5", 0, 0, 65535)),
        ("0.0.0.0/0", (4, "0.0.0.0", "255.255.255.255", 0, 0, 65535)),
        (" 10.1.0.10-10.1.0.20 ", (4, "10.1.0.10", "10.1.0.20", 0, 0, 65535)),
        ("2001:db8::/64", (6, "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", 0, 0, 65535)),
        ("::/0", (6, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, 0, 65535)),
        ("2001:db8::1-2001:db8::9", (6, "2001:db8::1", "2001:db8::9", 0, 0, 65535)),
        ("10.1.0.0/24[tcp/443]", (4, "10.1.0.0", "10.1.0.255", 6, 443, 443)),
        ("10.1.0.0/24[tcp/https]", (4, "10.1.0.0", "10.1.0.255", 6, 443, 443)),
        ("10.1.0.0/24[udp/1000-2000]", (4, "10.1.0.0", "10.1.0.255", 17, 1000, 2000)),
        ("10.1.0.0/24[udp]", (4, "10.1.0.0", "10.1.0.255", 17, 0, 65535)),
        ("10.1.0.0/24[/53]", (4, "10.1.0.0", "10.1.0.255", 0, 53, 53)),
        ("10.1.0.0/24[any/domain]", (4, "10.1.0.0", "10.1.0.255", 0, 53, 53)),
        ("10.1.0.0/24[udp/opaque]", (4, "10.1.0.0", "10.1.0.255", 17, 65535, 0)),
        ("10.1.0.0/24[47]", (4, "10.1.0.0", "10.1.0.255", 47, 0, 65535)),
        ("10.1.0.0/24[ICMP/2048]", (4, "10.1.0.0", "10.1.0.255", 1, 2048, 2048)),
        ("10.1.0.0/24[ipv6-icmp/any]", (4, "10.1.0.0", "10.1.0.255", 58, 0, 65535)),
        ("10.1.0.0/24[tcp/ipsec-nat-t]", (4, "10.1.0.0", "10.1.0.255", 6, 4500, 4500)),
    ],
)
def test_parse(text, expected):
    ts = TrafficSelector.parse(text)
    version, first, last, protocol, start_port, end_port = expected
    assert (ts.version, str(ts.start_address), str(ts.end_address)) == (version, first, last)
    assert (ts.protocol, ts.start_port, ts.end_port) == (protocol, start_port, end_port)
    assert ts.ts_type == (TsType.TS_IPV4_ADDR_RANGE if version == 4 else TsType.TS_IPV6_ADDR_RANGE)
    assert TrafficSelector.parse(str(ts)) == ts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/33", "prefix length /33 is out of range for IPv4 (0-32)"),
        ("2001:db8::/200", "prefix length /200 is out of range for IPv6 (0-128)"),
        ("10.0.0.0/x", "prefix length 'x' is not a number"),
        ("10.0.0.0/-1", "prefix length '-1' is not a number"),
        ("10.0.0/24", "subnet address '10.0.0' is not an IPv4 or IPv6 address"),
        ("host.example.com", "address 'host.example.com' is not an IPv4 or IPv6 address"),
        ("10.0.0.9-10.0.0.1", "ends before it starts"),
        ("10.0.0.1-", "range end '' is not an IPv4 or IPv6 address"),
        ("fe80::1%eth0", "scoped IPv6 addresses are not allowed"),
        ("10.0.0.0/8[tcp/80", "closed by a final ']'"),
        ("10.0.0.0/8[tcp/80]x", "closed by a final ']'"),
        ("10.0.0.0/8[256]", "IP protocol 256 is out of range (0-255)"),
        ("10.0.0.0/8[tcp/2000-1000]", "port range 2000-1000 ends before it starts"),
        ("10.0.0.0/8[tcp/gopher]", "port 'gopher' is neither a number 0-65535 nor a known service name"),
        ("[tcp/80]", "no address, subnet or range"),
        ("", "no address, subnet or range"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(SelectorError) as caught:
        TrafficSelector.parse(text)
    assert message in str(caught.value)


def test_text_forms():
    assert str(TrafficSelector.parse("10.1.0.7")) == "10.1.0.7/32"
    assert str(TrafficSelector.parse("10.1.0.0-10.1.0.255")) == "10.1.0.0/24"
    assert str(TrafficSelector.parse("10.1.0.1-10.1.0.2")) == "10.1.0.1-10.1.0.2"
    assert str(TrafficSelector.parse("10.1.0.0/24[6/80-81]")) == "10.1.0.0/24[tcp/80-81]"
    assert str(TrafficSelector.parse("10.1.0.0/24[/53]")) == "10.1.0.0/24[/53]"
    assert str(TrafficSelector.parse("10.1.0.0/24[udp/opaque]")) == "10.1.0.0/24[udp/opaque]"
    assert repr(TrafficSelector.parse("10.1.0.0/24[udp]")) == "TrafficSelector('10.1.0.0/24[udp]')"
    assert [str(n) for n in TrafficSelector.parse("10.1.0.1-10.1.0.6").networks()] == [
        "10.1.0.1/32",
        "10.1.0.2/31",
        "10.1.0.4/31",
        "10.1.0.6/32",
    ]


def test_constructor_checks():
    with pytest.raises(SelectorError):
        TrafficSelector(4, 10, 9)
    with pytest.raises(SelectorError):
        TrafficSelector(4, 0, 1 << 32)
    with pytest.raises(SelectorError):
        TrafficSelector(5, 0, 1)
    with pytest.raises(SelectorError):
        TrafficSelector(4, 0, 1, protocol=300)
    with pytest.raises(SelectorError):
        TrafficSelector(4, 0, 1, start_port=10, end_port=9)
    assert TrafficSelector(4, 0, 1, start_port=65535, end_port=0).is_opaque
    assert TrafficSelector.from_range("10.0.0.1", "10.0.0.3").end_address == ipaddress.ip_address("10.0.0.3")
    with pytest.raises(SelectorError, match="start must be an integer"):
        TrafficSelector(4, "10.0.0.1", 1)
    with pytest.raises(SelectorError, match="is not an IPv4 or IPv6 network"):
        TrafficSelector.from_network("10.0.0.0/33")


def test_values_are_immutable_hashable_and_copyable():
    ts = TrafficSelector.parse("10.1.0.0/24[udp/opaque]")
    with pytest.raises(AttributeError, match="immutable"):
        ts.start = 0
    with pytest.raises(AttributeError):
        ts.extra = 1
    assert {ts, TrafficSelector.parse("10.1.0.0/24[17/opaque]")} == {ts}
    assert ts != TrafficSelector.parse("10.1.0.0/24[udp]") and ts != str(ts)
    assert copy.deepcopy(ts) == ts and pickle.loads(pickle.dumps(ts)) == ts


def test_intersection_examples():
    lan = TrafficSelector.parse("10.1.0.0/16")
    assert lan.intersect(TrafficSelector.parse("10.1.2.0/24")) == TrafficSelector.parse("10.1.2.0/24")
    assert lan.intersect(TrafficSelector.parse("10.2.0.0/16")) is None
    assert lan.intersect(TrafficSelector.parse("2001:db8::/32")) is None
    web = TrafficSelector.parse("10.1.0.0/24[tcp/443]")
    assert lan.intersect(web) == web
    assert web.intersect(TrafficSelector.parse("10.1.0.0/24[udp]")) is None
    assert web.intersect(TrafficSelector.parse("10.1.0.0/24[tcp/80]")) is None
    assert TrafficSelector.parse("10.1.0.0/24[tcp/opaque]").intersect(lan) == TrafficSelector.parse(
        "10.1.0.0/24[tcp/opaque]"
    )
    assert TrafficSelector.parse("10.1.0.0/24[tcp/opaque]").intersect(web) is None
    assert TrafficSelector.parse("10.1.0.0/24[tcp/1-1000]").intersect(
        TrafficSelector.parse("10.1.0.100-10.1.3.0[/500-2000]")
    ) == TrafficSelector.parse("10.1.0.100-10.1.0.255[tcp/500-1000]")


def test_matches_packets():
    ts = TrafficSelector.parse("10.1.0.0/24[tcp/443]")
    assert ts.matches("10.1.0.9", 6, 443)
    assert not ts.matches("10.1.0.9", 6, 80)
    assert not ts.matches("10.1.0.9", 17, 443)
    assert not ts.matches("10.1.0.9", 6, None)
    assert not ts.matches("10.1.1.9", 6, 443)
    assert not ts.matches("2001:db8::1", 6, 443)
    any_ts = TrafficSelector.parse("10.1.0.0/24")
    assert any_ts.matches("10.1.0.9", 1, None) and any_ts.matches(int(ipaddress.IPv4Address("10.1.0.1")))
    assert TrafficSelector.parse("10.1.0.0/24[icmp/opaque]").matches("10.1.0.1", 1, None)


# -- properties -----------------------------------------------------------------------------------------


@given(selectors(), selectors())
def test_intersection_is_contained_in_both(a, b):
    common = a.intersect(b)
    if common is not None:
        assert a.contains(common)
        assert b.contains(common)


@given(selectors(), selectors())
def test_intersection_is_commutative(a, b):
    assert a.intersect(b) == b.intersect(a)


@given(selectors(), selectors())
def test_intersection_is_empty_when_disjoint(a, b):
    assume(a.version != b.version or a.end < b.start or b.end < a.start)
    assert a.intersect(b) is None


@given(selectors(), selectors(), st.lists(st.integers(1, 255), min_size=2, max_size=2, unique=True))
def test_intersection_is_empty_when_protocols_differ(a, b, protocols):
    a = TrafficSelector(a.version, a.start, a.end, protocols[0], a.start_port, a.end_port)
    b = TrafficSelector(b.version, b.start, b.end, protocols[1], b.start_port, b.end_port)
    assert a.intersect(b) is None


@settings(max_examples=300)
@given(selectors(), selectors(), st.lists(packets(), min_size=1, max_size=20))
def test_intersection_covers_exactly_the_common_packets(a, b, probes):
    common = a.intersect(b)
    for version, address, protocol, port in probes:
        in_both = a.matches(point(version, address), protocol, port) and b.matches(
            point(version, address), protocol, port
        )
        in_common = common is not None and common.matches(point(version, address), protocol, port)
        assert in_both == in_common


@given(selectors(), selectors())
def test_contains_means_intersection_is_the_other(a, b):
    assert a.contains(b) == (a.intersect(b) == b)


@given(selectors())
def test_selector_contains_and_intersects_itself(a):
    assert a.contains(a)
    assert a.intersect(a) == a


@given(selectors())
def test_text_round_trip(a):
    assert TrafficSelector.parse(str(a)) == a


@given(selectors(), packets())
def test_the_dataplane_check_agrees_with_matches(a, probe):
    version, address, protocol, port = probe
    expected = a.matches(point(version, address), protocol, port)
    assert a.covers(version, address, protocol, NO_PORT if port is None else port) == expected
