"""The little DER that IKE signatures need beyond what ``cryptography`` exposes.

``cryptography`` parses and writes whole certificates, but IKE also carries bare
AlgorithmIdentifiers (RFC 7427 AUTH data), RSASSA-PSS parameters (RFC 4055) and DER
distinguished names (ID_DER_ASN1_DN).  This module encodes and decodes exactly those
structures: tag-length-value items, OBJECT IDENTIFIER, INTEGER, NULL.  It is strict (definite
lengths in minimal form, nothing left over) because its input comes from the network.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
NULL = 0x05
OID = 0x06
MAX_DEPTH_ITEMS = 64  # an AlgorithmIdentifier or a DN never needs more items per level


class DerError(ValueError):
    """Malformed DER input."""


class Item(NamedTuple):
    """One DER item: its tag, its content octets and its whole encoding."""

    tag: int
    content: bytes
    encoded: bytes


# -- writing ---------------------------------------------------------------------------------


def encode(tag: int, content: bytes) -> bytes:
    """Tag, definite length in minimal form, content."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def sequence(*items: bytes) -> bytes:
    return encode(SEQUENCE, b"".join(items))


def explicit(number: int, inner: bytes) -> bytes:
    """A constructed context-specific tag ``[number]`` around one item (EXPLICIT tagging)."""
    return encode(0xA0 | number, inner)


def null() -> bytes:
    return encode(NULL, b"")


def integer(value: int) -> bytes:
    if value < 0:
        raise ValueError("only non-negative INTEGERs are used here")
    return encode(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def oid(dotted: str) -> bytes:
    """OBJECT IDENTIFIER from its dotted text (X.690 §8.19)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError("bad OID %r" % dotted)
    content = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        content += bytes(reversed(chunk))
    return encode(OID, bytes(content))


# -- reading ---------------------------------------------------------------------------------


def read(data: bytes, offset: int = 0) -> Tuple[Item, int]:
    """(Item, offset after it) for the item at ``offset``."""
    data = bytes(data)
    if offset + 2 > len(data):
        raise DerError("truncated DER item")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-octet DER tags are not used here")
    first = data[offset + 1]
    start = offset + 2
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        if count == 0:
            raise DerError("indefinite length is not DER")
        if count > 4 or start + count > len(data):
            raise DerError("bad DER length")
        size = int.from_bytes(data[start : start + count], "big")
        if size < 0x80 or data[start] == 0:
            raise DerError("DER length not in minimal form")
        start += count
    end = start + size
    if end > len(data):
        raise DerError("DER item longer than its data")
    return Item(tag, data[start:end], data[offset:end]), end


def read_one(data: bytes, tag: Optional[int] = None) -> Item:
    """The single item that makes up ``data`` (nothing may follow it)."""
    item, end = read(data, 0)
    if end != len(data):
        raise DerError("data follows the DER item")
    if tag is not None and item.tag != tag:
        raise DerError("expected DER tag 0x%02x, got 0x%02x" % (tag, item.tag))
    return item


def children(content: bytes) -> List[Item]:
    """The items inside a constructed item's content."""
    items: List[Item] = []
    offset = 0
    while offset < len(content):
        item, offset = read(content, offset)
        items.append(item)
        if len(items) > MAX_DEPTH_ITEMS:
            raise DerError("too many DER items")
    return items


def oid_text(content: bytes) -> str:
    """Dotted text of OBJECT IDENTIFIER content octets."""
    if not content or content[-1] & 0x80:
        raise DerError("bad OBJECT IDENTIFIER")
    arcs: List[int] = []
    value = 0
    started = False
    for octet in content:
        if not started and octet == 0x80:
            raise DerError("OBJECT IDENTIFIER arc not in minimal form")
        started = bool(octet & 0x80)
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def integer_value(item: Item) -> int:
    if item.tag != INTEGER or not item.content:
        raise DerError("expected an INTEGER")
    if len(item.content) > 1 and item.content[0] == 0 and not item.content[1] & 0x80:
        raise DerError("INTEGER not in minimal form")
    return int.from_bytes(item.content, "big", signed=True)
