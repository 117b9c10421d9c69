"""Identification (RFC 7296 §3.5), Certificate (§3.6), Certificate Request (§3.7), AUTH (§3.8)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..ids import AuthMethod, CertEncoding, IdType, PayloadType
from ..text import printable
from .codec import REDACTED, FailFn, Int, Reserved, Rest, enum_name, hexdump
from .payload import Payload

_ADDRESS_SIZES = {IdType.ID_IPV4_ADDR: 4, IdType.ID_IPV6_ADDR: 16}
_TEXT_TYPES = (IdType.ID_FQDN, IdType.ID_RFC822_ADDR)


@dataclass(repr=False)
class IdPayload(Payload):
    """Identification payload body (§3.5); IDi and IDr share it."""

    id_type: int
    data: bytes

    LAYOUT = (Int("id_type", 1), Reserved(3), Rest("data"))

    def validate(self, fail: FailFn) -> None:
        size = _ADDRESS_SIZES.get(self.id_type)
        if size is not None and len(self.data) != size:
            raise fail("identification data", f"{enum_name(IdType, self.id_type)} needs {size} bytes")

    def value_text(self) -> str:
        """The identity for logs: an address, a name (escaped: the peer chose it), or hex for binary ones."""
        if self.id_type in _ADDRESS_SIZES and len(self.data) == _ADDRESS_SIZES[self.id_type]:
            return str(ipaddress.ip_address(self.data))
        if self.id_type in _TEXT_TYPES:
            return printable(self.data.decode("ascii", "backslashreplace"))
        return hexdump(self.data)

    def describe(self) -> str:
        kind = enum_name(IdType, self.id_type).replace("ID_", "")
        return f"{super().describe()}({kind}={self.value_text()})"


@dataclass(repr=False)
class IdiPayload(IdPayload):
    """IDi: the initiator's identity."""

    payload_type = PayloadType.IDi


@dataclass(repr=False)
class IdrPayload(IdPayload):
    """IDr: the responder's identity."""

    payload_type = PayloadType.IDr


@dataclass(repr=False)
class CertPayload(Payload):
    """Certificate payload (§3.6)."""

    encoding: int
    data: bytes = field(metadata=REDACTED)  # large; show only its length

    payload_type = PayloadType.CERT
    LAYOUT = (Int("encoding", 1), Rest("data"))

    def describe(self) -> str:
        return f"CERT({enum_name(CertEncoding, self.encoding)})"


@dataclass(repr=False)
class CertReqPayload(Payload):
    """Certificate Request payload (§3.7); for X.509 the authority is concatenated SHA-1 key hashes."""

    encoding: int
    authority: bytes = b""

    payload_type = PayloadType.CERTREQ
    LAYOUT = (Int("encoding", 1), Rest("authority"))

    def authority_hashes(self) -> list:
        """The 20-byte SHA-1 hashes, or [] when the authority is not a whole number of them."""
        if len(self.authority) % 20:
            return []
        return [self.authority[i : i + 20] for i in range(0, len(self.authority), 20)]

    def describe(self) -> str:
        return f"CERTREQ({enum_name(CertEncoding, self.encoding)})"


@dataclass(repr=False)
class AuthPayload(Payload):
    """Authentication payload (§3.8)."""

    method: int
    data: bytes = field(metadata=REDACTED)

    payload_type = PayloadType.AUTH
    LAYOUT = (Int("method", 1), Reserved(3), Rest("data"))

    def describe(self) -> str:
        return f"AUTH({enum_name(AuthMethod, self.method)})"
