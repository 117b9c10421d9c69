"""The delay relay of the lab (pyike_lab.relay): which packets it counts as IKE, ESP or other."""

from __future__ import annotations

import argparse
import struct

import pytest
from pyike_lab.flood import ipv4_udp
from pyike_lab.relay import DelayRelay, _delay, kind_of

A, B = "192.0.2.1", "198.51.100.1"


def raw_esp(payload: bytes = bytes(40)) -> bytes:
    header = bytearray(ipv4_udp(A, B, 0, 0, b"", 1)[:20])
    header[9] = 50  # IP protocol ESP
    struct.pack_into("!H", header, 2, 20 + 8 + len(payload))
    return bytes(header) + struct.pack("!II", 0x1234, 1) + payload


@pytest.mark.parametrize(
    ("packet", "kind"),
    [
        (ipv4_udp(A, B, 500, 500, b"ike-sa-init", 1), "ike"),
        (ipv4_udp(A, B, 4500, 4500, b"\0\0\0\0" + b"ike-auth", 1), "ike"),  # behind the non-ESP marker
        (ipv4_udp(A, B, 4500, 4500, struct.pack("!II", 0xC0FFEE, 7) + bytes(40), 1), "esp"),  # RFC 3948
        (raw_esp(), "esp"),
        (ipv4_udp(A, B, 4500, 4500, b"\xff", 1), "other"),  # NAT keepalive
        (ipv4_udp(A, B, 53, 53, b"dns", 1), "other"),
        (b"\x60" + bytes(39), "other"),  # IPv6: not diverted by the relay's rule anyway
        (b"\x45\x00", "other"),
    ],
)
def test_kinds(packet, kind):
    assert kind_of(packet) == kind


def test_delays_are_checked():
    assert _delay("ike=0.3") == ("ike", 0.3)
    for bad in ("dns=1", "ike=soon", "esp=-1", "esp=61"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"delay|kind"):
            _delay(bad)
    with pytest.raises(ValueError, match="unknown packet kinds"):
        DelayRelay(None, A, B, {"icmp": 0.1})
