"""Encrypted (SK, RFC 7296 §3.14) and Encrypted Fragment (SKF, RFC 7383 §2.5) payloads.

Their bodies stay opaque here (IV | ciphertext | ICV); decryption belongs to the crypto layer.
Their generic header's Next Payload names the first *inner* payload, kept as ``first_inner``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ids import PayloadType
from .codec import REDACTED, FailFn, Int, Rest
from .payload import Payload, short_name

SKF_FIELDS_LEN = 4  # Fragment Number + Total Fragments


def _check_first_inner(first_inner: int, fail: FailFn) -> None:
    if isinstance(first_inner, bool) or not isinstance(first_inner, int) or not 0 <= first_inner <= 0xFF:
        raise fail("next payload", f"first inner payload type {first_inner!r} is not in 0..255")


@dataclass(repr=False)
class SkPayload(Payload):
    """Encrypted payload (§3.14); always the last payload of its message."""

    body: bytes = field(metadata=REDACTED)
    first_inner: int = PayloadType.NONE

    payload_type = PayloadType.SK
    LAYOUT = (Rest("body"),)

    def validate(self, fail: FailFn) -> None:
        _check_first_inner(self.first_inner, fail)

    def describe(self) -> str:
        return f"SK({short_name(self.first_inner)}..., {len(self.body)} bytes)"


@dataclass(repr=False)
class SkfPayload(Payload):
    """Encrypted Fragment payload (RFC 7383 §2.5).

    Only fragment 1 names the first inner payload; later fragments send 0 there, and the
    reassembler uses fragment 1's value.
    """

    fragment_number: int
    total_fragments: int
    body: bytes = field(metadata=REDACTED)
    first_inner: int = PayloadType.NONE

    payload_type = PayloadType.SKF
    LAYOUT = (Int("fragment_number", 2), Int("total_fragments", 2), Rest("body"))

    def validate(self, fail: FailFn) -> None:
        if not isinstance(self.fragment_number, int) or not isinstance(self.total_fragments, int):
            raise fail("fragment number", "expected integers")
        _check_first_inner(self.first_inner, fail)
        if self.fragment_number < 1:
            raise fail("fragment number", "fragments are numbered from 1 (RFC 7383 §2.5)")
        if self.fragment_number > self.total_fragments:
            raise fail(
                "fragment number",
                f"{self.fragment_number} exceeds total fragments {self.total_fragments} (RFC 7383 §2.5)",
            )
        if self.fragment_number > 1 and self.first_inner:
            raise fail("next payload", "only fragment 1 names the first inner payload (RFC 7383 §2.5)")

    def describe(self) -> str:
        inner = f"{short_name(self.first_inner)}..., " if self.fragment_number == 1 else ""
        return f"SKF({self.fragment_number}/{self.total_fragments}, {inner}{len(self.body)} bytes)"
