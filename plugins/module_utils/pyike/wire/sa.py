"""Security Association payload: proposals, transforms, attributes (RFC 7296 §3.3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple, Union

from ..ids import DhId, EncrId, EsnId, IntegId, PayloadType, PrfId, ProtocolId, TransformAttr, TransformType
from .codec import Bytes as BytesField
from .codec import (
    CountOf,
    Cursor,
    FailFn,
    Int,
    Items,
    Length,
    More,
    Reserved,
    SizeOf,
    Struct,
    Values,
    encode_error,
    enum_name,
)
from .payload import Payload

_TV_BIT = 0x8000

# §3.3.1: "8 for IKE, 4 for ESP and AH"; 0 for IKE during the initial IKE_SA_INIT.
SPI_SIZES = {ProtocolId.IKE: (0, 8), ProtocolId.AH: (4,), ProtocolId.ESP: (4,)}

_ID_ENUMS = {
    TransformType.ENCR: EncrId,
    TransformType.PRF: PrfId,
    TransformType.INTEG: IntegId,
    TransformType.DH: DhId,
    TransformType.ESN: EsnId,
}


@dataclass(repr=False)
class Attribute(Struct):
    """Transform attribute (§3.3.5): TV format when ``value`` is an int, TLV when it is bytes.

    The AF bit selects the format, so this item is read and written by hand rather than by
    a layout table.
    """

    attr_type: int
    value: Union[int, bytes]

    LABEL = "attribute"

    @property
    def is_tv(self) -> bool:
        return isinstance(self.value, int)

    def validate(self, fail: FailFn) -> None:
        if self.attr_type == TransformAttr.KEY_LENGTH and not self.is_tv:
            raise fail("attribute format", "KEY_LENGTH must use the TV format (§3.3.5)")

    @classmethod
    def read_item(cls, cur: Cursor, index: int) -> Tuple[Any, Values]:
        start = cur.pos
        word = cur.uint(2, "attribute type")
        if word & _TV_BIT:
            value: Union[int, bytes] = cur.uint(2, "attribute value")
        else:
            value = cur.take(cur.uint(2, "attribute length"), "attribute value")
        obj = cls(word & 0x7FFF, value)
        obj.validate(lambda name, message: cur.error(name, message, at=start))
        return obj, {}

    def encode_struct(self, last: bool = True) -> bytes:
        owner = type(self).__name__
        self.validate(lambda name, message: encode_error(owner, name, message))
        if isinstance(self.attr_type, bool) or not isinstance(self.attr_type, int):
            raise encode_error(owner, "attr_type", f"{self.attr_type!r} is not an integer")
        if not 0 <= self.attr_type < _TV_BIT:
            raise encode_error(owner, "attr_type", f"{self.attr_type} is not in 0..32767")
        if isinstance(self.value, bool) or not isinstance(self.value, (int, bytes, bytearray)):
            raise encode_error(owner, "value", f"expected int (TV) or bytes (TLV), got {self.value!r}")
        if isinstance(self.value, int):
            if not 0 <= self.value <= 0xFFFF:
                raise encode_error(owner, "value", f"TV value {self.value} is not in 0..65535")
            return struct.pack("!HH", _TV_BIT | self.attr_type, self.value)
        if len(self.value) > 0xFFFF:
            raise encode_error(owner, "value", "TLV value longer than 65535 bytes")
        return struct.pack("!HH", self.attr_type, len(self.value)) + bytes(self.value)


@dataclass(repr=False)
class Transform(Struct):
    """Transform substructure (§3.3.2)."""

    transform_type: int
    transform_id: int
    attributes: List[Attribute] = field(default_factory=list)

    LABEL = "transform"
    LENGTH_AT = 2
    LAYOUT = (
        More(3),
        Reserved(1),
        Length(),
        Int("transform_type", 1),
        Reserved(1),
        Int("transform_id", 2),
        Items("attributes", Attribute),
    )

    @classmethod
    def make(cls, transform_type: int, transform_id: int, key_length: Optional[int] = None) -> Transform:
        attributes = [Attribute(TransformAttr.KEY_LENGTH, key_length)] if key_length is not None else []
        return cls(transform_type, transform_id, attributes)

    @property
    def key_length(self) -> Optional[int]:
        for attribute in self.attributes:
            if attribute.attr_type == TransformAttr.KEY_LENGTH and isinstance(attribute.value, int):
                return attribute.value
        return None

    def describe(self) -> str:
        enum = _ID_ENUMS.get(self.transform_type)
        if enum is None and TransformType.ADDKE1 <= self.transform_type <= TransformType.ADDKE7:
            enum = DhId
        name = enum_name(enum, self.transform_id) if enum else str(self.transform_id)
        kind = enum_name(TransformType, self.transform_type)
        key_length = self.key_length
        return f"{kind}:{name}" + (f"/{key_length}" if key_length is not None else "")


@dataclass(repr=False)
class Proposal(Struct):
    """Proposal substructure (§3.3.1): protocol, optional SPI and its transforms."""

    number: int
    protocol: int
    transforms: List[Transform] = field(default_factory=list)
    spi: bytes = b""

    LABEL = "proposal"
    LENGTH_AT = 2
    LAYOUT = (
        More(2),
        Reserved(1),
        Length(),
        Int("number", 1),
        Int("protocol", 1),
        SizeOf("spi", 1),
        CountOf("transforms", 1),
        BytesField("spi"),
        Items("transforms", Transform, counted=True),
    )

    def validate(self, fail: FailFn) -> None:
        if self.number == 0:
            raise fail("proposal num", "proposal numbers start at 1 (§3.3.1)")
        if self.protocol == ProtocolId.NONE:
            raise fail("protocol id", "0 is not a protocol (§3.3.1)")
        allowed = SPI_SIZES.get(self.protocol)
        if allowed is not None and len(self.spi) not in allowed:
            raise fail(
                "spi size",
                f"{len(self.spi)} is not valid for {enum_name(ProtocolId, self.protocol)} (allowed: {allowed})",
            )

    def transforms_of(self, transform_type: int) -> List[Transform]:
        return [t for t in self.transforms if t.transform_type == transform_type]

    def describe(self) -> str:
        spi = f" spi={self.spi.hex()}" if self.spi else ""
        transforms = " ".join(t.describe() for t in self.transforms)
        return f"#{self.number} {enum_name(ProtocolId, self.protocol)}{spi} {transforms}".rstrip()


@dataclass(repr=False)
class SaPayload(Payload):
    """Security Association payload (§3.3): one or more proposals numbered 1, 2, 3, ...

    A response carries one proposal whose number is the accepted one, so the decoder only
    checks that numbers are consecutive; ``rules.check_payloads`` checks the request starts
    at 1 and that a response holds exactly one.
    """

    proposals: List[Proposal] = field(default_factory=list)

    payload_type = PayloadType.SA
    LAYOUT = (Items("proposals", Proposal),)

    def validate(self, fail: FailFn) -> None:
        if not self.proposals:
            raise fail("proposals", "an SA payload needs at least one proposal (§3.3)")
        for previous, proposal in zip(self.proposals, self.proposals[1:]):
            if proposal.number != previous.number + 1:
                raise fail(
                    "proposal num",
                    f"proposal {proposal.number} follows {previous.number}; each must be one more (§3.3.1)",
                )

    def describe(self) -> str:
        return "SA(" + ", ".join(p.describe() for p in self.proposals) + ")"
