"""Key Exchange (RFC 7296 §3.4) and Nonce (§3.9) payloads."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ids import DhId, PayloadType
from .codec import REDACTED, FailFn, Int, Reserved, Rest, enum_name
from .payload import Payload

NONCE_MIN = 16  # §3.9: "at least 16 octets"
NONCE_MAX = 256  # §3.9: "MUST NOT be more than 256 octets"


@dataclass(repr=False)
class KePayload(Payload):
    """Key Exchange payload (§3.4): the method number and this side's public value."""

    group: int
    data: bytes = field(metadata=REDACTED)

    payload_type = PayloadType.KE
    LAYOUT = (Int("group", 2), Reserved(2), Rest("data"))

    def describe(self) -> str:
        return f"KE({enum_name(DhId, self.group)})"


@dataclass(repr=False)
class NoncePayload(Payload):
    """Nonce payload (§3.9)."""

    data: bytes

    payload_type = PayloadType.NONCE
    LAYOUT = (Rest("data"),)

    def validate(self, fail: FailFn) -> None:
        if not NONCE_MIN <= len(self.data) <= NONCE_MAX:
            raise fail("nonce data", f"{len(self.data)} bytes; a nonce has {NONCE_MIN}..{NONCE_MAX} (§3.9)")

    def describe(self) -> str:
        return "No"
