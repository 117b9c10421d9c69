"""What the dataplane (dataplane.py) keeps per Child SA, and the counters of its packet pump.

A :class:`Child` is one Child SA as the dataplane sees it: its SPD policy, its outbound SA and inbound
SAs (several during a make-before-break rekey), its peer, socket and routes, and the totals of the SAs
it retired, so that its counters never go backwards.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from ..esp import InboundSA, OutboundSA, Policy, TrafficSelector
from ..esp.counters import InboundDrops, OutboundDrops, Traffic
from .udp import RawEspEndpoint, UdpEndpoint

Address = Tuple[str, int]
Endpoint = Union[UdpEndpoint, RawEspEndpoint]
Selectors = Iterable[Union[str, TrafficSelector]]


class DataplaneError(ValueError):
    """An API call the dataplane refuses (unknown child, duplicate SPI, no socket for a peer)."""


class DataplaneDrops:
    """Packets dropped by the pump itself (SA, SAD and SPD drops are counted where they happen)."""

    __slots__ = (
        "ike_unhandled",  # IKE message received but no IKE handler set
        "invalid_datagram",  # on a NAT-T port: neither ESP, IKE nor keepalive (too short)
        "no_tx_path",  # an outbound SA not installed through this dataplane
        "tun_write",  # the kernel refused a decrypted packet
        "tx_error",  # sendmsg failed (buffer full, no route to the peer)
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> Dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class IoCounters:
    __slots__ = (
        "early_in",  # ESP packets that came before their inbound SA, decrypted once it was installed
        "ike_in",
        "keepalives_in",
        "rx_wakeups",
        "tun_rx",
        "tun_tx",
        "tun_wakeups",
        "udp_rx",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> Dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def _selectors(items: Selectors) -> Tuple[TrafficSelector, ...]:
    out = []
    for item in items:
        if isinstance(item, TrafficSelector):
            out.append(item)
        else:
            out.append(TrafficSelector.from_network(str(item)))
    if not out:
        raise DataplaneError("a Child SA needs at least one local and one remote traffic selector")
    return tuple(out)


def _sources(addresses: Union[str, Iterable[str], None]) -> Dict[int, str]:
    """Preferred route sources by IP version (the first address of each version wins)."""
    if addresses is None:
        return {}
    if isinstance(addresses, str):
        addresses = [addresses]
    sources: Dict[int, str] = {}
    for address in addresses:
        sources.setdefault(ipaddress.ip_address(address).version, str(address))
    return sources


def _add_counts(total: Dict[str, int], counters) -> None:
    for name, value in counters.as_dict().items():
        total[name] = total.get(name, 0) + value


class Child:
    """One Child SA as the dataplane sees it: its policy, SAs, peer and socket."""

    __slots__ = (
        "child_id",
        "encap",
        "endpoint",
        "inbound",
        "local_ts",
        "outbound",
        "peer",
        "policy",
        "remote_ts",
        "retired_drops",
        "retired_in",
        "retired_out",
        "route_tun",
        "routes",
        "source",
        "tx_errors",
    )

    def __init__(
        self,
        child_id: str,
        policy: Policy,
        endpoint: Endpoint,
        peer: Address,
        encap: bool,
        source: Optional[str] = None,
    ):
        self.child_id = child_id
        self.policy = policy
        self.local_ts = policy.local
        self.remote_ts = policy.remote
        self.outbound: Optional[OutboundSA] = policy.sa
        self.inbound: Dict[int, InboundSA] = {}
        self.endpoint = endpoint
        self.peer = peer
        self.source = source  # our address for this child's packets, when the socket is a wildcard one
        self.encap = encap
        self.routes: List[Tuple[str, Optional[str]]] = []
        self.route_tun: Any = None  # route_tuns.RouteTun of a route-based connection; None: the main TUN
        self.tx_errors = 0
        # counts of SAs that were replaced or removed, so a child's totals never go backwards
        self.retired_in = Traffic()
        self.retired_out = Traffic()
        self.retired_drops: Dict[str, int] = {}

    def retire_outbound(self, sa: OutboundSA) -> None:
        self.retired_out.bytes += sa.traffic.bytes
        self.retired_out.packets += sa.traffic.packets
        _add_counts(self.retired_drops, sa.drops)

    def retire_inbound(self, sa: InboundSA) -> None:
        self.retired_in.bytes += sa.traffic.bytes
        self.retired_in.packets += sa.traffic.packets
        _add_counts(self.retired_drops, sa.drops)

    def stats(self) -> Dict[str, Any]:
        out_bytes, out_packets = self.retired_out.bytes, self.retired_out.packets
        in_bytes, in_packets = self.retired_in.bytes, self.retired_in.packets
        drops = dict.fromkeys(OutboundDrops.__slots__ + InboundDrops.__slots__, 0)
        for name, value in self.retired_drops.items():
            drops[name] += value
        drops["tx_error"] = self.tx_errors
        sas_out = []
        if self.outbound is not None:
            sa = self.outbound
            out_bytes += sa.traffic.bytes
            out_packets += sa.traffic.packets
            _add_counts(drops, sa.drops)
            sas_out.append(
                {"spi": sa.spi, "bytes": sa.traffic.bytes, "packets": sa.traffic.packets, "seq": sa.seq}
            )
        sas_in = []
        for sa in self.inbound.values():
            in_bytes += sa.traffic.bytes
            in_packets += sa.traffic.packets
            _add_counts(drops, sa.drops)
            sas_in.append(
                {
                    "spi": sa.spi,
                    "bytes": sa.traffic.bytes,
                    "packets": sa.traffic.packets,
                    "drops": sa.drops.as_dict(),
                }
            )
        return {
            "peer": "%s:%d" % self.peer if self.encap else self.peer[0],
            "encap": self.encap,
            "local_ts": [repr(ts) for ts in self.local_ts],
            "remote_ts": [repr(ts) for ts in self.remote_ts],
            "spi_out": self.outbound.spi if self.outbound is not None else None,
            "spi_in": sorted(self.inbound),
            "bytes_out": out_bytes,
            "packets_out": out_packets,
            "bytes_in": in_bytes,
            "packets_in": in_packets,
            "drops": drops,
            "sas_out": sas_out,
            "sas_in": sas_in,
            "interface": self.route_tun.name if self.route_tun is not None else None,
        }


def ike_socket_for(endpoints: Iterable[Endpoint], local: Address, peer: Address) -> UdpEndpoint:
    """The UDP socket to send IKE from our (address, port) to the peer; a wildcard socket serves any
    address of its family (the message still leaves from ``local``'s address)."""
    family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
    for endpoint in endpoints:
        if (
            isinstance(endpoint, UdpEndpoint)
            and endpoint.local[1] == local[1]
            and family in endpoint.families
        ):
            if endpoint.local[0] == local[0] or endpoint.wildcard:
                return endpoint
    raise DataplaneError("no UDP socket on %s:%d to send IKE from" % local)
