"""UDP and raw ESP sockets of the dataplane: IKE on 500, IKE and ESP-in-UDP on 4500, raw ESP.

Port 4500 carries three kinds of datagram (RFC 3948 §2): an IKE message behind a four-octet
zero *non-ESP marker*, a one-octet 0xFF NAT keepalive, and otherwise an ESP packet starting
with its (non-zero) SPI. :data:`KIND_IKE`, :data:`KIND_KEEPALIVE` and :data:`KIND_ESP` name
them; :func:`classify` tells them apart. Port 500 carries IKE only, without marker.

Receiving uses UDP GRO where the kernel has it: one ``recvmsg_into`` returns a run of datagrams
of one flow glued together, and a ``UDP_GRO`` control message gives their common size (the last
may be shorter). Sending ESP uses UDP GSO: a run of equal-size packets to one peer goes out in
one ``sendmsg`` with a ``UDP_SEGMENT`` control message, its parts passed as an iovec (no copy).
Both fall back to one datagram per system call when the socket option is refused.

A raw IP socket for protocol 50 carries ESP without UDP (RFC 4303) when no NAT is in the way.

Wildcard addresses: a socket bound to 0.0.0.0 or '::' learns the local address of every datagram
from an IP_PKTINFO / IPV6_PKTINFO control message (the engine matches it against the configured
local address) and sends with one, so replies leave from the address the peer sent to rather
than from whatever source the routing table prefers. '::' without any IPv4 listen address is
dual-stack, as Linux daemons usually are: IPv4 peers arrive as v4-mapped ``::ffff:a.b.c.d``,
which this module turns back into plain IPv4 addresses both ways. Raw sockets are never
dual-stack, so raw ESP needs one socket per family (:func:`raw_esp_addresses`).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import Callable, Dict, List, Optional, Sequence, Tuple

IKE_PORT = 500
NAT_T_PORT = 4500
NON_ESP_MARKER = b"\0\0\0\0"
KEEPALIVE = b"\xff"

KIND_ESP = 0
KIND_IKE = 1
KIND_KEEPALIVE = 2
KIND_INVALID = 3

# linux/udp.h
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
UDP_MAX_SEGMENTS = 64  # 128 on kernels >= 6.9; 64 works everywhere
GSO_MAX_BYTES = 65000  # all segments of one send together (IP total length <= 65535)
IPPROTO_ESP = 50
# linux/in.h; the socket module has it from Python 3.12 only
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)

RECV_BUFFER = 65535 + 1
SOCKET_BUFFER = 4 * 1024 * 1024

_GSO_CMSG_CACHE = {}
_INT = struct.Struct("i")
_U16_NATIVE = struct.Struct("H")
_IN_PKTINFO = struct.Struct("=i4s4s")  # struct in_pktinfo {int ifindex; in_addr spec_dst; in_addr addr;}
_IN6_PKTINFO = struct.Struct("=16si")  # struct in6_pktinfo {in6_addr addr; int ifindex;}
_V4_MAPPED = "::ffff:"

Address = Tuple[str, int]
IkeHandler = Callable[[bytes, Address, Address], None]


def classify(datagram: bytes, nat_t: bool = True) -> int:
    """What a datagram received on a NAT-T (4500) or plain IKE (500) port is (RFC 3948 §2.2)."""
    if not nat_t:
        return KIND_IKE
    length = len(datagram)
    if length == 1 and datagram[0] == 0xFF:
        return KIND_KEEPALIVE
    if length >= 4 and datagram[:4] == NON_ESP_MARKER:
        return KIND_IKE
    if length >= 8:
        return KIND_ESP
    return KIND_INVALID


def _gso_cmsg(size: int) -> list:
    cmsg = _GSO_CMSG_CACHE.get(size)
    if cmsg is None:
        if len(_GSO_CMSG_CACHE) > 256:
            _GSO_CMSG_CACHE.clear()
        cmsg = _GSO_CMSG_CACHE[size] = [(SOL_UDP, UDP_SEGMENT, _U16_NATIVE.pack(size))]
    return cmsg


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def unmapped(address: str) -> str:
    """``::ffff:192.0.2.1`` (an IPv4 peer on a dual-stack socket) as ``192.0.2.1``; others unchanged."""
    if address.startswith(_V4_MAPPED) and "." in address:
        return address[len(_V4_MAPPED) :]
    return address


def dual_stack_wanted(addresses: Sequence[str]) -> bool:
    """'::' serves IPv4 as well unless an IPv4 address is listed too (its sockets would collide)."""
    versions = [ipaddress.ip_address(a) for a in addresses]
    return any(a.version == 6 and a.is_unspecified for a in versions) and not any(
        a.version == 4 for a in versions
    )


def raw_esp_addresses(addresses: Sequence[str]) -> List[str]:
    """The addresses to open raw ESP sockets on: raw sockets are never dual-stack, so a dual-stack
    '::' needs 0.0.0.0 beside it."""
    out = [str(a) for a in addresses]
    if dual_stack_wanted(out):
        out.append("0.0.0.0")  # noqa: S104 - the IPv4 half of a dual-stack '::'
    return out


def pktinfo_cmsg(family: int, source: str) -> Tuple[int, int, bytes]:
    """A control message that makes a datagram leave from `source` (on a socket of `family`)."""
    if family == socket.AF_INET:
        return (socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, socket.inet_aton(source), bytes(4)))
    if ":" not in source:
        source = _V4_MAPPED + source  # an IPv4 peer on a dual-stack socket
    return (
        socket.IPPROTO_IPV6,
        socket.IPV6_PKTINFO,
        _IN6_PKTINFO.pack(socket.inet_pton(socket.AF_INET6, source), 0),
    )


class _Addressing:
    """Source and destination addresses of one socket's sends, cached per address (hot path)."""

    __slots__ = ("_dual", "_family", "_peers", "_sources", "_wildcard")

    def __init__(self, family: int, wildcard: bool, dual_stack: bool):
        self._family = family
        self._wildcard = wildcard
        self._dual = dual_stack
        self._sources: Dict[str, list] = {}
        self._peers: Dict[Address, Address] = {}

    def source(self, local: Optional[str]) -> list:
        """The control messages that pick `local` as source address (none on a bound socket)."""
        if not self._wildcard or not local:
            return []
        cmsg = self._sources.get(local)
        if cmsg is None:
            if len(self._sources) > 256:
                self._sources.clear()
            cmsg = self._sources[local] = [pktinfo_cmsg(self._family, local)]
        return cmsg

    def peer(self, peer: Address) -> Address:
        """`peer` as this socket's family writes it (v4-mapped on a dual-stack socket)."""
        if not self._dual or ":" in peer[0]:
            return peer
        mapped = self._peers.get(peer)
        if mapped is None:
            if len(self._peers) > 1024:
                self._peers.clear()
            mapped = self._peers[peer] = (_V4_MAPPED + peer[0], peer[1])
        return mapped


