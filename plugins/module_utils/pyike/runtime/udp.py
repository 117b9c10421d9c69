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
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import Callable, List, Optional, Sequence, Tuple

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

RECV_BUFFER = 65535 + 1
SOCKET_BUFFER = 4 * 1024 * 1024

_GSO_CMSG_CACHE = {}
_INT = struct.Struct("i")
_U16_NATIVE = struct.Struct("H")

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
    """One UDP socket bound to (address, port); ``nat_t`` says whether it speaks RFC 3948."""

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
    ):
        self.nat_t = port != IKE_PORT if nat_t is None else nat_t
        family = _family(address)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _buffers(sock, buffer_size)
            self.wildcard = ipaddress.ip_address(address).is_unspecified
            if self.wildcard:
                # the local address of each datagram comes from IP_PKTINFO (IKE wants it)
                if family == socket.AF_INET:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_PKTINFO, 1)
                else:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            sock.bind((address, port))
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.family = family
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
        self.counters = Counters()

    def __repr__(self) -> str:
        return "<UdpEndpoint %s:%d nat_t=%s gro=%s gso=%s>" % (
            self.local[0],
            self.local[1],
            self.nat_t,
            self.gro,
            self.gso,
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
        each (the last one may be shorter). Raises BlockingIOError when nothing is waiting.
        """
        length, ancdata, flags, source = self.sock.recvmsg_into((self.buffer,), self._cmsg_space)
        segment = length
        local = self.local
        for level, kind, data in ancdata:
            if level == SOL_UDP and kind == UDP_GRO:
                segment = _INT.unpack_from(data)[0]
            elif level == socket.IPPROTO_IP and kind == socket.IP_PKTINFO:
                # struct in_pktinfo {int ifindex; in_addr spec_dst; in_addr addr;}
                local = (socket.inet_ntop(socket.AF_INET, data[8:12]), local[1])
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                local = (socket.inet_ntop(socket.AF_INET6, data[:16]), local[1])
        if flags & socket.MSG_TRUNC:
            self.counters.rx_truncated += 1
        return 0, length, segment or length, source[:2], local

    # --- send ---------------------------------------------------------------------------------
    def send_ike(self, data: bytes, peer: Address) -> bool:
        """Send an IKE message; on a NAT-T port with the non-ESP marker (RFC 3948 §2.2)."""
        try:
            if self.nat_t:
                self.sock.sendmsg((NON_ESP_MARKER, data), (), 0, peer)
            else:
                self.sock.sendto(data, peer)
        except OSError:
            self.counters.tx_errors += 1
            return False
        self.counters.ike_out += 1
        return True

    def send_keepalive(self, peer: Address) -> bool:
        """A NAT keepalive (RFC 3948 §2.3)."""
        try:
            self.sock.sendto(KEEPALIVE, peer)
        except OSError:
            self.counters.tx_errors += 1
            return False
        return True

    def send_esp(self, packets: Sequence[bytes], peer: Address) -> int:
        """Send ESP packets to ``peer`` in order; returns how many could not be sent.

        Runs of equal size go out as one GSO send (the run may end with one shorter packet).
        """
        count = len(packets)
        if not count:
            return 0
        counters = self.counters
        counters.tx_datagrams += count
        if not self.gso or count == 1:
            return self._send_each(packets, peer)
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
                failed += self._send_each(packets[start:end], peer)
            else:
                try:
                    sendmsg(packets[start:end], _gso_cmsg(size), 0, peer)
                    counters.gso_sends += 1
                except OSError as exc:
                    if exc.errno in (errno.EIO, errno.EOPNOTSUPP, errno.ENOPROTOOPT):
                        self.gso = False  # the route's device cannot segment: stop trying
                    failed += self._send_each(packets[start:end], peer)
            start = end
        return failed

    def _send_each(self, packets: Sequence[bytes], peer: Address) -> int:
        sendto = self.sock.sendto
        failed = 0
        for packet in packets:
            try:
                sendto(packet, peer)
            except OSError:
                failed += 1
        if failed:
            self.counters.tx_errors += failed
        return failed


class RawEspEndpoint:
    """A raw IP socket for protocol 50: ESP without UDP encapsulation (RFC 4303).

    IPv4 raw sockets deliver the IP header with every packet; :meth:`recv` reports where the
    ESP packet starts. Sending is one packet per system call (raw sockets have no GSO).
    """

    nat_t = False
    gro = False
    gso = False

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
        self.local: Address = (address, 0)
        self.wildcard = ipaddress.ip_address(address).is_unspecified
        self.buffer = bytearray(RECV_BUFFER)
        self.view = memoryview(self.buffer)
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

    def send_esp(self, packets: Sequence[bytes], peer: Address) -> int:
        self.counters.tx_datagrams += len(packets)
        sendto = self.sock.sendto
        address = (peer[0], 0)
        failed = 0
        for packet in packets:
            try:
                sendto(packet, address)
            except OSError:
                failed += 1
        if failed:
            self.counters.tx_errors += failed
        return failed


def open_endpoints(
    addresses: Sequence[str], ports: Sequence[int] = (IKE_PORT, NAT_T_PORT), **options
) -> List[UdpEndpoint]:
    """A UDP endpoint per (address, port); closes what it opened if one fails.

    ``ports`` is (IKE port, NAT-T port): the first carries plain IKE, the others RFC 3948.
    """
    endpoints: List[UdpEndpoint] = []
    try:
        for address in addresses:
            for index, port in enumerate(ports):
                endpoints.append(UdpEndpoint(address, port, nat_t=index > 0, **options))
    except OSError:
        for endpoint in endpoints:
            endpoint.close()
        raise
    return endpoints
