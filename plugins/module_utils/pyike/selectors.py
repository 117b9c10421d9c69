"""Traffic selectors: the one value type every layer uses, its text form, and narrowing (RFC 7296 §2.9).

A :class:`TrafficSelector` is one IKEv2 selector of type TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE
(RFC 7296 §3.13.1): an address range of one IP version (addresses as integers), an IP protocol
(0 = any) and a port range.  Ports 0-65535 match every packet, also those without ports; the
OPAQUE range (start 65535, end 0, RFC 4301 §4.4.1) matches only packets whose ports are not
available; any other range matches packets whose port is in it.

The wire codec (wire/selectors.py) encodes and decodes it, the configuration and the inventory
parse it from strongSwan's syntax, the IKE engine narrows with :func:`narrow` and checks answers
with :func:`is_subset`, and the ESP dataplane matches packets with :meth:`TrafficSelector.covers`.
Selectors of other TS types (e.g. TS_SECLABEL, RFC 9478) exist only on the wire
(``wire.selectors.RawSelector``); narrowing and the subset check ignore them (RFC 7296 §3.13.1).

:meth:`TrafficSelector.intersect` is the narrowing of two selectors: the selector that covers
exactly the packets both cover, or None.  The rules for protocol and OPAQUE ports follow
strongSwan's ``traffic_selector_t.get_subset``.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from .ids import TsType

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
# text, an ipaddress object, or the packed 4/16 octets of a TS payload
AddressLike = Union[str, bytes, IPAddress]

ANY_PORTS = (0, 65535)
OPAQUE_PORTS = (65535, 0)
NO_PORT = -1  # the "port" of a packet that has none (esp.inner.NO_PORT)

# /etc/protocols names (a fixed table, so a configuration means the same on every host).
PROTOCOLS = {
    "icmp": 1,
    "igmp": 2,
    "ipencap": 4,
    "tcp": 6,
    "udp": 17,
    "ipv6": 41,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "ospf": 89,
    "pim": 103,
    "vrrp": 112,
    "l2tp": 115,
    "sctp": 132,
    "udplite": 136,
}
_PROTOCOL_NAMES = {
    1: "icmp",
    2: "igmp",
    4: "ipencap",
    6: "tcp",
    17: "udp",
    41: "ipv6",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "ipv6-icmp",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    115: "l2tp",
    132: "sctp",
    136: "udplite",
}

# /etc/services names for the ports people put in selectors.
SERVICES = {
    "ftp-data": 20,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "dns": 53,
    "bootps": 67,
    "bootpc": 68,
    "tftp": 69,
    "http": 80,
    "www": 80,
    "kerberos": 88,
    "pop3": 110,
    "ntp": 123,
    "imap": 143,
    "imap2": 143,
    "snmp": 161,
    "snmp-trap": 162,
    "bgp": 179,
    "ldap": 389,
    "https": 443,
    "isakmp": 500,
    "syslog": 514,
    "submission": 587,
    "ldaps": 636,
    "imaps": 993,
    "pop3s": 995,
    "openvpn": 1194,
    "l2f": 1701,
    "radius": 1812,
    "radius-acct": 1813,
    "mysql": 3306,
    "ipsec-nat-t": 4500,
    "sip": 5060,
    "postgresql": 5432,
}


class SelectorError(ValueError):
    """A traffic selector that cannot be built or parsed; the message says what is wrong."""


def _max_address(version: int) -> int:
    return (1 << 32) - 1 if version == 4 else (1 << 128) - 1


def _ip_address(value: AddressLike, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise SelectorError("%s %r is not an IPv4 or IPv6 address" % (what, value)) from None


class TrafficSelector:
    """One traffic selector: ``version`` 4 or 6, ``start``/``end`` addresses as ints, protocol, ports.

    Immutable and hashable; construction checks every field and raises :class:`SelectorError`.
    """

    __slots__ = ("end", "end_port", "protocol", "start", "start_port", "version")

    version: int
    start: int
    end: int
    protocol: int
    start_port: int
    end_port: int

    def __init__(
        self,
        version: int,
        start: int,
        end: int,
        protocol: int = 0,
        start_port: int = 0,
        end_port: int = 65535,
    ):
        for name, value in (
            ("version", version),
            ("start", start),
            ("end", end),
            ("protocol", protocol),
            ("start_port", start_port),
            ("end_port", end_port),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise SelectorError("%s must be an integer, not %s" % (name, type(value).__name__))
        if version not in (4, 6):
            raise SelectorError("IP version must be 4 or 6, not %r" % (version,))
        if not 0 <= start <= end <= _max_address(version):
            raise SelectorError("address range %s-%s is empty or out of range" % (start, end))
        if not 0 <= protocol <= 255:
            raise SelectorError("IP protocol %d is out of range (0-255)" % protocol)
        if not (0 <= start_port <= 65535 and 0 <= end_port <= 65535):
            raise SelectorError("ports %d-%d are out of range (0-65535)" % (start_port, end_port))
        if start_port > end_port and (start_port, end_port) != OPAQUE_PORTS:
            raise SelectorError("port range %d-%d ends before it starts" % (start_port, end_port))
        init = object.__setattr__
        init(self, "version", version)
        init(self, "start", start)
        init(self, "end", end)
        init(self, "protocol", protocol)
        init(self, "start_port", start_port)
        init(self, "end_port", end_port)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("TrafficSelector is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("TrafficSelector is immutable")

    def __reduce__(self) -> Tuple[type, Tuple[int, ...]]:
        return type(self), self._key()

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_range(
        cls,
        first: AddressLike,
        last: Optional[AddressLike] = None,
        protocol: int = 0,
        start_port: int = 0,
        end_port: int = 65535,
    ) -> TrafficSelector:
        """A selector from first to last address (inclusive); ``last`` defaults to ``first``."""
        start = _ip_address(first, "range start")
        end = start if last is None else _ip_address(last, "range end")
        if start.version != end.version:
            raise SelectorError("range %s-%s mixes IPv4 and IPv6" % (start, end))
        if int(start) > int(end):
            raise SelectorError("address range %s-%s ends before it starts" % (start, end))
        return cls(start.version, int(start), int(end), protocol, start_port, end_port)

    @classmethod
    def from_network(
        cls, network: Union[str, IPNetwork], protocol: int = 0, start_port: int = 0, end_port: int = 65535
    ) -> TrafficSelector:
        """A selector covering a CIDR prefix; host bits are ignored as strongSwan does."""
        try:
            net = ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SelectorError("%r is not an IPv4 or IPv6 network" % (network,)) from None
        return cls(
            net.version, int(net.network_address), int(net.broadcast_address), protocol, start_port, end_port
        )

    @classmethod
    def parse(cls, text: str) -> TrafficSelector:
        """Parse strongSwan's selector syntax: ``10.1.0.0/24``, ``10.1.0.1-10.1.0.9``,
        ``2001:db8::1``, each optionally followed by ``[proto]`` or ``[proto/ports]``.
        Raises :class:`SelectorError` naming what is wrong.
        """
        if not isinstance(text, str):
            raise SelectorError("a traffic selector must be a string, not %s" % type(text).__name__)
        body = text.strip()
        protocol, ports = 0, ANY_PORTS
        if "[" in body:
            body, protoport = body.split("[", 1)
            if not protoport.endswith("]") or "]" in protoport[:-1]:
                raise SelectorError("protocol/port part %r must be closed by a final ']'" % ("[" + protoport))
            protoport = protoport[:-1]
            proto_text, _slash, port_text = protoport.partition("/")
            protocol = _parse_protocol(proto_text)
            ports = _parse_ports(port_text)
            body = body.strip()
        if not body:
            raise SelectorError("no address, subnet or range before the protocol/port part")
        if body.lower() == "dynamic":
            raise SelectorError("'dynamic' selectors are not supported: give the subnet or address")
        if "/" in body:
            address_text, _slash, prefix_text = body.partition("/")
            address = _address(address_text, "subnet address")
            bits = 32 if address.version == 4 else 128
            prefix_text = prefix_text.strip()
            if not prefix_text.isdigit() or not prefix_text.isascii():
                raise SelectorError("prefix length %r is not a number" % prefix_text)
            prefix = int(prefix_text)
            if prefix > bits:
                raise SelectorError(
                    "prefix length /%d is out of range for IPv%d (0-%d)" % (prefix, address.version, bits)
                )
            network = ipaddress.ip_network((address, prefix), strict=False)
            return cls.from_network(network, protocol, *ports)
        if "-" in body:
            first_text, _dash, last_text = body.partition("-")
            first = _address(first_text, "range start")
            last = _address(last_text, "range end")
            if first.version != last.version:
                raise SelectorError("range %s-%s mixes IPv4 and IPv6" % (first, last))
            if int(first) > int(last):
                raise SelectorError("range %s-%s ends before it starts" % (first, last))
            return cls(first.version, int(first), int(last), protocol, *ports)
        address = _address(body, "address")
        return cls(address.version, int(address), int(address), protocol, *ports)

    # -- views --------------------------------------------------------------------------

    @property
    def start_address(self) -> IPAddress:
        return ipaddress.IPv4Address(self.start) if self.version == 4 else ipaddress.IPv6Address(self.start)

    @property
    def end_address(self) -> IPAddress:
        return ipaddress.IPv4Address(self.end) if self.version == 4 else ipaddress.IPv6Address(self.end)

    @property
    def ts_type(self) -> TsType:
        return TsType.TS_IPV4_ADDR_RANGE if self.version == 4 else TsType.TS_IPV6_ADDR_RANGE

    @property
    def is_opaque(self) -> bool:
        return self.start_port == 65535 and self.end_port == 0

    @property
    def any_port(self) -> bool:
        return self.start_port == 0 and self.end_port == 65535

    def networks(self) -> List[IPNetwork]:
        """The CIDR prefixes that exactly cover the address range (for routes)."""
        return list(ipaddress.summarize_address_range(self.start_address, self.end_address))

    # -- packets ------------------------------------------------------------------------

    def covers(self, version: int, address: int, protocol: int, port: int) -> bool:
        """Whether one side of a packet (integer address, port) with this IP protocol lies in the
        selector; ``port`` is negative (:data:`NO_PORT`) when the packet has no ports available
        (ICMP, other protocols, non-initial fragments). The ESP dataplane's per-packet check."""
        if version != self.version or not self.start <= address <= self.end:
            return False
        if self.protocol and self.protocol != protocol:
            return False
        if port < 0:
            return self.start_port > self.end_port or (self.start_port == 0 and self.end_port == 65535)
        return self.start_port <= port <= self.end_port

    def matches(
        self, address: Union[str, int, IPAddress], protocol: int = 0, port: Optional[int] = None
    ) -> bool:
        """Whether a packet endpoint lies in the selector; ``port`` None means the packet has no ports
        available. An integer address is taken in this selector's IP version."""
        if isinstance(address, int) and not isinstance(address, bool):
            version, value = self.version, address
        else:
            parsed = ipaddress.ip_address(address)
            version, value = parsed.version, int(parsed)
        return self.covers(version, value, protocol, NO_PORT if port is None else port)

    # -- set operations (RFC 7296 §2.9) -------------------------------------------------

    def contains(self, other: TrafficSelector) -> bool:
        """Whether every packet ``other`` covers is covered by this selector."""
        if other.version != self.version or not (self.start <= other.start and other.end <= self.end):
            return False
        if self.protocol and self.protocol != other.protocol:
            return False
        if self.any_port:
            return True
        if self.is_opaque or other.is_opaque:
            return self.is_opaque and other.is_opaque
        return self.start_port <= other.start_port and other.end_port <= self.end_port

    def intersect(self, other: TrafficSelector) -> Optional[TrafficSelector]:
        """The selector covering exactly what both cover, or None when they share nothing."""
        if other.version != self.version:
            return None
        start, end = max(self.start, other.start), min(self.end, other.end)
        if start > end:
            return None
        if self.protocol and other.protocol and self.protocol != other.protocol:
            return None
        protocol = max(self.protocol, other.protocol)
        if (self.is_opaque or self.any_port) and (other.is_opaque or other.any_port):
            ports = OPAQUE_PORTS if (self.is_opaque or other.is_opaque) else ANY_PORTS
        else:  # a real port range never meets OPAQUE: max/min leave an empty range then
            ports = (max(self.start_port, other.start_port), min(self.end_port, other.end_port))
            if ports[0] > ports[1]:
                return None
        return TrafficSelector(self.version, start, end, protocol, ports[0], ports[1])

    # -- identity and text --------------------------------------------------------------

    def _key(self) -> Tuple[int, int, int, int, int, int]:
        return (self.version, self.start, self.end, self.protocol, self.start_port, self.end_port)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrafficSelector):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        """strongSwan's syntax, which :meth:`parse` reads back."""
        networks = self.networks()
        if len(networks) == 1:
            text = str(networks[0])
        else:
            text = "%s-%s" % (self.start_address, self.end_address)
        if self.protocol == 0 and self.any_port:
            return text
        proto = _PROTOCOL_NAMES.get(self.protocol, str(self.protocol)) if self.protocol else ""
        if self.any_port:
            return "%s[%s]" % (text, proto)
        if self.is_opaque:
            ports = "opaque"
        elif self.start_port == self.end_port:
            ports = str(self.start_port)
        else:
            ports = "%d-%d" % (self.start_port, self.end_port)
        return "%s[%s/%s]" % (text, proto, ports)

    def __repr__(self) -> str:
        return "TrafficSelector(%r)" % str(self)


