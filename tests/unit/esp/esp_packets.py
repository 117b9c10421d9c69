"""Inner packets and cipher set-ups shared by the ESP unit tests."""

from __future__ import annotations

import ipaddress
import struct

from pyike.esp import make_cipher
from pyike.ids import EncrId, IntegId

# id, ENCR, key material octets, INTEG, integrity key octets
CIPHER_CASES = [
    ("aes128gcm16", EncrId.AES_GCM_16, 20, IntegId.NONE, 0),
    ("aes256gcm16", EncrId.AES_GCM_16, 36, IntegId.NONE, 0),
    ("chacha20poly1305", EncrId.CHACHA20_POLY1305, 36, IntegId.NONE, 0),
    ("aes128cbc-sha256", EncrId.AES_CBC, 16, IntegId.HMAC_SHA2_256_128, 32),
    ("aes256cbc-sha384", EncrId.AES_CBC, 32, IntegId.HMAC_SHA2_384_192, 48),
    ("aes256cbc-sha512", EncrId.AES_CBC, 32, IntegId.HMAC_SHA2_512_256, 64),
    ("aes128cbc-sha1", EncrId.AES_CBC, 16, IntegId.HMAC_SHA1_96, 20),
]
CIPHER_IDS = [case[0] for case in CIPHER_CASES]


def cipher_for(case, seed: int = 1):
    """A cipher with deterministic keys derived from ``seed`` (tests only)."""
    _name, encr, key_len, integ, integ_len = case
    key = bytes((seed + i) & 0xFF for i in range(key_len))
    integ_key = bytes((seed * 7 + i) & 0xFF for i in range(integ_len))
    return make_cipher(encr, key, integ, integ_key)


def _ports(proto: int, sport: int, dport: int, body: bytes) -> bytes:
    if proto in (6, 17, 132):
        return struct.pack("!HH", sport, dport) + body
    return body


def ipv4(
    src: str = "10.1.0.1",
    dst: str = "10.2.0.1",
    proto: int = 17,
    body: bytes = b"\x00" * 8,
    sport: int = 40000,
    dport: int = 5201,
    fragment_offset: int = 0,
) -> bytes:
    payload = _ports(proto, sport, dport, body)
    total = 20 + len(payload)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        0x1234,
        fragment_offset & 0x1FFF,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + payload


def ipv6(
    src: str = "2001:db8:1::1",
    dst: str = "2001:db8:2::1",
    proto: int = 17,
    body: bytes = b"\x00" * 8,
    sport: int = 40000,
    dport: int = 5201,
    extensions: bytes = b"",
    first_header: int = -1,
) -> bytes:
    """An IPv6 packet; ``extensions`` are raw extension headers placed before the transport one,
    and ``first_header`` the next header value of the fixed header when extensions are given."""
    payload = extensions + _ports(proto, sport, dport, body)
    next_header = proto if first_header < 0 else first_header
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(payload),
        next_header,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return header + payload
