"""Traffic Selector payloads TSi/TSr (RFC 7296 §3.13).

Address-range selectors (TS types 7 and 8) decode to and encode from the one selector value type,
:class:`..selectors.TrafficSelector`; selectors of any other type stay :class:`RawSelector` octets.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, List, Tuple, Union

from ..ids import PayloadType, TsType
from ..selectors import OPAQUE_PORTS, TrafficSelector
from .codec import (
    Address,
    CountOf,
    Cursor,
    FailFn,
    Int,
    Items,
    Length,
    Reserved,
    Rest,
    Struct,
    Values,
    encode_error,
)
from .payload import Payload

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_ADDRESS_SIZES = {TsType.TS_IPV4_ADDR_RANGE: 4, TsType.TS_IPV6_ADDR_RANGE: 16}


def _address_size(values: Values) -> int:
    return _ADDRESS_SIZES[values["ts_type"]]


@dataclass(repr=False)
class _AddressRange(Struct):
    """The octets of a TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE selector (§3.13.1).

    Only the codec sees it: decoding gives a :class:`TrafficSelector`, encoding takes one.
    """

    ts_type: int
    ip_protocol: int
    start_port: int
    end_port: int
    start_addr: IPAddress
    end_addr: IPAddress

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

    @classmethod
    def of(cls, ts: TrafficSelector) -> _AddressRange:
        return cls(ts.ts_type, ts.protocol, ts.start_port, ts.end_port, ts.start_address, ts.end_address)

    def validate(self, fail: FailFn) -> None:
        if self.start_addr > self.end_addr:
            raise fail("end address", f"range {self.start_addr}..{self.end_addr} ends before it starts")
        ports = (self.start_port, self.end_port)
        if self.start_port > self.end_port and ports != OPAQUE_PORTS:
            raise fail("end port", f"port range {self.start_port}..{self.end_port} ends before it starts")

    @classmethod
    def read_item(cls, cur: Cursor, index: int) -> Tuple[Any, Values]:
        layout, values = super().read_item(cur, index)
        version = 4 if layout.ts_type == TsType.TS_IPV4_ADDR_RANGE else 6
        selector = TrafficSelector(
            version,
            int(layout.start_addr),
            int(layout.end_addr),
            layout.ip_protocol,
            layout.start_port,
            layout.end_port,
        )
        return selector, values


@dataclass(repr=False)
class RawSelector(Struct):
    """A selector of a type this codec does not interpret (e.g. TS_SECLABEL, RFC 9478).

    Kept as octets so that the message still decodes; narrowing ignores it (RFC 7296 §3.13.1).
    """

    ts_type: int
    second_octet: int = 0
    data: bytes = b""

    LABEL = "traffic selector"
    LENGTH_AT = 2
    LAYOUT = (Int("ts_type", 1), Int("second_octet", 1), Length(), Rest("data"))

    def validate(self, fail: FailFn) -> None:
        if self.ts_type in _ADDRESS_SIZES:
            raise fail("ts type", "address range selectors are TrafficSelector values")

    def describe(self) -> str:
        return f"TS_TYPE_{self.ts_type}({len(self.data)} bytes)"

    def __str__(self) -> str:
        return self.describe()


def _selector_class(ts_type: int) -> type:
    return _AddressRange if ts_type in _ADDRESS_SIZES else RawSelector


Selector = Union[TrafficSelector, RawSelector]


class SelectorItems(Items):
    """The selectors of a TS payload: :class:`TrafficSelector` or :class:`RawSelector` items."""

    def __init__(self, name: str):
        super().__init__(name, counted=True, select=_selector_class)

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        items = view[self.name]
        if not isinstance(items, (list, tuple)):
            raise encode_error(owner, self.name, f"expected a list, got {type(items).__name__}")
        for index, item in enumerate(items):
            if isinstance(item, TrafficSelector):
                item = _AddressRange.of(item)
            elif not isinstance(item, RawSelector):
                raise encode_error(owner, self.name, f"item {index + 1} is a {type(item).__name__}")
            out += item.encode_struct()


@dataclass(repr=False)
class TsPayload(Payload):
    """Traffic Selector payload body (§3.13); TSi and TSr share it."""

    selectors: List[Selector] = field(default_factory=list)

    LAYOUT = (
        CountOf("selectors", 1),
        Reserved(3),
        SelectorItems("selectors"),
    )

    def describe(self) -> str:
        return f"{super().describe()}(" + " ".join(str(s) for s in self.selectors) + ")"


@dataclass(repr=False)
class TsiPayload(TsPayload):
    """TSi: the initiator-side selectors."""

    payload_type = PayloadType.TSi


@dataclass(repr=False)
class TsrPayload(TsPayload):
    """TSr: the responder-side selectors."""

    payload_type = PayloadType.TSr