def parse_traffic_selector(text: str) -> TrafficSelector:
    """Same as :meth:`TrafficSelector.parse`."""
    return TrafficSelector.parse(text)


# -- strongSwan syntax helpers ------------------------------------------------------------------


def _address(text: str, what: str) -> IPAddress:
    text = text.strip()
    if "%" in text:
        raise SelectorError("%s %r: scoped IPv6 addresses are not allowed in selectors" % (what, text))
    return _ip_address(text, what)


def _number(text: str, what: str, maximum: int) -> int:
    if not text.isdigit() or not text.isascii():
        raise SelectorError("%s %r is not a number" % (what, text))
    value = int(text)
    if value > maximum:
        raise SelectorError("%s %d is out of range (0-%d)" % (what, value, maximum))
    return value


def _parse_protocol(text: str) -> int:
    text = text.strip().lower()
    if text in ("", "any", "%any"):
        return 0
    if text in PROTOCOLS:
        return PROTOCOLS[text]
    if text.isdigit():
        return _number(text, "IP protocol", 255)
    raise SelectorError(
        "unknown IP protocol %r: use a number 0-255 or one of %s" % (text, ", ".join(sorted(PROTOCOLS)))
    )


def _parse_port(text: str) -> int:
    name = text.strip().lower()
    if name in SERVICES:
        return SERVICES[name]
    if name.isdigit():
        return _number(name, "port", 65535)
    raise SelectorError("port %r is neither a number 0-65535 nor a known service name" % text.strip())


