"""Configuration payload CP (RFC 7296 §3.15)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from ..ids import CfgType, PayloadType
from .codec import Bytes, Int, Items, Reserved, SizeOf, Struct, enum_name, hexdump
from .payload import Payload


@dataclass(repr=False)
class CfgAttribute(Struct):
    """Configuration attribute (§3.15.1).  The top (reserved) bit of the type is ignored on receipt."""

    attr_type: int
    value: bytes = b""

    LABEL = "configuration attribute"
    LAYOUT = (Int("attr_type", 2, mask=0x7FFF), SizeOf("value", 2), Bytes("value"))

    def describe(self) -> str:
        return f"{self.attr_type}={hexdump(self.value, 16) or '-'}"


@dataclass(repr=False)
class CpPayload(Payload):
    """Configuration payload (§3.15): a CFG type and its attributes."""

    cfg_type: int
    attributes: List[CfgAttribute] = field(default_factory=list)

    payload_type = PayloadType.CP
    LAYOUT = (Int("cfg_type", 1), Reserved(3), Items("attributes", CfgAttribute))

    def describe(self) -> str:
        attributes = " ".join(a.describe() for a in self.attributes)
        return f"CP({enum_name(CfgType, self.cfg_type)}{' ' + attributes if attributes else ''})"
