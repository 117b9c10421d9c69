"""Traffic Selector payloads TSi/TSr (RFC 7296 §3.13)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import List, Union

from ..ids import PayloadType, TsType
from .codec import Address, CountOf, FailFn, Int, Items, Length, Reserved, Rest, Struct, Values
from .payload import Payload

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# RFC 4301 §4.4.1.1 / strongSwan: start port 65535 with end port 0 means OPAQUE.
OPAQUE_PORTS = (0xFFFF, 0)
_ADDRESS_SIZES = {TsType.TS_IPV4_ADDR_RANGE: 4, TsType.TS_IPV6_ADDR_RANGE: 16}


def _address_size(values: Values) -> int:
    return _ADDRESS_SIZES[values["ts_type"]]


@dataclass(repr=False)
class TrafficSelector(Struct):
    """An IPv4 or IPv6 address range selector (§3.13.1); the TS type follows the addresses."""

    start_addr: IPAddress
    end_addr: IPAddress
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 0xFFFF

    LABEL = "traffic selector"
    LENGTH_AT = 2
    LAYOUT = (
        Int("ts_type", 1),
        Int("ip_protocol", 1),
        Length(),
        Int("start_port", 2),
        Int("end_port", 2),
        Address("start_addr", _address_size),
        Address("end_addr", _address_size),
    )

    @property
    def ts_type(self) -> int:
        if getattr(self.start_addr, "version", None) == 6:
            return TsType.TS_IPV6_ADDR_RANGE
        return TsType.TS_IPV4_ADDR_RANGE

    @classmethod
    def from_network(
        cls, network: str, ip_protocol: int = 0, start_port: int = 0, end_port: int = 0xFFFF
    ) -> TrafficSelector:
        net = ipaddress.ip_network(network, strict=False)
        return cls(net.network_address, net.broadcast_address, ip_protocol, start_port, end_port)

    @property
    def is_opaque(self) -> bool:
        return (self.start_port, self.end_port) == OPAQUE_PORTS

    def validate(self, fail: FailFn) -> None:
        for name in ("start_addr", "end_addr"):
            if not isinstance(getattr(self, name), (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                raise fail(name, "expected an IPv4Address or IPv6Address")
        for name in ("start_port", "end_port"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise fail(name, "expected an integer port")
        if self.start_addr.version != self.end_addr.version:
            raise fail("end address", "start and end addresses are of different families")
        if self.start_addr > self.end_addr:
            raise fail("end address", f"range {self.start_addr}..{self.end_addr} ends before it starts")
        if self.start_port > self.end_port and not self.is_opaque:
            raise fail("end port", f"port range {self.start_port}..{self.end_port} ends before it starts")

    def describe(self) -> str:
        text = f"{self.start_addr}..{self.end_addr}"
        networks = list(ipaddress.summarize_address_range(self.start_addr, self.end_addr))
        if len(networks) == 1:
            text = str(networks[0])
        if self.ip_protocol or (self.start_port, self.end_port) != (0, 0xFFFF):
            if self.is_opaque:
                ports = "OPAQUE"
            elif self.start_port == self.end_port:
                ports = str(self.start_port)
            else:
                ports = f"{self.start_port}-{self.end_port}"
            text += f"[{self.ip_protocol}/{ports}]"
        return text


@dataclass(repr=False)
class RawSelector(Struct):
    """A selector of a type this codec does not interpret (e.g. TS_SECLABEL, RFC 9478).

    Kept as octets so the IKE layer can answer it (TS_UNACCEPTABLE) instead of the whole
    message being rejected as malformed.
    """

    ts_type: int
    second_octet: int = 0
    data: bytes = b""

    LABEL = "traffic selector"
    LENGTH_AT = 2
    LAYOUT = (Int("ts_type", 1), Int("second_octet", 1), Length(), Rest("data"))

    def validate(self, fail: FailFn) -> None:
        if self.ts_type in _ADDRESS_SIZES:
            raise fail("ts type", "address range selectors are TrafficSelector objects")

    def describe(self) -> str:
        return f"TS_TYPE_{self.ts_type}({len(self.data)} bytes)"


def _selector_class(ts_type: int) -> type:
    return TrafficSelector if ts_type in _ADDRESS_SIZES else RawSelector


Selector = Union[TrafficSelector, RawSelector]


@dataclass(repr=False)
class TsPayload(Payload):
    """Traffic Selector payload body (§3.13); TSi and TSr share it."""

    selectors: List[Selector] = field(default_factory=list)

    LAYOUT = (
        CountOf("selectors", 1),
        Reserved(3),
        Items("selectors", counted=True, select=_selector_class),
    )

    def describe(self) -> str:
        return f"{super().describe()}(" + " ".join(s.describe() for s in self.selectors) + ")"


@dataclass(repr=False)
class TsiPayload(TsPayload):
    """TSi: the initiator-side selectors."""

    payload_type = PayloadType.TSi


@dataclass(repr=False)
class TsrPayload(TsPayload):
    """TSr: the responder-side selectors."""

    payload_type = PayloadType.TSr
