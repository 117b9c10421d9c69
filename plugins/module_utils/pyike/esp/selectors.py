"""Traffic selectors and the selector sets of one Child SA (RFC 4301 §4.4.1, RFC 7296 §3.13.1).

A :class:`TrafficSelector` is one IKEv2 TS: an address range of one family, an IP protocol (0
for any) and a port range. Port range 0-65535 matches every packet, also those without ports
(ICMP, non-initial fragments); the OPAQUE range (start 65535, end 0) matches only packets
without ports; any other range matches only packets whose ports fall in it.

A :class:`SelectorSet` holds the local and remote selectors of a Child SA. The SA covers every
combination of one local and one remote selector (RFC 7296 §2.9): outbound, the source must be
in a local and the destination in a remote selector; inbound the other way round.
"""

from __future__ import annotations

import ipaddress
from typing import Dict, Iterable, Optional, Tuple, Union

from .inner import NO_PORT, FlowKey, address_key, flow_key

# text, packed 4/16 octets (as in an IKEv2 TS payload) or an ipaddress object
Address = Union[str, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address]

ANY_PORT = (0, 65535)
OPAQUE_PORT = (65535, 0)
DEFAULT_CACHE_SIZE = 1024


class TrafficSelector:
    """An address range of one IP version, an IP protocol (0 = any) and a port range."""

    __slots__ = ("end", "end_port", "protocol", "start", "start_port", "version")

    def __init__(
        self,
        start: Address,
        end: Optional[Address] = None,
        protocol: int = 0,
        start_port: int = 0,
        end_port: int = 65535,
    ):
        first = ipaddress.ip_address(start)
        last = first if end is None else ipaddress.ip_address(end)
        if first.version != last.version:
            raise ValueError(f"traffic selector {first}-{last}: start and end are of different IP versions")
        if int(first) > int(last):
            raise ValueError(f"traffic selector {first}-{last}: start address is above end address")
        if not 0 <= protocol <= 255:
            raise ValueError(f"traffic selector {first}-{last}: IP protocol {protocol} is not 0-255")
        ports = (start_port, end_port)
        if not (0 <= start_port <= 65535 and 0 <= end_port <= 65535) or (
            start_port > end_port and ports != OPAQUE_PORT
        ):
            raise ValueError(f"traffic selector {first}-{last}: bad port range {start_port}-{end_port}")
        self.version = first.version
        self.start = int(first)
        self.end = int(last)
        self.protocol = protocol
        self.start_port = start_port
        self.end_port = end_port

    @classmethod
    def from_network(
        cls, network: str, protocol: int = 0, start_port: int = 0, end_port: int = 65535
    ) -> TrafficSelector:
        """A selector covering a CIDR prefix such as ``10.1.0.0/16`` or ``2001:db8::/64``."""
        net = ipaddress.ip_network(network, strict=False)
        return cls(net.network_address, net.broadcast_address, protocol, start_port, end_port)

    @property
    def address_span(self) -> int:
        return self.end - self.start + 1

    @property
    def port_span(self) -> int:
        return max(self.end_port - self.start_port + 1, 0)

    @property
    def any_port(self) -> bool:
        return self.start_port == 0 and self.end_port == 65535

    def covers(self, version: int, address: int, protocol: int, port: int) -> bool:
        """Whether one side of a packet (address, port) with this IP protocol lies in the selector."""
        if version != self.version or not self.start <= address <= self.end:
            return False
        if self.protocol and self.protocol != protocol:
            return False
        if port == NO_PORT:
            return self.any_port or self.start_port > self.end_port
        return self.start_port <= port <= self.end_port

    def _key(self) -> Tuple[int, int, int, int, int, int]:
        return (self.version, self.start, self.end, self.protocol, self.start_port, self.end_port)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrafficSelector) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        factory = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        return (
            f"TrafficSelector({str(factory(self.start))!r}, {str(factory(self.end))!r}, "
            f"protocol={self.protocol}, start_port={self.start_port}, end_port={self.end_port})"
        )


def _side_matches(selectors: Tuple[TrafficSelector, ...], version, address, protocol, port) -> bool:
    return any(ts.covers(version, address, protocol, port) for ts in selectors)


def key_matches(
    key: FlowKey, source_side: Tuple[TrafficSelector, ...], destination_side: Tuple[TrafficSelector, ...]
) -> bool:
    """Whether a packet's source lies in ``source_side`` and its destination in ``destination_side``."""
    version, src, dst, protocol, sport, dport = key
    return _side_matches(source_side, version, int.from_bytes(src, "big"), protocol, sport) and _side_matches(
        destination_side, version, int.from_bytes(dst, "big"), protocol, dport
    )


class SelectorSet:
    """The local and remote traffic selectors of one Child SA."""

    __slots__ = ("_addresses_only", "_cache", "_cache_size", "local", "remote")

    def __init__(
        self,
        local: Iterable[TrafficSelector],
        remote: Iterable[TrafficSelector],
        cache_size: int = DEFAULT_CACHE_SIZE,
    ):
        self.local = tuple(local)
        self.remote = tuple(remote)
        if not self.local or not self.remote:
            raise ValueError("a Child SA needs at least one local and one remote traffic selector")
        # subnet-to-subnet selectors (any protocol, any port): the addresses alone decide
        self._addresses_only = all(ts.protocol == 0 and ts.any_port for ts in self.local + self.remote)
        self._cache: Dict[object, bool] = {}
        self._cache_size = cache_size

    def __repr__(self) -> str:
        return f"SelectorSet(local={list(self.local)!r}, remote={list(self.remote)!r})"

    def allows_outbound(self, key: FlowKey) -> bool:
        """Source in a local selector and destination in a remote one."""
        return key_matches(key, self.local, self.remote)

    def allows_inbound(self, packet: bytes) -> bool:
        """RFC 4301 §5.2 step 4: a decrypted packet must match the SA's selectors (reversed).

        Verdicts are cached per flow; a packet whose header cannot be parsed is refused and
        never cached.
        """
        cache = self._cache
        if self._addresses_only:
            cache_key: object = address_key(packet)
            verdict = cache.get(cache_key)
            if verdict is not None:
                return verdict
            key = flow_key(packet)
        else:
            key = cache_key = flow_key(packet)
            if key is None:
                return False
            verdict = cache.get(key)
            if verdict is not None:
                return verdict
        if key is None:
            return False
        verdict = key_matches(key, self.remote, self.local)
        if len(cache) >= self._cache_size:
            cache.clear()
        cache[cache_key] = verdict
        return verdict
