"""The IKE header (RFC 7296 §3.1)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..ids import IKE_HEADER_LEN, IKE_VERSION, ExchangeType, HeaderFlag, NotifyType
from .codec import encode_error, enum_name
from .errors import WireError

_HEADER = struct.Struct("!8s8sBBBBII")
IKE_MAJOR_VERSION = IKE_VERSION >> 4


@dataclass(repr=False)
class Header:
    """IKE header fields that carry meaning.

    Version: sent as 2.0; a received minor version is ignored (§3.1).  Flags: only I and R
    are kept; the V bit and the reserved bits are sent as zero and ignored on receipt (§3.1).
    ``next_payload`` and ``length`` are filled in by ``encode_message``.
    """

    spi_i: bytes
    spi_r: bytes
    exchange: int
    message_id: int = 0
    initiator: bool = False
    response: bool = False
    next_payload: int = 0
    length: int = IKE_HEADER_LEN

    @classmethod
    def decode(cls, data: bytes) -> Header:
        """Decode and check the header of a whole datagram (``data`` is the full message)."""
        if len(data) < IKE_HEADER_LEN:
            raise WireError(
                f"IKE header: datagram of {len(data)} bytes is shorter than the {IKE_HEADER_LEN}-byte header",
                notify=None,
                drop=True,
                offset=0,
            )
        spi_i, spi_r, next_payload, version, exchange, flags, message_id, length = _HEADER.unpack_from(data)
        major = version >> 4
        if major > IKE_MAJOR_VERSION:
            raise WireError(
                f"IKE header: field 'major version' at byte 17: version {major} is not supported (§2.5)",
                notify=NotifyType.INVALID_MAJOR_VERSION,
                offset=17,
                field="major version",
            )
        if major < IKE_MAJOR_VERSION:
            raise WireError(
                f"IKE header: field 'major version' at byte 17: version {major} is not IKEv2",
                notify=None,
                drop=True,
                offset=17,
                field="major version",
            )
        if length != len(data):
            raise WireError(
                f"IKE header: field 'length' at byte 24: says {length} bytes but the datagram has {len(data)}",
                notify=None,
                drop=True,
                offset=24,
                field="length",
            )
        if spi_i == bytes(8):
            raise WireError(
                "IKE header: field 'initiator spi' at byte 0: must not be zero (§3.1)",
                notify=None,
                drop=True,
                offset=0,
                field="initiator spi",
            )
        return cls(
            spi_i=spi_i,
            spi_r=spi_r,
            exchange=exchange,
            message_id=message_id,
            initiator=bool(flags & HeaderFlag.INITIATOR),
            response=bool(flags & HeaderFlag.RESPONSE),
            next_payload=next_payload,
            length=length,
        )

    def encode(self) -> bytes:
        for name in ("spi_i", "spi_r"):
            value = getattr(self, name)
            if not isinstance(value, (bytes, bytearray)) or len(value) != 8:
                raise encode_error("Header", name, "an IKE SPI is 8 bytes")
        for name, limit in (("exchange", 0xFF), ("next_payload", 0xFF), ("message_id", 0xFFFFFFFF)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
                raise encode_error("Header", name, f"{value!r} is not an integer in 0..{limit}")
        if not isinstance(self.length, int) or not IKE_HEADER_LEN <= self.length <= 0xFFFFFFFF:
            raise encode_error("Header", "length", f"{self.length!r} is not a message length")
        flags = (HeaderFlag.INITIATOR if self.initiator else 0) | (
            HeaderFlag.RESPONSE if self.response else 0
        )
        return _HEADER.pack(
            bytes(self.spi_i),
            bytes(self.spi_r),
            self.next_payload,
            IKE_VERSION,
            self.exchange,
            flags,
            self.message_id,
            self.length,
        )

    def describe(self) -> str:
        """strongSwan-like "IKE_AUTH request 1" plus SPIs."""
        direction = "response" if self.response else "request"
        return (
            f"{enum_name(ExchangeType, self.exchange)} {direction} {self.message_id} "
            f"[{self.spi_i.hex()}_i {self.spi_r.hex()}_r]"
        )

    def __repr__(self) -> str:
        flags = "".join(f for f, on in (("I", self.initiator), ("R", self.response)) if on) or "-"
        return (
            f"Header(spi_i={self.spi_i.hex()}, spi_r={self.spi_r.hex()}, "
            f"exchange={enum_name(ExchangeType, self.exchange)}, message_id={self.message_id}, "
            f"flags={flags}, next_payload={self.next_payload}, length={self.length})"
        )


decode_header = Header.decode
