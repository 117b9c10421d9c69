"""Base class of every payload, and the payload a receiver does not recognise (RFC 7296 §3.2, §2.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from ..ids import PayloadType
from .codec import Cursor, FailFn, Rest, Struct, enum_name

# strongSwan-style short names for one-line message summaries.
SHORT_NAMES = {
    PayloadType.SA: "SA",
    PayloadType.KE: "KE",
    PayloadType.IDi: "IDi",
    PayloadType.IDr: "IDr",
    PayloadType.CERT: "CERT",
    PayloadType.CERTREQ: "CERTREQ",
    PayloadType.AUTH: "AUTH",
    PayloadType.NONCE: "No",
    PayloadType.NOTIFY: "N",
    PayloadType.DELETE: "D",
    PayloadType.VENDOR_ID: "V",
    PayloadType.TSi: "TSi",
    PayloadType.TSr: "TSr",
    PayloadType.SK: "SK",
    PayloadType.CP: "CP",
    PayloadType.EAP: "EAP",
    PayloadType.SKF: "SKF",
}


def payload_name(payload_type: int) -> str:
    """The payload type name ("NONCE", "SA") or "payload type 99" for numbers without one."""
    name = enum_name(PayloadType, payload_type)
    return name if not name.isdigit() else f"payload type {payload_type}"


class Payload(Struct):
    """A payload body (everything after the generic payload header) with its type number.

    ``raw_body`` holds the body exactly as received (``None`` for locally built payloads):
    AUTH (§2.15) signs the received ID payload octets, reserved bits included.
    """

    payload_type: ClassVar[int]
    raw_body = None

    def encode_body(self) -> bytes:
        return self.encode_struct()

    @classmethod
    def decode_body(cls, body: bytes, offset: int = 0) -> Payload:
        """Decode a body; ``offset`` is where the body starts in the message (for errors)."""
        data = bytes(body)
        cur = Cursor(data, offset, f"{payload_name(cls.payload_type)} payload", cls.payload_type)
        obj, _values = cls.decode_from(cur)
        obj.raw_body = data
        return obj

    def describe(self) -> str:
        """One short token for log lines, e.g. ``N(COOKIE)``; no key material."""
        return SHORT_NAMES.get(self.payload_type, str(self.payload_type))


@dataclass(repr=False)
class UnknownPayload(Payload):
    """A payload type we do not implement, received without the critical bit: skipped (§2.5).

    Encoding one writes its type and ``critical`` flag as given, which tests use to build
    messages that a peer must reject.
    """

    payload_type: int  # type: ignore[misc]
    body: bytes = b""
    critical: bool = False

    LAYOUT = (Rest("body"),)

    def validate(self, fail: FailFn) -> None:
        if isinstance(self.payload_type, bool) or not isinstance(self.payload_type, int):
            raise fail("payload type", f"{self.payload_type!r} is not an integer")
        if not 0 < self.payload_type <= 0xFF:
            raise fail("payload type", f"{self.payload_type} is not in 1..255")

    def describe(self) -> str:
        return f"UNKNOWN({self.payload_type})"


def short_name(payload_type: Optional[int]) -> str:
    if payload_type is None:
        return "-"
    return SHORT_NAMES.get(payload_type, str(payload_type))
