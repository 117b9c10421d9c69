"""Hypothesis strategies for traffic selectors and the packets they may match."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st
from pyike.selectors import TrafficSelector

V4 = int(ipaddress.IPv4Address("10.0.0.0"))
V6 = int(ipaddress.IPv6Address("2001:db8::"))

PORT_RANGES = st.one_of(
    st.just((0, 65535)),
    st.just((65535, 0)),
    st.tuples(st.integers(0, 120), st.integers(0, 120)).map(lambda p: (min(p), max(p))),
    st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(lambda p: (min(p), max(p))),
)


@st.composite
def selectors(draw, version=None):
    version = version or draw(st.sampled_from([4, 4, 4, 6]))
    base = V4 if version == 4 else V6
    start = base + draw(st.integers(0, 80))
    end = start + draw(st.integers(0, 80))
    protocol = draw(st.sampled_from([0, 0, 1, 6, 17]))
    ports = draw(PORT_RANGES)
    return TrafficSelector(version, start, end, protocol, ports[0], ports[1])


@st.composite
def packets(draw):
    version = draw(st.sampled_from([4, 4, 4, 6]))
    base = V4 if version == 4 else V6
    address = base + draw(st.integers(0, 170))
    protocol = draw(st.sampled_from([1, 6, 17, 47]))
    port = draw(st.one_of(st.none(), st.integers(0, 130), st.sampled_from([0, 65535])))
    return version, address, protocol, port


def point(version, address):
    return ipaddress.IPv4Address(address) if version == 4 else ipaddress.IPv6Address(address)
