"""Mutants of recorded messages: outer (the datagrams as octets) and inner (the payload chain, re-protected).

Outer mutations reach the decoder, the header checks, SPI and Message ID lookup, the retransmission cache
and, for encrypted messages, the integrity check (which they almost never pass).  Inner mutations change
the plaintext payload chain of a message -- payload by payload with knowledge of each payload's layout,
or octet by octet -- and protect the result again with the sender's real keys (:class:`chain.Sealer`), as
one SK payload or as SKF fragments (RFC 7383), so that they pass integrity and reach the exchange logic.
IKE_SA_INIT has no protection: its chain is mutated in the clear.

Every function takes a ``random.Random`` seeded from (seed, index), so a mutant is reproducible.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Callable, Dict, List, Optional, Tuple

from pyike.ids import ExchangeType, NotifyType, PayloadType, ProtocolId

from .certs import broken_certificates, oid, tlv
from .chain import Hdr, Raw, join_chain

P = PayloadType
KNOWN_TYPES = [33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 53]
INTERESTING_8 = [0, 1, 2, 3, 4, 7, 8, 16, 32, 33, 46, 53, 64, 100, 127, 128, 129, 200, 254, 255]
INTERESTING_16 = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    28,
    32,
    127,
    128,
    255,
    256,
    512,
    1024,
    4096,
    32767,
    32768,
    65534,
    65535,
]
INTERESTING_32 = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
EXCHANGES = [0, 1, 33, 34, 35, 36, 37, 38, 39, 40, 42, 43, 44, 45, 240, 255]
SIMPLE_NOTIFIES = [
    NotifyType.USE_TRANSPORT_MODE, NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED, NotifyType.NON_FIRST_FRAGMENTS_ALSO,
    NotifyType.IKEV2_FRAGMENTATION_SUPPORTED, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED,
    NotifyType.INITIAL_CONTACT, NotifyType.CHILDLESS_IKEV2_SUPPORTED, NotifyType.MOBIKE_SUPPORTED,
    NotifyType.MULTIPLE_AUTH_SUPPORTED, NotifyType.REDIRECT_SUPPORTED, NotifyType.HTTP_CERT_LOOKUP_SUPPORTED,
    NotifyType.IPCOMP_SUPPORTED, NotifyType.ADDITIONAL_TS_POSSIBLE,
]  # fmt: skip
ERROR_NOTIFIES = [n for n in NotifyType if n < 16384]
TRANSFORM_IDS = {
    1: [12, 13, 18, 19, 20, 28, 0, 1, 3, 23, 65535],  # ENCR
    2: [2, 5, 6, 7, 0, 1, 9, 65535],  # PRF
    3: [0, 2, 12, 13, 14, 1, 5, 65535],  # INTEG
    4: [0, 1, 2, 5, 14, 15, 16, 19, 20, 21, 31, 32, 35, 36, 37, 65535],  # KE
    5: [0, 1, 2, 65535],  # ESN
}
KE_GROUPS = [0, 1, 2, 5, 14, 15, 16, 19, 20, 21, 22, 31, 32, 35, 36, 37, 1024, 65535]
KE_SIZES = {14: 256, 15: 384, 16: 512, 19: 64, 20: 96, 21: 132, 31: 32, 32: 56, 35: 800, 36: 1184, 37: 1568}
ID_TYPES = [1, 2, 3, 5, 9, 10, 11, 12, 0, 4, 6, 7, 8, 13, 200, 255]
AUTH_METHODS = [1, 2, 3, 9, 10, 11, 14, 0, 4, 12, 13, 255]
ALGORITHM_IDS = [
    tlv(0x30, tlv(0x06, oid("1.2.840.113549.1.1.11")) + tlv(0x05, b"")),  # sha256WithRSAEncryption
    tlv(0x30, tlv(0x06, oid("1.2.840.10045.4.3.2"))),  # ecdsa-with-SHA256
    tlv(0x30, tlv(0x06, oid("1.2.840.10045.4.3.4"))),  # ecdsa-with-SHA512
    tlv(0x30, tlv(0x06, oid("1.2.840.113549.1.1.10")) + tlv(0x30, b"")),  # RSASSA-PSS, default params
    tlv(
        0x30,
        tlv(0x06, oid("1.2.840.113549.1.1.10"))
        + tlv(
            0x30,
            tlv(0xA0, tlv(0x30, tlv(0x06, oid("2.16.840.1.101.3.4.2.1")))) + tlv(0xA2, tlv(0x02, b"\xff")),
        ),
    ),
    tlv(0x30, tlv(0x06, oid("1.2.840.113549.1.1.10")) + tlv(0x05, b"")),  # PSS with NULL parameters
    tlv(0x30, tlv(0x06, oid("1.3.101.112"))),  # Ed25519
    tlv(0x30, tlv(0x06, oid("1.2.840.113549.1.1.5")) + tlv(0x05, b"")),  # sha1WithRSAEncryption
    tlv(0x30, tlv(0x06, oid("1.3.6.1.4.1.99999.7"))),
    b"\x30\x03\x06\x01",
    b"",
]
ID_DATA = [
    b"", b"left.example", b"right.example", b"left.example.org", b"right.example.org", b"LEFT.Example",
    b"left.example\n2025-06-01 12:00:00 pyike CRITICAL forged log line", b"\x1b[2J\x1b[31mred\x1b[0m",
    b"left\x00.example", b"\xff\xfe\xfd\xc3\x28", b"\r\n\t\x7f\x08", b"a" * 3000, b"%s%n%x" * 10,
    b"\xc0\x00\x02\x01", b"\xc0\x00\x02", b"\xc0\x00\x02\x01\x05", bytes(16), b"\x30\x03\x02\x01",
    b"vpn@left.example.org", b"@", b"*.example",
]  # fmt: skip


class Library:
    """What the corpus offers for splicing: payload bodies by type, datagrams, SPIs, certificates."""

    def __init__(self, targets) -> None:
        self.payloads: Dict[int, List[bytes]] = {}
        self.datagrams: List[bytes] = []
        self.esp_spis: List[bytes] = []
        self.ike_spis: List[bytes] = []
        self.links: List[bytes] = []
        certificates = []
        for target in targets:
            self.datagrams += target.datagrams
            self.ike_spis += [target.header.spi_i, target.header.spi_r]
            for payload in target.payloads or []:
                bodies = self.payloads.setdefault(payload.ptype, [])
                if payload.body not in bodies and len(bodies) < 40:
                    bodies.append(payload.body)
                if payload.ptype == P.CERT and payload.body[:1] == b"\x04":
                    certificates.append(payload.body[1:])
                if payload.ptype == P.SA:
                    for proposal in parse_sa(payload.body) or []:
                        if len(proposal[2]) == 4:
                            self.esp_spis.append(proposal[2])
                if payload.ptype == P.NOTIFY and len(payload.body) >= 4:
                    spi_size = payload.body[1]
                    if spi_size == 4:
                        self.esp_spis.append(payload.body[4:8])
                    if struct.unpack("!H", payload.body[2:4])[0] == NotifyType.ADDITIONAL_KEY_EXCHANGE:
                        self.links.append(payload.body[4 + spi_size :])
        self.esp_spis = sorted(set(self.esp_spis)) or [b"\x00\x00\x10\x00"]
        self.ike_spis = sorted(set(s for s in self.ike_spis if s != bytes(8)))
        self.real_certificates = sorted(set(certificates))
        self.broken = broken_certificates(tuple(self.real_certificates))
        self.all_payloads = [(t, b) for t, bodies in sorted(self.payloads.items()) for b in bodies]
        self.subjects = _subjects(self.real_certificates)


def _subjects(certificates) -> List[bytes]:
    from .certs import DerError, encode, parse

    out = []
    for der in certificates:
        try:
            tbs = parse(der)[0][1][0][1]
            offset = 1 if tbs[0][0] == 0xA0 else 0
            out.append(encode([tbs[offset + 4]]))
        except (DerError, IndexError, TypeError):
            pass
    return out


def rbytes(rng, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "big") if n > 0 else b""


def pick_weighted(rng, table):
    total = sum(w for w, _f in table)
    r = rng.random() * total
    for weight, item in table:
        r -= weight
        if r <= 0:
            return item
    return table[-1][1]


# --- octets -----------------------------------------------------------------------------------------------


def mutate_octets(rng, data: bytes, lib: Optional[Library] = None, protect: int = 0) -> Tuple[bytes, str]:
    """One AFL-style change to ``data``, leaving the first ``protect`` octets alone where possible."""
    buf = bytearray(data)
    lo = min(protect, len(buf))

    def at() -> int:
        return rng.randrange(lo, len(buf)) if len(buf) > lo else 0

    op = rng.randrange(12)
    if op == 0 and buf:
        for _n in range(rng.choice((1, 1, 2, 4, 8))):
            i = at()
            if i < len(buf):
                buf[i] ^= 1 << rng.randrange(8)
        return bytes(buf), "bitflip"
    if op == 1 and buf:
        buf[at()] = rng.choice(INTERESTING_8) if len(buf) else 0
        return bytes(buf), "byte"
    if op == 2 and len(buf) >= 2:
        i = min(at(), len(buf) - 2)
        buf[i : i + 2] = struct.pack("!H", rng.choice(INTERESTING_16))
        return bytes(buf), "word"
    if op == 3 and len(buf) >= 4:
        i = min(at(), len(buf) - 4)
        buf[i : i + 4] = struct.pack("!I", rng.choice(INTERESTING_32))
        return bytes(buf), "dword"
    if op == 4:
        i = at()
        buf[i:i] = rbytes(rng, rng.choice((1, 2, 4, 16, 64, 300)))
        return bytes(buf), "insert"
    if op == 5 and len(buf) > lo:
        i = at()
        del buf[i : i + rng.choice((1, 2, 4, 8, 32, 256))]
        return bytes(buf), "delete"
    if op == 6:
        return bytes(buf[: rng.randrange(0, len(buf) + 1)]), "truncate"
    if op == 7:
        return bytes(buf) + rbytes(rng, rng.choice((1, 4, 16, 100, 2000))), "append"
    if op == 8 and buf:
        i = at()
        j = min(len(buf), i + rng.choice((2, 8, 32)))
        buf[j:j] = buf[i:j] * rng.choice((1, 2, 10))
        return bytes(buf), "repeat"
    if op == 9 and lib is not None and lib.datagrams:
        other = rng.choice(lib.datagrams)
        i, j = at(), rng.randrange(0, len(other))
        n = rng.choice((4, 16, 64, 256))
        buf[i : i + n] = other[j : j + n]
        return bytes(buf), "splice"
    if op == 10 and buf:
        i = at()
        n = rng.choice((1, 4, 16, 64))
        buf[i : i + n] = bytes([rng.choice((0, 0xFF))]) * len(buf[i : i + n])
        return bytes(buf), "fill"
    i = at()
    buf[i : i + 1] = bytes([rng.randrange(256)])
    return bytes(buf), "random-byte"


# --- outer: datagrams as they travel ----------------------------------------------------------------------


def _fix_length(data: bytes) -> bytes:
    if len(data) >= 28:
        return data[:24] + struct.pack("!I", len(data)) + data[28:]
    return data


def mutate_header_field(rng, data: bytes, lib: Library) -> Tuple[bytes, str]:
    if len(data) < 28:
        return data, "short"
    buf = bytearray(data)
    field = rng.randrange(9)
    if field == 0:
        buf[0:8] = rng.choice([bytes(8), rbytes(rng, 8), data[8:16], *lib.ike_spis[:8]])
        return bytes(buf), "hdr-spi_i"
    if field == 1:
        buf[8:16] = rng.choice([bytes(8), rbytes(rng, 8), data[0:8], *lib.ike_spis[:8]])
        return bytes(buf), "hdr-spi_r"
    if field == 2:
        buf[16] = rng.choice([*KNOWN_TYPES, 0, 1, 32, 49, 54, 255])
        return bytes(buf), "hdr-next"
    if field == 3:
        buf[17] = rng.choice([0x20, 0x21, 0x2F, 0x10, 0x30, 0x00, 0xFF, 0x1F])
        return bytes(buf), "hdr-version"
    if field == 4:
        buf[18] = rng.choice(EXCHANGES)
        return bytes(buf), "hdr-exchange"
    if field == 5:
        buf[19] = rng.choice([0, 0x08, 0x20, 0x28, 0x10, 0x18, 0x38, 0xFF, 0x01, 0x80]) ^ rng.choice(
            (0, 0, 0x08)
        )
        return bytes(buf), "hdr-flags"
    if field == 6:
        mid = struct.unpack("!I", data[20:24])[0]
        buf[20:24] = struct.pack(
            "!I", rng.choice([0, 1, 2, mid + 1, max(mid - 1, 0), 0x7FFFFFFF, 0xFFFFFFFF]) & 0xFFFFFFFF
        )
        return bytes(buf), "hdr-message-id"
    if field == 7:
        buf[24:28] = struct.pack(
            "!I", rng.choice([0, 27, 28, len(data) - 1, len(data) + 1, 0xFFFFFFFF, 65536]) & 0xFFFFFFFF
        )
        return bytes(buf), "hdr-length"
    # a generic payload header in the outer chain: length, next payload or flags
    pos, headers = 28, []
    while pos + 4 <= len(data):
        headers.append(pos)
        length = struct.unpack("!H", data[pos + 2 : pos + 4])[0]
        if length < 4 or data[pos] == 0:
            break
        pos += length
    if not headers:
        return bytes(buf), "hdr-none"
    pos = rng.choice(headers)
    what = rng.randrange(3)
    if what == 0:
        length = struct.unpack("!H", data[pos + 2 : pos + 4])[0]
        buf[pos + 2 : pos + 4] = struct.pack(
            "!H", rng.choice([0, 3, 4, 5, length - 1, length + 1, 65535]) & 0xFFFF
        )
    elif what == 1:
        buf[pos] = rng.choice([*KNOWN_TYPES, 0, 1, 255])
    else:
        buf[pos + 1] = rng.choice([0x80, 0x01, 0x7F, 0xFF])
    if data[16] == 53 and rng.random() < 0.5 and len(data) >= 36:  # the SKF numbers (inside the AAD)
        buf[32:36] = struct.pack(
            "!HH", rng.choice([0, 1, 2, 3, 32, 33, 65535]), rng.choice([0, 1, 2, 3, 32, 33, 65535])
        )
    return bytes(buf), "payload-header"


def mutate_outer(rng, target, lib: Library) -> Tuple[List[bytes], str]:
    datagrams = list(target.datagrams)
    notes = []
    for _step in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.random()
        if op < 0.15 and (len(datagrams) > 1 or rng.random() < 0.3):
            kind = rng.randrange(5)
            if kind == 0 and len(datagrams) > 1:
                del datagrams[rng.randrange(len(datagrams))]
                notes.append("drop-datagram")
            elif kind == 1:
                i = rng.randrange(len(datagrams))
                datagrams.insert(i, datagrams[i])
                notes.append("duplicate-datagram")
            elif kind == 2:
                datagrams.reverse()
                notes.append("reverse")
            elif kind == 3:
                datagrams = datagrams + datagrams
                notes.append("retransmit")
            else:
                datagrams.insert(rng.randrange(len(datagrams) + 1), rng.choice(lib.datagrams))
                notes.append("foreign-datagram")
            continue
        i = rng.randrange(len(datagrams))
        if op < 0.55:
            datagrams[i], note = mutate_header_field(rng, datagrams[i], lib)
        else:
            datagrams[i], note = mutate_octets(rng, datagrams[i], lib)
            if rng.random() < 0.5:
                datagrams[i] = _fix_length(datagrams[i])
                note += "+length"
        notes.append(note)
    return datagrams, "outer:" + "+".join(notes)


# --- payload bodies ---------------------------------------------------------------------------------------


def parse_sa(body: bytes):
    proposals, pos = [], 0
    while pos < len(body):
        if len(body) - pos < 8:
            return None
        _last, _r, plen, num, proto, spi_size, _count = struct.unpack_from("!BBHBBBB", body, pos)
        if plen < 8 + spi_size or pos + plen > len(body):
            return None
        spi = body[pos + 8 : pos + 8 + spi_size]
        tpos, tend, transforms = pos + 8 + spi_size, pos + plen, []
        while tpos < tend:
            if tend - tpos < 8:
                return None
            _tl, _r2, tlen, ttype, _r3, tid = struct.unpack_from("!BBHBBH", body, tpos)
            if tlen < 8 or tpos + tlen > tend:
                return None
            transforms.append([ttype, tid, body[tpos + 8 : tpos + tlen]])
            tpos += tlen
        proposals.append([num, proto, spi, transforms])
        pos += plen
    return proposals


def encode_sa(proposals, count_lie: bool = False) -> bytes:
    out = b""
    for i, (num, proto, spi, transforms) in enumerate(proposals):
        tb = b""
        for j, (ttype, tid, attrs) in enumerate(transforms):
            more = 0 if j == len(transforms) - 1 else 3
            tb += (
                struct.pack("!BBHBBH", more, 0, (8 + len(attrs)) & 0xFFFF, ttype & 0xFF, 0, tid & 0xFFFF)
                + attrs
            )
        count = len(transforms) + (1 if count_lie else 0)
        more = 0 if i == len(proposals) - 1 else 2
        out += struct.pack("!BBHBBBB", more, 0, (8 + len(spi) + len(tb)) & 0xFFFF, num & 0xFF, proto & 0xFF,
                           len(spi) & 0xFF, count & 0xFF) + spi + tb  # fmt: skip
    return out


def _random_transform(rng):
    ttype = rng.choice([1, 2, 3, 4, 5, 6, 7, 12, 0, 13, 255])
    tid = rng.choice(TRANSFORM_IDS.get(ttype, TRANSFORM_IDS[4]))
    return [ttype, tid, _random_attrs(rng) if rng.random() < 0.3 else b""]


def _random_attrs(rng) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return struct.pack("!HH", 0x800E, rng.choice([0, 1, 64, 128, 192, 256, 512, 65535]))
    if choice == 1:
        return struct.pack("!HH", 0x000E, 2) + b"\x01\x00"  # KEY_LENGTH in TLV form (§3.3.5 forbids)
    if choice == 2:
        return struct.pack("!HH", 0x800E, 128) * 2
    if choice == 3:
        return struct.pack("!HH", rng.choice([0x8001, 0x7FFF, 0xFFFF]), rng.randrange(65536))
    if choice == 4:
        return struct.pack("!HH", 0x0010, 200) + b"x"  # TLV that overruns
    return rbytes(rng, rng.choice((1, 2, 3, 5)))


def mutate_sa(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    proposals = parse_sa(body)
    if not proposals:
        return _generic_body(rng, body, lib)
    op = rng.randrange(14)
    p = rng.choice(proposals)
    if op == 0:
        p[0] = rng.choice([0, 1, 2, 3, 255, rng.randrange(256)])
        note = "proposal-number"
    elif op == 1:
        p[1] = rng.choice([0, 1, 2, 3, 4, 255])
        note = "protocol"
    elif op == 2:
        p[2] = rng.choice([b"", rbytes(rng, 1), rbytes(rng, 3), rbytes(rng, 4), rbytes(rng, 8), rbytes(rng, 16),
                           bytes(4), bytes(8), rng.choice(lib.esp_spis), b"\x00\x00\x00\x01"])  # fmt: skip
        note = "spi-size-%d" % len(p[2])
    elif op == 3 and p[3]:
        del p[3][rng.randrange(len(p[3]))]
        note = "drop-transform"
    elif op == 4:
        p[3].insert(rng.randrange(len(p[3]) + 1), _random_transform(rng))
        note = "add-transform"
    elif op == 5 and p[3]:
        t = rng.choice(p[3])
        t[1] = rng.choice([*TRANSFORM_IDS.get(t[0], TRANSFORM_IDS[4]), rng.randrange(65536)])
        note = "transform-id"
    elif op == 6 and p[3]:
        t = rng.choice(p[3])
        t[0] = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 241, 255])
        note = "transform-type"
    elif op == 7 and p[3]:
        rng.choice(p[3])[2] = _random_attrs(rng)
        note = "attributes"
    elif op == 8:
        proposals.append([p[0], p[1], p[2], [list(t) for t in p[3]]])
        note = "duplicate-proposal"
    elif op == 9:
        proposals[:] = [
            [i + 1, p[1], p[2], [list(t) for t in p[3]]] for i in range(rng.choice((20, 64, 255)))
        ]
        note = "many-proposals"
    elif op == 10:
        p[3] = []
        note = "no-transforms"
    elif op == 11:
        return b"", "sa-empty"
    elif op == 12:
        p[3] = [list(rng.choice(p[3])) for _count in range(rng.choice((30, 200)))] if p[3] else []
        note = "many-transforms"
    else:
        return encode_sa(proposals, count_lie=True), "sa-count-lie"
    return encode_sa(proposals), "sa-" + note


def mutate_ke(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    group = struct.unpack("!H", body[:2])[0] if len(body) >= 2 else 31
    data = body[4:]
    op = rng.randrange(6)
    if op == 0:
        group = rng.choice(KE_GROUPS)
        note = "group-%d" % group
    elif op == 1:
        data = rng.choice([b"", data[:1], data[:-1], data + b"\x00", data[: len(data) // 2], data * 2])
        note = "length-%d" % len(data)
    elif op == 2:
        data = bytes([rng.choice((0, 0xFF))]) * len(data)
        note = "constant"
    elif op == 3:
        data = rbytes(rng, len(data))
        note = "random"
    elif op == 4:
        group = rng.choice(list(KE_SIZES))
        data = rbytes(rng, KE_SIZES[group])
        note = "group-%d-random" % group
    else:
        small = [
            b"\x01" + bytes(31),
            b"\xe0\xeb\x7a\x7c\x3b\x41\xb8\xae\x16\x56\xe3\xfa\xf1\x9f\xc4\x6a\xda\x09\x8d\xeb\x9c\x32\xb1\xfd\x86\x62\x05\x16\x5f\x49\xb8\x00",
        ]
        data = rng.choice([*small, bytes(64), b"\x00" * 255 + b"\x01", b"\xff" * 256])
        note = "weak-value"
    return struct.pack("!HH", group & 0xFFFF, 0) + data, "ke-" + note


def mutate_nonce(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    n = rng.choice([0, 1, 8, 15, 16, 17, 32, 255, 256, 257, 1000])
    return rbytes(rng, n), "nonce-%d" % n


def notify_body(notify_type: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> bytes:
    return struct.pack("!BBH", protocol & 0xFF, len(spi) & 0xFF, notify_type & 0xFFFF) + spi + data


def interesting_notify(rng, lib: Library) -> Tuple[bytes, str]:
    choice = rng.randrange(12)
    if choice == 0:
        return notify_body(
            NotifyType.REKEY_SA, b"", ProtocolId.ESP, rng.choice([*lib.esp_spis, rbytes(rng, 4)])
        ), "REKEY_SA"
    if choice == 1:
        spi = rng.choice([b"", rbytes(rng, 4), rbytes(rng, 8), rbytes(rng, 2)])
        return notify_body(NotifyType.REKEY_SA, b"", rng.choice([0, 1, 2, 3, 9]), spi), "REKEY_SA-odd"
    if choice == 2:
        link = rng.choice([*lib.links, b"", rbytes(rng, 1), rbytes(rng, 64), rbytes(rng, 300)])
        return notify_body(NotifyType.ADDITIONAL_KEY_EXCHANGE, link), "ADDITIONAL_KEY_EXCHANGE"
    if choice == 3:
        data = rng.choice([b"", b"\x00", b"\x00\x13", b"\x00\x1f", b"\x00\x24", b"\xff\xff", b"\x00\x0e\x00"])
        return notify_body(NotifyType.INVALID_KE_PAYLOAD, data), "INVALID_KE_PAYLOAD"
    if choice == 4:
        return notify_body(NotifyType.COOKIE, rbytes(rng, rng.choice([0, 1, 36, 64, 65, 1000]))), "COOKIE"
    if choice == 5:
        data = rng.choice(
            [b"", b"\x00", b"\x00\x02\x00", b"\x00\x02" * 300, b"\x00\x05\x00\x08", b"\xff\xff"]
        )
        return notify_body(NotifyType.SIGNATURE_HASH_ALGORITHMS, data), "SIGNATURE_HASH_ALGORITHMS"
    if choice == 6:
        kind = rng.choice([NotifyType.NAT_DETECTION_SOURCE_IP, NotifyType.NAT_DETECTION_DESTINATION_IP])
        return notify_body(kind, rbytes(rng, rng.choice([0, 19, 20, 21]))), "NAT_DETECTION"
    if choice == 7:
        kind = rng.choice(SIMPLE_NOTIFIES)
        return notify_body(kind, rng.choice([b"", rbytes(rng, 4)])), "N-%d" % kind
    if choice == 8:
        kind = rng.choice(ERROR_NOTIFIES)
        spi = rng.choice([b"", rng.choice(lib.esp_spis)])
        return notify_body(
            kind, rng.choice([b"", rbytes(rng, 2)]), ProtocolId.ESP if spi else 0, spi
        ), "N-%d" % kind
    if choice == 9:
        kind = rng.choice([NotifyType.SET_WINDOW_SIZE, NotifyType.TEMPORARY_FAILURE, NotifyType.CHILD_SA_NOT_FOUND,
                           NotifyType.STATE_NOT_FOUND])  # fmt: skip
        return notify_body(
            kind, rng.choice([b"", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01"])
        ), "N-%d" % kind
    if choice == 10:
        return notify_body(rng.randrange(65536), rbytes(rng, rng.choice((0, 4, 40)))), "N-random"
    return notify_body(NotifyType.AUTHENTICATION_FAILED), "AUTHENTICATION_FAILED"


def mutate_notify(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    if len(body) < 4:
        return interesting_notify(rng, lib)
    protocol, spi_size, notify_type = struct.unpack("!BBH", body[:4])
    spi, data = body[4 : 4 + spi_size], body[4 + spi_size :]
    op = rng.randrange(6)
    if op == 0:
        notify_type = rng.choice(ERROR_NOTIFIES + SIMPLE_NOTIFIES + [NotifyType.REKEY_SA, NotifyType.COOKIE,
                                 NotifyType.ADDITIONAL_KEY_EXCHANGE, 16384 + rng.randrange(1000), 65535])  # fmt: skip
        return notify_body(notify_type, data, protocol, spi), "notify-type-%d" % notify_type
    if op == 1:
        return notify_body(notify_type, data, rng.choice([0, 1, 2, 3, 4, 255]), spi), "notify-protocol"
    if op == 2:
        spi = rng.choice([b"", rbytes(rng, 1), rbytes(rng, 4), rbytes(rng, 8), rbytes(rng, 17)])
        return notify_body(notify_type, data, protocol or 3, spi), "notify-spi-%d" % len(spi)
    if op == 3:
        data = rng.choice([b"", data[:1], data[:-1], rbytes(rng, len(data)), data * 3, rbytes(rng, 4000)])
        return notify_body(notify_type, data, protocol, spi), "notify-data"
    if op == 4:
        return struct.pack(
            "!BBH", protocol, rng.choice([(spi_size + 1) & 0xFF, 255, 0]), notify_type
        ) + spi + data, "notify-spi-size-lie"
    return interesting_notify(rng, lib)


def mutate_delete(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    protocol = body[0] if body else 3
    op = rng.randrange(6)
    if op == 0:
        n = rng.choice([100, 1000, 5000, 16000])
        spis = [rbytes(rng, 4) for _count in range(n)]
        for spi in lib.esp_spis[:8]:
            spis.insert(rng.randrange(len(spis) + 1), spi)
        return struct.pack("!BBH", 3, 4, len(spis) & 0xFFFF) + b"".join(spis), "delete-many-%d" % n
    if op == 1:
        spis = rng.sample(lib.esp_spis, min(len(lib.esp_spis), rng.randrange(1, 6)))
        return struct.pack("!BBH", 3, 4, len(spis)) + b"".join(spis), "delete-known-spis"
    if op == 2:
        protocol = rng.choice([0, 1, 2, 3, 4, 255])
        size = rng.choice([0, 4, 8, 3])
        count = rng.choice([0, 1, 2])
        return struct.pack("!BBH", protocol, size, count) + rbytes(
            rng, size * count
        ), "delete-protocol-%d-size-%d" % (protocol, size)
    if op == 3:
        return struct.pack("!BBH", protocol, 4, rng.choice([1, 5, 65535])) + rbytes(
            rng, 4
        ), "delete-count-lie"
    if op == 4:
        return struct.pack("!BBH", 1, 8, 1) + rng.choice(lib.ike_spis or [bytes(8)]), "delete-ike-with-spi"
    return struct.pack("!BBH", 1, 0, 0), "delete-ike"


def mutate_id(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    id_type, data = (body[0], body[4:]) if len(body) >= 4 else (2, b"")
    op = rng.randrange(4)
    if op == 0:
        id_type = rng.choice(ID_TYPES)
    elif op == 1:
        data = rng.choice(ID_DATA + lib.subjects)
    elif op == 2:
        id_type, data = rng.choice([(1, b"\xc0\x00\x02\x01"), (1, b"\xc0\x00\x02"), (5, bytes(15)), (5, bytes(16)),
                                    (9, rng.choice(lib.subjects or [b"\x30\x00"])), (9, b"\x30\x03\x31\x01"),
                                    (9, b"\x30\x80\x00\x00"), (3, b"no-at-sign"), (11, rbytes(rng, 20))])  # fmt: skip
    else:
        data = data + bytes([rng.choice([0x0A, 0x0D, 0x1B, 0x00, 0x7F, 0x80, 0xFF])]) + data
    return bytes([id_type & 0xFF]) + rng.choice([b"\x00\x00\x00", b"\xff\xff\xff"]) + data, "id-%d" % id_type


def mutate_auth(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    method, data = (body[0], body[4:]) if len(body) >= 4 else (2, b"")
    op = rng.randrange(5)
    if op == 0:
        method = rng.choice(AUTH_METHODS)
        note = "method-%d" % method
    elif op == 1:
        data = rng.choice(
            [b"", rbytes(rng, 1), rbytes(rng, 32), rbytes(rng, 64), rbytes(rng, 256), rbytes(rng, 600)]
        )
        note = "data-%d" % len(data)
    elif op == 2 and data:
        i = rng.randrange(len(data))
        data = data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]
        note = "bitflip"
    elif op == 3:
        method = 14
        algorithm = rng.choice(ALGORITHM_IDS)
        size = rng.choice([len(algorithm), len(algorithm), 0, 255, len(algorithm) + 5])
        data = bytes([size & 0xFF]) + algorithm + rng.choice([b"", rbytes(rng, 64), rbytes(rng, 256), data])
        note = "rfc7427-algorithm"
    else:
        method = rng.choice([1, 9, 10, 11])
        data = rbytes(rng, rng.choice([0, 32, 64, 65, 132, 256, 384]))
        note = "classic-%d" % method
    return bytes([method & 0xFF, 0, 0, 0]) + data, "auth-" + note


def mutate_cert(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    encoding = body[0] if body else 4
    data = body[1:]
    op = rng.randrange(6)
    if op <= 1 and lib.broken:
        name, der = rng.choice(lib.broken)
        return b"\x04" + der, "cert-" + name
    if op == 2:
        encoding = rng.choice([0, 1, 2, 3, 11, 12, 13, 255])
        return bytes([encoding]) + data, "cert-encoding-%d" % encoding
    if op == 3 and data:
        i = rng.randrange(len(data))
        return bytes([encoding]) + data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[
            i + 1 :
        ], "cert-bitflip"
    if op == 4 and lib.real_certificates:
        return b"\x04" + rng.choice(lib.real_certificates), "cert-other-real"
    return bytes([rng.choice((4, 12))]) + rbytes(rng, rng.choice((0, 20, 100, 1000))), "cert-garbage"


def mutate_certreq(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    encoding = rng.choice([4, 4, 0, 1, 12, 255])
    return bytes([encoding]) + rbytes(rng, rng.choice((0, 1, 19, 20, 21, 40, 2000))), "certreq"


def _v4(a: str) -> bytes:
    return ipaddress.IPv4Address(a).packed


def selector(ts_type=7, protocol=0, start_port=0, end_port=65535, start=b"", end=b"", length=None) -> bytes:
    size = 8 + len(start) + len(end) if length is None else length
    return struct.pack("!BBHHH", ts_type & 0xFF, protocol & 0xFF, size & 0xFFFF, start_port & 0xFFFF,
                       end_port & 0xFFFF) + start + end  # fmt: skip


def _split_selectors(data: bytes) -> List[bytes]:
    out, pos = [], 0
    while pos + 4 <= len(data):
        size = struct.unpack("!H", data[pos + 2 : pos + 4])[0]
        if size < 4:
            break
        out.append(data[pos : pos + size])
        pos += size
    return out


def mutate_ts(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    selectors = _split_selectors(body[4:]) if len(body) >= 4 else []
    op = rng.randrange(12)
    if op == 0:
        label = rng.choice([b"", b"system_u:object_r:ipsec_spd_t:s0", rbytes(rng, 100)])
        selectors.append(struct.pack("!BBH", 10, 0, 4 + len(label)) + label)
        note = "seclabel"
    elif op == 1:
        label = b"system_u:object_r:ipsec_spd_t:s0"
        selectors = [struct.pack("!BBH", 10, 0, 4 + len(label)) + label]
        note = "seclabel-only"
    elif op == 2:
        t = rng.choice([0, 6, 9, 11, 12, 241, 255])
        selectors.insert(rng.randrange(len(selectors) + 1), struct.pack("!BBH", t, 0, 8) + rbytes(rng, 4))
        note = "type-%d" % t
    elif op == 3:
        selectors.append(selector(7, 0, 0, 65535, _v4("10.1.0.255"), _v4("10.1.0.0")))
        note = "reversed-range"
    elif op == 4:
        selectors.append(selector(7, 6, 443, 80, _v4("10.1.0.0"), _v4("10.1.0.255")))
        note = "reversed-ports"
    elif op == 5:
        selectors = [
            selector(7, rng.choice([0, 1, 6, 17, 58, 255]), 65535, 0, _v4("0.0.0.0"), _v4("255.255.255.255"))
        ]
        note = "opaque-any"
    elif op == 6:
        selectors.append(selector(8, 0, 0, 65535, bytes(16), b"\xff" * 16))
        note = "ipv6-any"
    elif op == 7:
        selectors.append(
            selector(7, 0, 0, 65535, _v4("10.1.0.0"), b"\xff" * 16, length=rng.choice([16, 28, 40]))
        )
        note = "length-lie"
    elif op == 8:
        selectors = []
        note = "empty"
    elif op == 9:
        selectors = [selector(7, 0, 0, 65535, _v4("10.%d.%d.0" % (rng.randrange(256), i)),
                              _v4("10.%d.%d.255" % (rng.randrange(256), i))) for i in range(rng.choice((50, 255)))]  # fmt: skip
        note = "many"
    elif op == 10:
        start, end = rng.choice([("0.0.0.0", "255.255.255.255"), ("10.1.0.5", "10.1.0.5"), ("10.1.0.0", "10.2.255.255"),
                                 ("172.16.0.0", "172.16.0.255"), ("10.2.0.0", "10.2.0.255")])  # fmt: skip
        selectors = [selector(7, 0, 0, 65535, _v4(start), _v4(end))]
        note = "range"
    else:
        return struct.pack("!B3x", rng.choice([0, 1, 2, 255])) + b"".join(selectors), "ts-count-lie"
    return struct.pack("!B3x", len(selectors) & 0xFF) + b"".join(selectors), "ts-" + note


def mutate_cp(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    attrs = b"".join(struct.pack("!HH", rng.choice([1, 2, 3, 8, 13, 0x7FFF, 0x8001]), n) + rbytes(rng, n)
                     for n in (rng.choice([0, 4, 3, 16]) for _count in range(rng.randrange(4))))  # fmt: skip
    return struct.pack("!B3x", rng.choice([1, 2, 3, 4, 0, 255])) + attrs, "cp"


def mutate_eap(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    code = rng.choice([1, 2, 3, 4, 0, 5])
    data = rbytes(rng, rng.choice([0, 1, 10]))
    size = rng.choice([4 + len(data) + 1, 4 + len(data) + 1, 0, 3, 9999])
    return struct.pack("!BBH", code, rng.randrange(256), size & 0xFFFF) + bytes(
        [rng.choice([1, 4, 13, 254])]
    ) + data, "eap"


def _generic_body(rng, body: bytes, lib: Library) -> Tuple[bytes, str]:
    data, note = mutate_octets(rng, body, lib)
    return data, "body-" + note


BODY_MUTATORS: Dict[int, Callable] = {
    P.SA: mutate_sa, P.KE: mutate_ke, P.IDi: mutate_id, P.IDr: mutate_id, P.CERT: mutate_cert,
    P.CERTREQ: mutate_certreq, P.AUTH: mutate_auth, P.NONCE: mutate_nonce, P.NOTIFY: mutate_notify,
    P.DELETE: mutate_delete, P.TSi: mutate_ts, P.TSr: mutate_ts, P.CP: mutate_cp, P.EAP: mutate_eap,
}  # fmt: skip


# --- inner: the payload chain -----------------------------------------------------------------------------


def _new_payload(rng, lib: Library) -> Tuple[Raw, str]:
    """A payload to insert: from another message, an interesting Notify, a broken CERT, or unknown."""
    r = rng.random()
    if r < 0.4 and lib.all_payloads:
        ptype, body = rng.choice(lib.all_payloads)
        return Raw(ptype, 0, body), "insert-%d" % ptype
    if r < 0.7:
        body, note = interesting_notify(rng, lib)
        return Raw(P.NOTIFY, 0, body), "insert-" + note
    if r < 0.8 and lib.broken:
        name, der = rng.choice(lib.broken)
        return Raw(P.CERT, 0, b"\x04" + der), "insert-cert-" + name
    if r < 0.9:
        ptype = rng.choice(list(BODY_MUTATORS))
        body, note = BODY_MUTATORS[ptype](rng, b"", lib)
        return Raw(ptype, 0, body), "insert-new-" + note
    ptype = rng.choice([1, 49, 52, 54, 128, 200, 255])
    return Raw(ptype, rng.choice((0, 0x80)), rbytes(rng, rng.choice((0, 4, 40)))), "insert-unknown-%d" % ptype


def mutate_chain(rng, payloads: List[Raw], lib: Library) -> str:
    """Apply one structural or payload-level change in place; returns what it did."""
    table = [(10, "body"), (3, "drop"), (2, "duplicate"), (2, "move"), (2, "retype"), (1, "flags"), (7, "insert"),
             (2, "octets"), (0.5, "transplant")]  # fmt: skip
    op = pick_weighted(rng, table)
    if not payloads and op not in ("insert", "transplant"):
        op = "insert"
    if op == "body":
        certs = [p for p in payloads if p.ptype == P.CERT]
        p = rng.choice(certs) if certs and rng.random() < 0.35 else rng.choice(payloads)
        mutator = BODY_MUTATORS.get(p.ptype, _generic_body)
        p.body, note = mutator(rng, p.body, lib)
        return note
    if op == "drop":
        p = payloads.pop(rng.randrange(len(payloads)))
        return "drop-%d" % p.ptype
    if op == "duplicate":
        p = rng.choice(payloads)
        payloads.insert(rng.randrange(len(payloads) + 1), p.copy())
        return "duplicate-%d" % p.ptype
    if op == "move":
        p = payloads.pop(rng.randrange(len(payloads)))
        payloads.insert(rng.randrange(len(payloads) + 1), p)
        return "move-%d" % p.ptype
    if op == "retype":
        p = rng.choice(payloads)
        old, p.ptype = p.ptype, rng.choice([*KNOWN_TYPES, 1, 49, 128, 255])
        return "retype-%d-%d" % (old, p.ptype)
    if op == "flags":
        p = rng.choice(payloads)
        p.flags = rng.choice([0x80, 0x01, 0x7F, 0xFF])
        return "flags-%d" % p.ptype
    if op == "insert":
        new, note = _new_payload(rng, lib)
        payloads.insert(rng.randrange(len(payloads) + 1), new)
        return note
    if op == "octets":
        p = rng.choice(payloads)
        p.body, note = mutate_octets(rng, p.body, lib)
        return "body-%d-%s" % (p.ptype, note)
    # transplant: another message's payloads under this header
    others = list(lib.all_payloads)
    payloads[:] = [Raw(t, 0, b) for t, b in rng.sample(others, min(len(others), rng.randrange(1, 7)))]
    return "transplant"


def mutate_header(rng, header: Hdr) -> str:
    what = rng.randrange(4)
    if what == 0:
        header.exchange = rng.choice(
            EXCHANGES + [ExchangeType.IKE_INTERMEDIATE, ExchangeType.IKE_FOLLOWUP_KE] * 3
        )
        return "exchange-%d" % header.exchange
    if what == 1:
        header.flags ^= rng.choice([0x08, 0x20, 0x10, 0x01, 0x80, 0x28])
        return "flags-%02x" % header.flags
    if what == 2:
        mid = header.message_id
        header.message_id = rng.choice([mid + 1, mid + 2, max(mid - 1, 0), 0, 0xFFFFFFFF]) & 0xFFFFFFFF
        return "message-id-%d" % header.message_id
    header.version = rng.choice([0x21, 0x2F, 0x30, 0x10])
    return "version-%02x" % header.version


def _ivs(rng, cipher) -> Callable[[], bytes]:
    return lambda: rbytes(rng, cipher.iv_length)


def protect(rng, target, header: Hdr, first: int, plain: bytes) -> Tuple[List[bytes], str]:
    """The mutated plaintext under the sender's keys: SK, or SKF fragments (some of them odd)."""
    sealer = target.sealer
    ivs = _ivs(rng, sealer.cipher)
    fragmented = len(target.datagrams) > 1
    r = rng.random()
    if r < (0.55 if fragmented else 0.85):
        if fragmented:
            return sealer.seal_skf(header, first, plain, ivs), "skf"
        return [sealer.seal_sk(header, first, plain, ivs())], "sk"
    chunk = rng.choice([1, 8, 64, 200, sealer.fragment_plain, max(1, len(plain) // 2)])
    kind = rng.randrange(7)
    if kind == 0:
        return sealer.seal_skf(header, first, plain, ivs, chunk), "skf-%d" % chunk
    if kind == 1:
        total = rng.choice([0, 1, 2, 33, 65535])
        return sealer.seal_skf(header, first, plain, ivs, chunk, total=total), "skf-total-%d" % total
    fragments = sealer.seal_skf(header, first, plain, ivs, chunk)
    if kind == 2 and len(fragments) > 1:
        del fragments[rng.randrange(len(fragments))]
        return fragments, "skf-missing"
    if kind == 3:
        i = rng.randrange(len(fragments))
        fragments.insert(i, fragments[i])
        return fragments, "skf-duplicate"
    if kind == 4:
        fragments.reverse()
        return fragments, "skf-reversed"
    if kind == 5:
        number = rng.choice([0, 2, 40, 65535])
        return [sealer.seal_fragment(header, rng.choice([first, 0, 41]), plain[:chunk], number,
                                     rng.choice([1, 2, number]), ivs())], "skf-number-%d" % number  # fmt: skip
    pieces = [plain[i : i + chunk] for i in range(0, len(plain), chunk)] or [b""]
    return [sealer.seal_fragment(header, first, piece, n + 1, len(pieces), ivs())
            for n, piece in enumerate(pieces)], "skf-inner-on-every-fragment"  # fmt: skip


def mutate_inner(rng, target, lib: Library, octets: bool) -> Tuple[List[bytes], str]:
    header = Hdr.of(target.header)
    notes = []
    if octets:
        plain = target.plain
        for _step in range(rng.choice((1, 1, 2, 4))):
            plain, note = mutate_octets(rng, plain, lib)
            notes.append(note)
        first = target.first_inner if rng.random() < 0.9 else rng.choice([*KNOWN_TYPES, 0, 1])
    else:
        payloads = [p.copy() for p in target.payloads]
        for _step in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            notes.append(mutate_chain(rng, payloads, lib))
        first, plain = join_chain(payloads)
    if rng.random() < 0.12:
        notes.append(mutate_header(rng, header))
    if not target.encrypted:
        kind = "init-octets" if octets else "init"
        return [header.encode(first, 28 + len(plain)) + plain], "%s:%s" % (kind, "+".join(notes))
    datagrams, how = protect(rng, target, header, first, plain)
    return datagrams, "%s/%s:%s" % ("inner-octets" if octets else "inner", how, "+".join(notes))


def mutate(rng, target, lib: Library) -> Tuple[List[bytes], str]:
    """One mutant of ``target``: a list of datagrams for its receiver, and what was done."""
    readable = target.payloads is not None and (target.sealer is not None or not target.encrypted)
    r = rng.random()
    if not readable or r < (0.3 if not target.encrypted else 0.2):
        return mutate_outer(rng, target, lib)
    return mutate_inner(rng, target, lib, octets=r > 0.85)
