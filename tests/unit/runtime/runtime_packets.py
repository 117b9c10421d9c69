"""TCP/UDP packets with valid checksums, and a reference TCP segmenter, for the runtime unit tests."""

from __future__ import annotations

import ipaddress
import struct
from typing import List, Sequence


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def tcp_segment(
    src: str = "10.2.0.10",
    dst: str = "10.1.0.10",
    sport: int = 5201,
    dport: int = 40000,
    seq: int = 1000,
    ack: int = 77,
    flags: int = 0x10,
    payload: bytes = b"x" * 100,
    options: bytes = b"\x01\x01\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x02",
    ip_id: int = 1,
    window: int = 512,
) -> bytes:
    """An IPv4 or IPv6 TCP segment with correct IP and TCP checksums."""
    source = ipaddress.ip_address(src).packed
    destination = ipaddress.ip_address(dst).packed
    offset = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack, offset << 4, flags, window, 0, 0)
    tcp += options + payload
    csum = checksum(_pseudo(source, destination, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    if len(source) == 4:
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ip_id, 0x4000, 64, 6, 0, source, destination
        )
        header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
        return header + tcp
    return struct.pack("!IHBB16s16s", 0x60000000, len(tcp), 6, 64, source, destination) + tcp


def udp_packet(src: str = "10.2.0.10", dst: str = "10.1.0.10", payload: bytes = b"u" * 60) -> bytes:
    source = ipaddress.ip_address(src).packed
    destination = ipaddress.ip_address(dst).packed
    udp = struct.pack("!HHHH", 5000, 6000, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 9, 0, 64, 17, 0, source, destination)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + udp


VNET = struct.Struct("=BBHHHH")


def kernel_segment(frame: Sequence[bytes]) -> List[bytes]:
    """What the kernel makes of a virtio-net frame (TSO, as tcp_gso_segment does it)."""
    vnet = bytes(frame[0])
    packet = b"".join(bytes(part) for part in frame[1:])
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET.unpack(vnet)
    if gso_type == 0:
        assert flags == 0
        return [packet]
    assert flags == 1 and gso_type in (1, 4)
    v6 = gso_type == 4
    ip_len = 40 if v6 else 20
    assert csum_start == ip_len and csum_offset == 16
    header, payload = packet[:hdr_len], packet[hdr_len:]
    if not v6:
        assert checksum(header[:20]) == 0, "IPv4 header checksum of the super packet"
        assert struct.unpack("!H", header[2:4])[0] == len(packet)
    else:
        assert struct.unpack("!H", header[4:6])[0] == len(packet) - 40
    source, destination = (header[8:24], header[24:40]) if v6 else (header[12:16], header[16:20])
    # CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum of the whole super packet
    partial = struct.unpack("!H", header[ip_len + 16 : ip_len + 18])[0]
    assert partial == (~checksum(_pseudo(source, destination, 6, len(packet) - ip_len)) & 0xFFFF) or (
        partial == 0xFFFF and checksum(_pseudo(source, destination, 6, len(packet) - ip_len)) == 0
    )
    seq, ip_id = struct.unpack("!I", header[ip_len + 4 : ip_len + 8])[0], 0
    if not v6:
        ip_id = struct.unpack("!H", header[4:6])[0]
    segments = []
    chunks = [payload[i : i + gso_size] for i in range(0, len(payload), gso_size)]
    for index, chunk in enumerate(chunks):
        tcp = bytearray(header[ip_len:])
        struct.pack_into("!I", tcp, 4, (seq + index * gso_size) & 0xFFFFFFFF)
        if index < len(chunks) - 1:
            tcp[13] &= ~0x09 & 0xFF  # FIN and PSH only on the last segment
        tcp[16:18] = b"\0\0"
        body = bytes(tcp) + chunk
        struct.pack_into("!H", tcp, 16, checksum(_pseudo(source, destination, 6, len(body)) + body))
        body = bytes(tcp) + chunk
        if v6:
            ip = bytearray(header[:40])
            struct.pack_into("!H", ip, 4, len(body))
        else:
            ip = bytearray(header[:20])
            struct.pack_into("!HH", ip, 2, 20 + len(body), (ip_id + index) & 0xFFFF)
            ip[10:12] = b"\0\0"
            struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
        segments.append(bytes(ip) + body)
    return segments
