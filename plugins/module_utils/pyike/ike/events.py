"""What the IKE engine asks of its runtime: datagrams to send and state changes to act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ..wire.selectors import TrafficSelector

Address = Tuple[str, int]  # (ip, port)


@dataclass
class SendDatagram:
    """Send `data` (an IKE message, without non-ESP marker) from `local` to `remote`.

    On port 4500 the runtime prepends the non-ESP marker (RFC 3948 §2.2).
    """

    data: bytes = field(repr=False)
    local: Address
    remote: Address


@dataclass
class SendKeepalive:
    """Send a NAT keepalive (one 0xFF octet, RFC 3948 §2.3) from our NAT-T port to the peer."""

    local: Address
    remote: Address


@dataclass
class VolumeLimits:
    """Byte and packet lifetimes of each ESP SA of a Child SA (RFC 4301 §4.4.2.1), for the dataplane to
    watch: crossing a soft limit calls for a rekey, a hard one for a delete (`Engine.child_volume_reached`).
    0 means no such limit. `soft_seq` is the outbound sequence number at which to rekey before the 32-bit
    counter runs out (RFC 4303 §3.3.3); the outbound SA itself refuses to wrap."""

    soft_bytes: int = 0
    hard_bytes: int = 0
    soft_packets: int = 0
    hard_packets: int = 0
    soft_seq: int = 0

    @property
    def counts(self) -> bool:
        """Whether a byte or packet limit is set (the sequence number limit aside)."""
        return bool(self.soft_bytes or self.hard_bytes or self.soft_packets or self.hard_packets)


@dataclass
class ChildSaUp:
    """A Child SA is established: install its ESP SAs and policies (tunnel mode)."""

    conn: str
    child: str
    ike_sa: str  # IKE SA key, e.g. "conn#3"
    spi_in: int
    spi_out: int
    encr_id: int
    key_length: Optional[int]
    integ_id: Optional[int]
    esn: bool
    encr_key_in: bytes = field(repr=False)
    integ_key_in: bytes = field(repr=False)
    encr_key_out: bytes = field(repr=False)
    integ_key_out: bytes = field(repr=False)
    local_ts: List[TrafficSelector] = field(default_factory=list)
    remote_ts: List[TrafficSelector] = field(default_factory=list)
    local: Address = ("", 0)
    remote: Address = ("", 0)
    encap: bool = False
    proposal: str = ""
    rekey_of: Optional[int] = None  # inbound SPI of the Child SA this one replaces (RFC 7296 §2.8)
    outbound: bool = True  # send through it now; otherwise wait for ChildSaOutbound (make-before-break)
    limits: Optional[VolumeLimits] = None
    life_time: float = 0.0  # seconds until the engine deletes the SA at the latest (0: no time limit)


@dataclass
class ChildSaOutbound:
    """Start sending through the Child SA with this inbound SPI (the rekeyed SA it replaces is going)."""

    conn: str
    child: str
    spi_in: int


@dataclass
class ChildSaDown:
    conn: str
    child: str
    spi_in: int
    spi_out: int
    reason: str
    replaced: bool = False  # a rekey replaced it: remove only this SA, the policy stays


@dataclass
class IkeSaUp:
    conn: str
    ike_sa: str
    local: Address
    remote: Address


@dataclass
class IkeSaDown:
    conn: str
    ike_sa: str
    reason: str


@dataclass
class Failure:
    """A negotiation failed; `what` names the exchange or step, `reason` the notify or check."""

    conn: str
    what: str
    reason: str


@dataclass
class ResolvePeer:
    """Connection `conn` (peer given as the DNS name `host`) is to initiate a new IKE SA for `child`: resolve
    the name, then call `Engine.initiate(conn, child, now, remote_ip=...)`, or `Engine.resolve_failed`."""

    conn: str
    child: Optional[str]
    host: str


@dataclass
class InstallTrap:
    """Install a trap for `conn`/`child` (close_action or dpd_action trap): routes and a policy without an
    SA, so that the next matching packet initiates the child again (RFC 4301 §4.4.1, §5.1)."""

    conn: str
    child: str
    origin: str  # close_action or dpd_action
    reason: str


@dataclass
class PeerUnmatched:
    """An IKE_SA_INIT from `remote` to `local` matched no connection while some connection names its peer
    by a DNS name: the runtime may resolve those names again (the peer's address may have changed)."""

    local: Address
    remote: Address