def _buffers(sock: socket.socket, size: int) -> None:
    """Large socket buffers; SO_*BUFFORCE goes past rmem_max/wmem_max when we are root."""
    for force, plain in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):  # SO_RCVBUFFORCE, SO_SNDBUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            try:
                sock.setsockopt(socket.SOL_SOCKET, plain, size)
            except OSError:
                pass


class Counters:
    """Send-side counters of one socket (not per SA); the dataplane counts what it receives."""

    __slots__ = ("gso_sends", "ike_out", "rx_truncated", "tx_datagrams", "tx_errors")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}


class UdpEndpoint:
    """One UDP socket bound to (address, port); ``nat_t`` says whether it speaks RFC 3948.

    ``dual_stack`` (for '::' only): serve IPv4 peers too; otherwise an IPv6 socket is IPv6-only,
    whatever net.ipv6.bindv6only says, so that IPv4 sockets on the same port can coexist.
    """

    def __init__(
        self,
        address: str,
        port: int = NAT_T_PORT,
        *,
        nat_t: Optional[bool] = None,
        gro: bool = True,
        gso: bool = True,
        reuse_port: bool = False,
        buffer_size: int = SOCKET_BUFFER,
        dual_stack: bool = False,
    ):
        self.nat_t = port != IKE_PORT if nat_t is None else nat_t
        family = _family(address)
        self.wildcard = ipaddress.ip_address(address).is_unspecified
        self.dual_stack = dual_stack and family == socket.AF_INET6 and self.wildcard
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _buffers(sock, buffer_size)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if self.dual_stack else 1)
            if self.wildcard:
                # the local address of each datagram (IKE wants it); on a dual-stack socket
                # IPV6_PKTINFO reports IPv4 datagrams too, v4-mapped
                if family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sock.bind((address, port))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.family = family
        self.families = (socket.AF_INET6, socket.AF_INET) if self.dual_stack else (family,)
        self.local: Address = sock.getsockname()[:2]
        self.gro = False
        if gro and self.nat_t:
            try:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                self.gro = True
            except OSError:
                pass
        self.gso = gso and self.nat_t and self._probe_gso()
        self.buffer = bytearray(RECV_BUFFER)
        self.view = memoryview(self.buffer)
        self._cmsg_space = socket.CMSG_SPACE(_INT.size) + socket.CMSG_SPACE(64)
        self._addressing = _Addressing(family, self.wildcard, self.dual_stack)
        self.counters = Counters()

    def __repr__(self) -> str:
        return "<UdpEndpoint %s:%d nat_t=%s gro=%s gso=%s%s>" % (
            self.local[0],
            self.local[1],
            self.nat_t,
            self.gro,
            self.gso,
            " dual-stack" if self.dual_stack else "",
        )

    def _probe_gso(self) -> bool:
        try:
            self.sock.setsockopt(SOL_UDP, UDP_SEGMENT, 0)
        except OSError:
            return False
        return True

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    # --- receive ------------------------------------------------------------------------------
    def recv(self) -> Tuple[int, int, int, Address, Address]:
        """Receive into ``self.view``: (start, end, segment size, source, local address).

        With GRO, ``view[start:end]`` may hold several datagrams of ``segment size`` octets
        each (the last one may be shorter). Addresses of IPv4 peers on a dual-stack socket come
        back as plain IPv4. Raises BlockingIOError when nothing is waiting.
        """
        length, ancdata, flags, source = self.sock.recvmsg_into((self.buffer,), self._cmsg_space)
        segment = length
        local = self.local
        for level, kind, data in ancdata:
            if level == SOL_UDP and kind == UDP_GRO:
                segment = _INT.unpack_from(data)[0]
            elif level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                # the header's destination address: what the peer sent to
                local = (socket.inet_ntop(socket.AF_INET, data[8:12]), local[1])
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                local = (unmapped(socket.inet_ntop(socket.AF_INET6, data[:16])), local[1])
        if flags & socket.MSG_TRUNC:
            self.counters.rx_truncated += 1
        source = (unmapped(source[0]), source[1]) if self.dual_stack else source[:2]
        return 0, length, segment or length, source, local

    # --- send ---------------------------------------------------------------------------------
    def send_ike(self, data: bytes, peer: Address, local: Optional[str] = None) -> bool:
        """Send an IKE message from address `local` (on a wildcard socket); on a NAT-T port with
        the non-ESP marker (RFC 3948 §2.2)."""
        addressing = self._addressing
        try:
            self.sock.sendmsg(
                (NON_ESP_MARKER, data) if self.nat_t else (data,),
                addressing.source(local),
                0,
                addressing.peer(peer),
            )
        except OSError:
            self.counters.tx_errors += 1
            return False
        self.counters.ike_out += 1
        return True

    def send_keepalive(self, peer: Address, local: Optional[str] = None) -> bool:
        """A NAT keepalive (RFC 3948 §2.3)."""
        addressing = self._addressing
        try:
            self.sock.sendmsg((KEEPALIVE,), addressing.source(local), 0, addressing.peer(peer))
        except OSError:
            self.counters.tx_errors += 1
            return False
        return True

    def send_esp(self, packets: Sequence[bytes], peer: Address, source: Optional[str] = None) -> int:
        """Send ESP packets to ``peer`` (from address ``source`` on a wildcard socket) in order;
        returns how many could not be sent.

        Runs of equal size go out as one GSO send (the run may end with one shorter packet).
        """
        count = len(packets)
        if not count:
            return 0
        counters = self.counters
        counters.tx_datagrams += count
        peer = self._addressing.peer(peer)
        source_cmsg = self._addressing.source(source)
        if not self.gso or count == 1:
            return self._send_each(packets, peer, source_cmsg)
        failed = 0
        sendmsg = self.sock.sendmsg
        start = 0
        while start < count:
            size = len(packets[start])
            limit = min(UDP_MAX_SEGMENTS, GSO_MAX_BYTES // size)
            end = start + 1
            while end < count and end - start < limit:
                length = len(packets[end])
                if length != size:
                    if length < size:
                        end += 1  # a shorter packet may close the run
                    break
                end += 1
            if end - start == 1:
                failed += self._send_each(packets[start:end], peer, source_cmsg)
            else:
                try:
                    sendmsg(packets[start:end], _gso_cmsg(size) + source_cmsg, 0, peer)
                    counters.gso_sends += 1
                except OSError as exc:
                    if exc.errno in (errno.EIO, errno.EOPNOTSUPP, errno.ENOPROTOOPT):
                        self.gso = False  # the route's device cannot segment: stop trying
                    failed += self._send_each(packets[start:end], peer, source_cmsg)
            start = end
        return failed

    def _send_each(self, packets: Sequence[bytes], peer: Address, source_cmsg: list) -> int:
        return _send_each(self.sock, self.counters, packets, peer, source_cmsg)


def _send_each(sock, counters: Counters, packets: Sequence[bytes], peer: Address, source_cmsg: list) -> int:
    """One packet per system call; with `source_cmsg` (a wildcard socket), from the address it names.
    Returns how many could not be sent."""
    failed = 0
    if source_cmsg:
        sendmsg = sock.sendmsg
        for packet in packets:
            try:
                sendmsg((packet,), source_cmsg, 0, peer)
            except OSError:
                failed += 1
    else:
        sendto = sock.sendto
        for packet in packets:
            try:
                sendto(packet, peer)
            except OSError:
                failed += 1
    if failed:
        counters.tx_errors += failed
    return failed


class RawEspEndpoint:
    """A raw IP socket for protocol 50: ESP without UDP encapsulation (RFC 4303).

    IPv4 raw sockets deliver the IP header with every packet; :meth:`recv` reports where the
    ESP packet starts. Sending is one packet per system call (raw sockets have no GSO). Raw
    sockets are never dual-stack: '::' receives IPv6 only.
    """

    nat_t = False
    gro = False
    gso = False
    dual_stack = False

    def __init__(self, address: str, *, buffer_size: int = SOCKET_BUFFER):
        family = _family(address)
        sock = socket.socket(family, socket.SOCK_RAW, IPPROTO_ESP)
        try:
            sock.setblocking(False)
            _buffers(sock, buffer_size)
            sock.bind((address, 0))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.family = family
        self.families = (family,)
        self.local: Address = (address, 0)
        self.wildcard = ipaddress.ip_address(address).is_unspecified
        self.buffer = bytearray(RECV_BUFFER)
        self.view = memoryview(self.buffer)
        self._addressing = _Addressing(family, self.wildcard, False)
        self.counters = Counters()

    def __repr__(self) -> str:
        return "<RawEspEndpoint %s>" % self.local[0]

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def recv(self) -> Tuple[int, int, int, Address, Address]:
        """(start, end, segment size, source, local) of one ESP packet in ``self.view``.

        Raises BlockingIOError when nothing is waiting.
        """
        length, source = self.sock.recvfrom_into(self.buffer)
        start = (self.buffer[0] & 0x0F) * 4 if self.family == socket.AF_INET else 0
        return start, length, length - start, (source[0], 0), self.local

    def send_esp(self, packets: Sequence[bytes], peer: Address, source: Optional[str] = None) -> int:
        self.counters.tx_datagrams += len(packets)
        return _send_each(self.sock, self.counters, packets, (peer[0], 0), self._addressing.source(source))


UDP_ENCAP = 100  # <linux/udp.h> socket option (SOL_UDP)
UDP_ENCAP_ESPINUDP = 2  # RFC 3948 framing: ESP with a non-zero SPI, IKE behind the non-ESP marker


def enable_esp_in_udp(endpoint: UdpEndpoint) -> None:
    """Let the kernel take ESP in UDP (RFC 3948) off this NAT-T socket and decrypt it with its XFRM states;
    IKE (behind the non-ESP marker) still reaches the socket, NAT keepalives are dropped by the kernel
    (net/ipv4/xfrm4_input.c xfrm4_udp_encap_rcv()). Raises OSError where the kernel has no ESP in UDP."""
    endpoint.sock.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)


def open_endpoints(
    addresses: Sequence[str], ports: Sequence[int] = (IKE_PORT, NAT_T_PORT), **options
) -> List[UdpEndpoint]:
    """A UDP endpoint per (address, port); closes what it opened if one fails.

    ``ports`` is (IKE port, NAT-T port): the first carries plain IKE, the others RFC 3948.
    '::' is dual-stack when no IPv4 address is listed (:func:`dual_stack_wanted`).
    """
    addresses = [str(a) for a in addresses]
    dual_stack = dual_stack_wanted(addresses)
    endpoints: List[UdpEndpoint] = []
    try:
        for address in addresses:
            for index, port in enumerate(ports):
                endpoints.append(
                    UdpEndpoint(address, port, nat_t=index > 0, dual_stack=dual_stack, **options)
                )
    except OSError:
        for endpoint in endpoints:
            endpoint.close()
        raise
    return endpoints
