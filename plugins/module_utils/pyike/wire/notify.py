"""Notify (RFC 7296 §3.10), Delete (§3.11) and Vendor ID (§3.12) payloads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from ..ids import NotifyType, PayloadType, ProtocolId
from .codec import Bytes, Chunks, FailFn, Int, Rest, SizeOf, Values, enum_name, hexdump
from .payload import Payload

ERROR_TYPE_LIMIT = 16384  # §3.10.1: types below this are errors, from it on status


@dataclass(repr=False)
class NotifyPayload(Payload):
    """Notify payload (§3.10).  ``notify_type`` stays an int: unknown types are legal.

    The Protocol ID is meaningless without an SPI: it is sent as zero and ignored (set to
    zero) on receipt when the SPI is empty (§3.10).
    """

    notify_type: int
    data: bytes = b""
    protocol: int = 0
    spi: bytes = b""

    payload_type = PayloadType.NOTIFY
    LAYOUT = (Int("protocol", 1), SizeOf("spi", 1), Int("notify_type", 2), Bytes("spi"), Rest("data"))

    @classmethod
    def normalize(cls, values: Values) -> None:
        if not values["spi"]:
            values["protocol"] = 0

    def validate(self, fail: FailFn) -> None:
        if not self.spi and self.protocol:
            raise fail("protocol id", "must be 0 when there is no SPI (§3.10)")

    @property
    def is_error(self) -> bool:
        return self.notify_type < ERROR_TYPE_LIMIT

    def describe(self) -> str:
        return f"N({enum_name(NotifyType, self.notify_type)})"


@dataclass(repr=False)
class DeletePayload(Payload):
    """Delete payload (§3.11): an IKE SA (no SPIs) or AH/ESP SAs by their 4-byte SPIs."""

    protocol: int
    spis: List[bytes] = field(default_factory=list)

    payload_type = PayloadType.DELETE
    LAYOUT = (Int("protocol", 1), Chunks("spis"))

    def validate(self, fail: FailFn) -> None:
        if self.protocol == ProtocolId.NONE:
            raise fail("protocol id", "0 is not a protocol (§3.11)")
        if self.protocol == ProtocolId.IKE and self.spis:
            raise fail("spis", "deleting the IKE SA carries no SPIs (§3.11)")
        if self.protocol in (ProtocolId.AH, ProtocolId.ESP) and any(len(s) != 4 for s in self.spis):
            raise fail("spi size", "AH and ESP SPIs are 4 bytes (§3.11)")

    def describe(self) -> str:
        spis = ",".join(s.hex() for s in self.spis)
        return f"D({enum_name(ProtocolId, self.protocol)}{' ' + spis if spis else ''})"


@dataclass(repr=False)
class VendorIdPayload(Payload):
    """Vendor ID payload (§3.12)."""

    data: bytes

    payload_type = PayloadType.VENDOR_ID
    LAYOUT = (Rest("data"),)

    def describe(self) -> str:
        return f"V({hexdump(self.data, 8)})"
