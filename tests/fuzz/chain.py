"""Raw payload chains and their protection with real SA keys.

The engine's codec validates what it encodes, so mutants are built one level lower: a chain is a list of
:class:`Raw` payloads (type, flags octet, body octets), encoded with Next Payload fields that follow the
list.  :class:`Sealer` then protects a plaintext chain exactly as ``IkeSa.protect`` does (RFC 7296 §3.14,
RFC 5282 §5.1 AAD, RFC 7383 SKF fragments), with IVs drawn from the caller's seeded generator so that a
mutant is a pure function of (seed, index).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import List, Optional, Sequence, Tuple

from pyike.crypto.sk import SkCipher
from pyike.ids import IKE_HEADER_LEN
from pyike.wire.header import Header

GENERIC = struct.Struct("!BBH")
HEADER = struct.Struct("!8s8sBBBBII")
SK, SKF = 46, 53


@dataclasses.dataclass
class Hdr:
    """IKE header fields as octets may carry them (any flags and version, unlike the codec's Header)."""

    spi_i: bytes
    spi_r: bytes
    exchange: int
    flags: int
    message_id: int
    version: int = 0x20

    @classmethod
    def of(cls, header: Header) -> Hdr:
        flags = (0x08 if header.initiator else 0) | (0x20 if header.response else 0)
        return cls(header.spi_i, header.spi_r, header.exchange, flags, header.message_id)

    def encode(self, next_payload: int, length: int) -> bytes:
        return HEADER.pack(self.spi_i, self.spi_r, next_payload & 0xFF, self.version & 0xFF,
                           self.exchange & 0xFF, self.flags & 0xFF, self.message_id & 0xFFFFFFFF,
                           length & 0xFFFFFFFF)  # fmt: skip


@dataclasses.dataclass
class Raw:
    """One payload as octets: its type, the flags octet of its generic header (critical bit 0x80), body."""

    ptype: int
    flags: int
    body: bytes

    def copy(self) -> Raw:
        return Raw(self.ptype, self.flags, self.body)


def split_chain(first: int, data: bytes) -> Optional[List[Raw]]:
    """The payloads of a well-formed plaintext chain, or None when it does not parse (no SK inside)."""
    out: List[Raw] = []
    pos, ptype = 0, first
    while ptype != 0:
        if len(data) - pos < 4:
            return None
        following, flags, length = GENERIC.unpack_from(data, pos)
        if length < 4 or pos + length > len(data):
            return None
        out.append(Raw(ptype, flags, bytes(data[pos + 4 : pos + length])))
        pos += length
        ptype = following
    return out if pos == len(data) else None


def join_chain(payloads: Sequence[Raw], tail: int = 0) -> Tuple[int, bytes]:
    """(first payload type, octets); lengths are clipped to 16 bits like a sloppy peer would."""
    out = bytearray()
    for index, payload in enumerate(payloads):
        following = payloads[index + 1].ptype if index + 1 < len(payloads) else tail
        out += GENERIC.pack(following & 0xFF, payload.flags & 0xFF, (4 + len(payload.body)) & 0xFFFF)
        out += payload.body
    first = payloads[0].ptype if payloads else tail
    return first & 0xFF, bytes(out)


def plain_message(header: Hdr, payloads: Sequence[Raw]) -> bytes:
    """An unprotected message (IKE_SA_INIT) with Next Payload and Length filled in."""
    first, chain = join_chain(payloads)
    return header.encode(first, IKE_HEADER_LEN + len(chain)) + chain


@dataclasses.dataclass
class Sealer:
    """Protects messages in one direction of one IKE SA: the sender's outbound SK cipher."""

    cipher: SkCipher
    fragment_plain: int  # plaintext octets per SKF fragment the sender would use

    def seal_sk(self, header: Hdr, first_inner: int, plain: bytes, iv: bytes) -> bytes:
        sk_len = 4 + self.cipher.body_length(len(plain))
        prefix = header.encode(SK, IKE_HEADER_LEN + sk_len) + GENERIC.pack(
            first_inner & 0xFF, 0, sk_len & 0xFFFF
        )
        return prefix + self.cipher.seal(plain, prefix, iv)

    def seal_skf(
        self, header: Hdr, first_inner: int, plain: bytes, ivs, chunk: Optional[int] = None, total=None
    ) -> List[bytes]:
        """SKF fragments of ``plain``; ``total`` may lie (a count other than the real one), ``ivs`` is a
        callable giving one IV per fragment."""
        chunk = max(1, chunk or self.fragment_plain)
        pieces = [plain[i : i + chunk] for i in range(0, len(plain), chunk)] or [b""]
        count = len(pieces) if total is None else total
        out = []
        for index, piece in enumerate(pieces):
            number = index + 1
            prefix = _skf_prefix(header, first_inner if number == 1 else 0, self.cipher.body_length(len(piece)),
                                 number, count)  # fmt: skip
            out.append(prefix + self.cipher.seal(piece, prefix, ivs()))
        return out

    def seal_fragment(
        self, header: Hdr, inner: int, piece: bytes, number: int, total: int, iv: bytes
    ) -> bytes:
        """One SKF fragment with any numbers (also those the codec refuses to build)."""
        prefix = _skf_prefix(header, inner, self.cipher.body_length(len(piece)), number, total)
        return prefix + self.cipher.seal(piece, prefix, iv)


def _skf_prefix(header: Hdr, first_inner: int, body_len: int, number: int, total: int) -> bytes:
    sk_len = 4 + 4 + body_len
    return (
        header.encode(SKF, IKE_HEADER_LEN + sk_len)
        + GENERIC.pack(first_inner & 0xFF, 0, sk_len & 0xFFFF)
        + struct.pack("!HH", number & 0xFFFF, total & 0xFFFF)
    )
