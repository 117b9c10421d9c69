"""Broken X.509 certificates for CERT payload mutants, made by DER surgery on the corpus' real ones.

A certificate is SEQUENCE { tbsCertificate, signatureAlgorithm, signature }; tbsCertificate is SEQUENCE {
[0] version, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, [3] extensions }
(RFC 5280 §4.1).  Each variant changes one thing that ``cryptography`` checks lazily or refuses (a
duplicate extension, an unknown key or signature algorithm, version 1 or an invalid version, a name
that is not UTF-8, a malformed subjectAltName, a point off the curve ...).  Signatures are not redone:
the engine must reject these before or at the signature check, whatever ``cryptography`` raises.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple

Node = Tuple[int, object]  # (tag, bytes) for primitive items, (tag, [children]) for constructed ones


class DerError(ValueError):
    pass


def _length(data: bytes, pos: int) -> Tuple[int, int]:
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0 or count > 4 or pos + 1 + count > len(data):
        raise DerError("bad length")
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def parse(data: bytes) -> List[Node]:
    """Every item in ``data``; constructed items (bit 0x20 of the tag) are parsed recursively."""
    out: List[Node] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise DerError("truncated item")
        tag = data[pos]
        size, start = _length(data, pos + 1)
        end = start + size
        if end > len(data):
            raise DerError("item overruns its container")
        content = data[start:end]
        out.append((tag, parse(content) if tag & 0x20 else content))
        pos = end
    return out


def encode_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(content)) + content


def encode(nodes: List[Node]) -> bytes:
    out = b""
    for tag, value in nodes:
        out += tlv(tag, encode(value) if isinstance(value, list) else value)
    return out


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.insert(0, 0x80 | (part & 0x7F))
            part >>= 7
        body += bytes(chunk)
    return body


UNKNOWN_OID = oid("1.3.6.1.4.1.99999.1.2.3")
OID_SAN = oid("2.5.29.17")
OID_CN = oid("2.5.4.3")


def _tbs(cert: List[Node]) -> List[Node]:
    return cert[0][1][0][1]  # Certificate -> tbsCertificate children


def _field_index(tbs: List[Node]) -> Dict[str, int]:
    """Positions of the tbsCertificate fields (version and extensions are optional)."""
    offset = 1 if tbs and tbs[0][0] == 0xA0 else 0
    names = ["serial", "signature", "issuer", "validity", "subject", "spki"]
    index = {name: offset + i for i, name in enumerate(names)}
    for i, (tag, _value) in enumerate(tbs):
        if tag == 0xA3:
            index["extensions"] = i
    if offset:
        index["version"] = 0
    return index


def _extensions(tbs: List[Node]) -> Optional[List[Node]]:
    at = _field_index(tbs).get("extensions")
    return None if at is None else tbs[at][1][0][1]  # [3] -> SEQUENCE OF Extension


def _variants(der: bytes) -> Dict[str, bytes]:
    out: Dict[str, bytes] = {}

    def variant(name, change):
        cert = parse(der)
        try:
            change(_tbs(cert), cert)
        except (IndexError, KeyError, TypeError, DerError):
            return
        out[name] = encode(cert)

    def duplicate_extension(tbs, cert):
        extensions = _extensions(tbs)
        extensions.append(extensions[0])

    def unknown_key_algorithm(tbs, cert):
        spki = tbs[_field_index(tbs)["spki"]][1]
        spki[0][1][0] = (0x06, UNKNOWN_OID)

    def unknown_signature_algorithm(tbs, cert):
        tbs[_field_index(tbs)["signature"]][1][0] = (0x06, UNKNOWN_OID)
        cert[0][1][1][1][0] = (0x06, UNKNOWN_OID)

    def version1(tbs, cert):
        index = _field_index(tbs)
        if "extensions" in index:
            del tbs[index["extensions"]]
        del tbs[0]

    def version_value(value):
        def change(tbs, cert):
            tbs[0] = (0xA0, [(0x02, bytes([value]))])

        return change

    def common_name(raw: bytes, tag: int = 0x0C):
        def change(tbs, cert):
            subject = tbs[_field_index(tbs)["subject"]][1]
            for rdn in subject:
                attribute = rdn[1][0][1]
                if attribute[0][1] == OID_CN:
                    attribute[1] = (tag, raw)

        return change

    def san(value: bytes):
        def change(tbs, cert):
            for extension in _extensions(tbs):
                if extension[1][0][1] == OID_SAN:
                    extension[1][-1] = (0x04, value)

        return change

    def critical_unknown_extension(tbs, cert):
        _extensions(tbs).append((0x30, [(0x06, UNKNOWN_OID), (0x01, b"\xff"), (0x04, tlv(0x05, b""))]))

    def serial(value: bytes):
        def change(tbs, cert):
            tbs[_field_index(tbs)["serial"]] = (0x02, value)

        return change

    def key_bits(change_bits):
        def change(tbs, cert):
            spki = tbs[_field_index(tbs)["spki"]][1]
            tag, bits = spki[1]
            spki[1] = (tag, change_bits(bits))

        return change

    def validity(not_before: bytes, not_after: bytes, tag: int = 0x17):
        def change(tbs, cert):
            tbs[_field_index(tbs)["validity"]] = (0x30, [(tag, not_before), (tag, not_after)])

        return change

    def empty_names(tbs, cert):
        index = _field_index(tbs)
        tbs[index["subject"]] = (0x30, [])
        tbs[index["issuer"]] = (0x30, [])

    variant("duplicate-extension", duplicate_extension)
    variant("unknown-key-algorithm", unknown_key_algorithm)
    variant("unknown-signature-algorithm", unknown_signature_algorithm)
    variant("version-1", version1)
    variant("version-4", version_value(3))
    variant("version-99", version_value(99))
    variant("cn-not-utf8", common_name(b"\xff\xfe\xc3(left"))
    variant("cn-bmpstring-odd", common_name(b"\x00l\x00e\x00", tag=0x1E))
    variant("cn-universalstring", common_name(b"\x00\x00\x00l\x00\x00", tag=0x1C))
    variant("cn-control-characters", common_name(b"left\nINFO forged line\x1b[31m"))
    variant("san-garbage", san(b"\x30\x05\x82\x03ab"))
    variant("san-not-der", san(b"\xff\xff\xff"))
    variant("san-ip-5-octets", san(tlv(0x30, tlv(0x87, b"\x01\x02\x03\x04\x05"))))
    variant("san-dns-not-ascii", san(tlv(0x30, tlv(0x82, b"l\xffeft.example.org"))))
    variant("critical-unknown-extension", critical_unknown_extension)
    variant("serial-negative", serial(b"\x80"))
    variant("serial-zero", serial(b"\x00"))
    variant("serial-21-octets", serial(b"\x01" * 21))
    variant("key-off-curve", key_bits(lambda bits: bits[:-1] + bytes([bits[-1] ^ 1])))
    variant("key-truncated", key_bits(lambda bits: bits[: len(bits) // 2]))
    variant("key-empty", key_bits(lambda bits: b"\x00"))
    variant("validity-reversed", validity(b"300101000000Z", b"240101000000Z"))
    variant("validity-not-a-time", validity(b"2401010000Z", b"30010100000Z"))
    variant("validity-generalized-9999", validity(b"20240101000000Z", b"99991231235959Z", tag=0x18))
    variant("empty-names", empty_names)
    return out


@functools.cache
def broken_certificates(real: Tuple[bytes, ...]) -> List[Tuple[str, bytes]]:
    """(name, DER) of every variant of every real certificate, plus raw garbage."""
    out: List[Tuple[str, bytes]] = []
    for number, der in enumerate(real):
        for name, data in sorted(_variants(der).items()):
            out.append(("%s/%d" % (name, number), data))
        out.append(("trailing-data/%d" % number, der + b"\x00\x00"))
        out.append(("truncated/%d" % number, der[: len(der) // 2]))
        out.append(("outer-length-lies/%d" % number, der[:2] + bytes([der[2] ^ 0x01]) + der[3:]))
    out += [
        ("empty", b""),
        ("one-octet", b"\x30"),
        ("sequence-empty", b"\x30\x00"),
        ("indefinite-length", b"\x30\x80" + b"\x02\x01\x01" + b"\x00\x00"),
        ("deep-nesting", functools.reduce(lambda inner, _level: tlv(0x30, inner), range(300), b"")),
        ("not-der", b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
    ]
    return out