def _parse_ports(text: str) -> Tuple[int, int]:
    text = text.strip().lower()
    if text in ("", "any", "%any"):
        return ANY_PORTS
    if text == "opaque":
        return OPAQUE_PORTS
    if text in SERVICES:
        return SERVICES[text], SERVICES[text]
    if "-" in text:
        first, last = text.split("-", 1)
        start, end = _parse_port(first), _parse_port(last)
        if start > end:
            raise SelectorError("port range %d-%d ends before it starts" % (start, end))
        return start, end
    port = _parse_port(text)
    return port, port


# -- lists of selectors (RFC 7296 §2.9) ---------------------------------------------------------


def narrow(proposed: Iterable[Any], allowed: Iterable[Any]) -> List[TrafficSelector]:
    """Every non-empty intersection of a proposed selector with an allowed one, in the order of
    ``proposed`` then ``allowed``, without duplicates: the narrowed list a responder answers with
    (RFC 7296 §2.9; empty means TS_UNACCEPTABLE), and the overlap of two configured lists.

    Items that are not address-range selectors (other TS types, RFC 7296 §3.13.1) are ignored.
    """
    mine = address_ranges(allowed)
    result: List[TrafficSelector] = []
    for offer in address_ranges(proposed):
        for ours in mine:
            common = offer.intersect(ours)
            if common is not None and common not in result:
                result.append(common)
    return result


def is_subset(narrowed: Iterable[Any], proposed: Iterable[Any]) -> bool:
    """Whether a responder's answer holds at least one address-range selector and each lies inside
    one we proposed (RFC 7296 §2.9: the responder may only narrow). Other TS types are ignored."""
    offers, answered = address_ranges(proposed), address_ranges(narrowed)
    return bool(answered) and all(any(offer.contains(ts) for offer in offers) for ts in answered)


def address_ranges(selectors: Iterable[Any]) -> List[TrafficSelector]:
    """The address-range selectors of a list that may hold selectors of other TS types."""
    return [ts for ts in selectors if isinstance(ts, TrafficSelector)]


def describe(selectors: Sequence[Any]) -> List[str]:
    """Each selector as text: strongSwan's syntax for address ranges, ``TS_TYPE_<n>(...)`` for others."""
    return [str(ts) for ts in selectors]
