"""Selector fields of an inner IP packet (RFC 4301 §4.4.1.1).

:func:`flow_key` reads version, source and destination address, next-layer protocol and ports
from an IPv4 or IPv6 packet without copying more than the addresses. Ports exist only for TCP,
UDP and SCTP, whose headers start with source and destination port; for other protocols, for
non-initial fragments and for truncated transport headers they are :data:`NO_PORT`.
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

IPPROTO_IPIP = 4  # next header of an IPv4 packet in tunnel mode (RFC 4303 §2.6)
IPPROTO_IPV6 = 41
IPPROTO_NONE = 59  # dummy packet (RFC 4303 §2.6)
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_SCTP = 132
IPPROTO_AH = 51
_PORT_PROTOCOLS = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP))

# IPv6 extension headers that precede the next-layer protocol (RFC 8200 §4)
_V6_HOP_BY_HOP = 0
_V6_ROUTING = 43
_V6_FRAGMENT = 44
_V6_DEST_OPTS = 60
_V6_GENERIC_EXT = frozenset((_V6_HOP_BY_HOP, _V6_ROUTING, _V6_DEST_OPTS))
_V6_MAX_EXT = 8

NO_PORT = -1

_PORTS = struct.Struct("!HH")
_U16 = struct.Struct("!H")

# (version, source, destination, protocol, source port, destination port)
FlowKey = Tuple[int, bytes, bytes, int, int, int]


def address_key(packet: bytes) -> bytes:
    """Source and destination address octets as one bytes key (b"" unless IPv4 or IPv6).

    Cheaper than :func:`flow_key` when only addresses decide; does not validate the header.
    """
    if not packet:
        return b""
    version = packet[0] >> 4
    if version == 4:
        return bytes(packet[12:20])
    if version == 6:
        return bytes(packet[8:40])
    return b""


def flow_key(packet: bytes) -> Optional[FlowKey]:
    """The selector fields of ``packet``, or None when it is no well-formed IPv4/IPv6 header.

    Addresses come back as bytes (hashable, so a key can index a cache) for any buffer type.
    """
    length = len(packet)
    if not length:
        return None
    version = packet[0] >> 4
    if version == 4:
        header_len = (packet[0] & 0x0F) * 4
        if header_len < 20 or length < header_len:
            return None
        proto = packet[9]
        fragment_offset = _U16.unpack_from(packet, 6)[0] & 0x1FFF
        src = bytes(packet[12:16])
        dst = bytes(packet[16:20])
        offset = header_len
        opaque = fragment_offset != 0
    elif version == 6:
        if length < 40:
            return None
        proto = packet[6]
        src = bytes(packet[8:24])
        dst = bytes(packet[24:40])
        offset = 40
        opaque = False
        for _ext_index in range(_V6_MAX_EXT):
            if proto in _V6_GENERIC_EXT:
                if length < offset + 8:
                    return None
                proto, ext_len = packet[offset], (packet[offset + 1] + 1) * 8
            elif proto == _V6_FRAGMENT:
                if length < offset + 8:
                    return None
                proto, ext_len = packet[offset], 8
                opaque = opaque or (_U16.unpack_from(packet, offset + 2)[0] >> 3) != 0
            elif proto == IPPROTO_AH:
                if length < offset + 8:
                    return None
                proto, ext_len = packet[offset], (packet[offset + 1] + 2) * 4
            else:
                break
            offset += ext_len
            if offset > length:
                return None
        else:
            return None
    else:
        return None
    if proto in _PORT_PROTOCOLS and not opaque and length >= offset + 4:
        sport, dport = _PORTS.unpack_from(packet, offset)
        return (version, src, dst, proto, sport, dport)
    return (version, src, dst, proto, NO_PORT, NO_PORT)
