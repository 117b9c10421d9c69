"""The flood generator of the lab's flood test (pyike_lab.flood): what it would put on the wire."""

from __future__ import annotations

import ipaddress
import random
import struct

from pyike.ids import ExchangeType
from pyike.wire.message import decode_message
from pyike.wire.rules import check_payloads
from pyike_lab.flood import ike_sa_init_requests, ipv4_udp, spoofed_sources


def test_requests_are_valid_and_distinct_ike_sa_init_messages():
    messages = ike_sa_init_requests(50, random.Random(3))
    decoded = [decode_message(m) for m in messages]
    for message in decoded:
        assert message.header.exchange == ExchangeType.IKE_SA_INIT and not message.header.response
        assert check_payloads(ExchangeType.IKE_SA_INIT, False, message.payloads) == "IKE_SA_INIT"
    assert len({m.header.spi_i for m in decoded}) == 50


def test_sources_stay_inside_the_given_networks_and_spread():
    networks = ["198.51.100.128/25", "203.0.113.128/25"]
    sources = spoofed_sources(networks, 1000, random.Random(4))
    pools = [ipaddress.ip_network(n) for n in networks]
    assert all(any(ipaddress.ip_address(s) in p for p in pools) for s in sources)
    assert all(any(ipaddress.ip_address(s) in p for s in sources) for p in pools)
    assert len(set(sources)) > 150  # random hosts, not one address


def test_ipv4_udp_framing():
    packet = ipv4_udp("198.51.100.200", "192.0.2.1", 40000, 500, b"x" * 10, 7)
    version_ihl, _tos, length, ident, _frag, ttl, proto = struct.unpack("!BBHHHBB", packet[:10])
    assert (version_ihl, length, ident, ttl, proto) == (0x45, 38, 7, 64, 17)
    assert packet[12:16] == ipaddress.ip_address("198.51.100.200").packed
    assert struct.unpack("!HHHH", packet[20:28]) == (40000, 500, 18, 0) and packet[28:] == b"x" * 10
