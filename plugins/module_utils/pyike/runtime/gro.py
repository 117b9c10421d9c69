"""Generic receive offload in userspace: decrypted TCP segments -> one TUN write per run.

Decrypting a batch of ESP packets of one bulk TCP flow yields consecutive segments. Instead of
writing each to the TUN device, :class:`TcpCoalescer` glues runs of them into one "super packet"
preceded by a ``struct virtio_net_hdr`` that asks the kernel for TCP segmentation (GSO) and a
checksum (NEEDS_CSUM): one system call and one pass through the forwarding path per run, and the
receiving TCP stack sees fewer, larger segments, so it acknowledges less often — which in turn
saves encryption work on the way back. The same idea as Linux's ``tcp_gro_receive`` and
wireguard-go's ``tun/offload_linux.go``.

A segment joins the open run of its flow (addresses and ports) only when the run can take it
the way Linux GRO would: IPv4 without options or fragmentation (or IPv6 without extension
headers), flags ACK or ACK|PSH, the same TOS/TTL/DF (traffic class/hop limit), acknowledgment
number and TCP options, the next expected sequence number, and a payload no larger than the
run's first (only the last segment of a run may be shorter; a PSH also ends the run). Any other
packet of that flow first closes the flow's run, so order within a flow is kept.

Frames come out as sequences of buffers for ``os.writev``: header, then the payloads as views,
so payloads are never copied.
"""

from __future__ import annotations

import struct
from typing import Dict, List, Sequence

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VNET_HDR = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR_NONE = bytes(VNET_HDR.size)

TCP_ACK = 0x10
TCP_PSH = 0x08
IPPROTO_TCP = 6
MAX_COALESCED = 65535 - 60 - 80  # IP total length is 16 bits; room for headers
MAX_SEGMENTS = 64

_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
_IP4_WORDS = struct.Struct("!10H")
_PSEUDO4 = struct.Struct("!4s4s")


def _fold(value: int) -> int:
    while value > 0xFFFF:
        value = (value & 0xFFFF) + (value >> 16)
    return value


def ipv4_header_checksum(header: bytes) -> int:
    """RFC 791 header checksum of a 20-octet header whose checksum field is zero."""
    return ~_fold(sum(_IP4_WORDS.unpack_from(header))) & 0xFFFF


def pseudo_header_sum(source: bytes, destination: bytes, protocol: int, length: int) -> int:
    """The folded (not complemented) RFC 793/8200 pseudo-header sum: what CHECKSUM_PARTIAL wants."""
    total = int.from_bytes(source, "big") + int.from_bytes(destination, "big")
    total = (total % 0xFFFF) + protocol + length
    return _fold(total)


class _Run:
    __slots__ = (
        "ack",
        "count",
        "header_len",
        "hop",
        "length",
        "mss",
        "next_seq",
        "options",
        "parts",
        "psh",
        "tos",
        "v6",
    )

    def __init__(self, packet, header_len: int, payload_len: int, seq: int, v6: bool):
        self.v6 = v6
        self.header_len = header_len
        self.mss = payload_len
        self.next_seq = (seq + payload_len) & 0xFFFFFFFF
        self.length = payload_len
        self.count = 1
        self.parts = [packet]
        self.psh = False
        if v6:
            self.ack = packet[48:52]
            self.tos = packet[0:4]  # version, traffic class, flow label
            self.hop = packet[7]
            self.options = packet[60:header_len]
        else:
            self.ack = packet[28:32]
            self.tos = packet[1] | packet[6] << 8  # TOS and the DF bit
            self.hop = packet[8]
            self.options = packet[40:header_len]


class TcpCoalescer:
    """Turns a batch of inner IP packets into writev frames for a TUN with a virtio-net header."""

    __slots__ = ("coalesced", "frames_out", "packets_in")

    def __init__(self) -> None:
        self.packets_in = 0
        self.frames_out = 0
        self.coalesced = 0  # segments that went out inside a super packet

    def coalesce(self, packets: Sequence[bytes]) -> List[Sequence[bytes]]:
        frames: List[Sequence[bytes]] = []
        emit = frames.append
        runs: Dict[bytes, _Run] = {}
        none = VNET_HDR_NONE
        unpack_u32 = _U32.unpack_from
        for packet in packets:
            length = len(packet)
            first = packet[0]
            if first == 0x45 and length > 40 and packet[9] == IPPROTO_TCP:
                key = packet[12:24]
                header_len = 20 + ((packet[32] >> 4) << 2)
                payload_len = length - header_len
                run = runs.get(key)
                if (
                    packet[33] & 0xF7 != TCP_ACK
                    or payload_len <= 0
                    or header_len < 40
                    or packet[6] & 0x3F
                    or packet[7]
                ):
                    # not a plain data segment (SYN/FIN/RST/URG/ECN, pure ACK, fragment): as it is
                    if run is not None:
                        emit(self._frame(runs.pop(key)))
                    emit((none, packet))
                    continue
                seq = unpack_u32(packet, 24)[0]
                if run is not None:
                    if (
                        run.next_seq == seq
                        and run.header_len == header_len
                        and payload_len <= run.mss
                        and not run.psh
                        and run.length + payload_len <= MAX_COALESCED
                        and run.count < MAX_SEGMENTS
                        and packet[8] == run.hop
                        and packet[1] | packet[6] << 8 == run.tos
                        and packet[28:32] == run.ack
                        and (header_len == 40 or packet[40:header_len] == run.options)
                    ):
                        run.parts.append(memoryview(packet)[header_len:])
                        run.count += 1
                        run.length += payload_len
                        run.next_seq = (seq + payload_len) & 0xFFFFFFFF
                        if packet[33] & TCP_PSH:
                            run.psh = True
                            emit(self._frame(runs.pop(key)))
                        elif payload_len < run.mss:
                            emit(self._frame(runs.pop(key)))
                        continue
                    emit(self._frame(runs.pop(key)))
                if packet[33] & TCP_PSH:
                    emit((none, packet))  # pushed: nothing may follow it in a run
                else:
                    runs[key] = _Run(packet, header_len, payload_len, seq, False)
                continue
            if first >> 4 == 6 and length > 60 and packet[6] == IPPROTO_TCP:
                key = packet[8:44]
                header_len = 40 + ((packet[52] >> 4) << 2)
                payload_len = length - header_len
                run = runs.get(key)
                if packet[53] & 0xF7 != TCP_ACK or payload_len <= 0 or header_len < 60:
                    if run is not None:
                        emit(self._frame(runs.pop(key)))
                    emit((none, packet))
                    continue
                seq = unpack_u32(packet, 44)[0]
                if run is not None:
                    if (
                        run.next_seq == seq
                        and run.header_len == header_len
                        and payload_len <= run.mss
                        and not run.psh
                        and run.length + payload_len <= MAX_COALESCED
                        and run.count < MAX_SEGMENTS
                        and packet[7] == run.hop
                        and packet[48:52] == run.ack
                        and packet[0:4] == run.tos
                        and (header_len == 60 or packet[60:header_len] == run.options)
                    ):
                        run.parts.append(memoryview(packet)[header_len:])
                        run.count += 1
                        run.length += payload_len
                        run.next_seq = (seq + payload_len) & 0xFFFFFFFF
                        if packet[53] & TCP_PSH:
                            run.psh = True
                            emit(self._frame(runs.pop(key)))
                        elif payload_len < run.mss:
                            emit(self._frame(runs.pop(key)))
                        continue
                    emit(self._frame(runs.pop(key)))
                if packet[53] & TCP_PSH:
                    emit((none, packet))  # pushed: nothing may follow it in a run
                else:
                    runs[key] = _Run(packet, header_len, payload_len, seq, True)
                continue
            emit((none, packet))
        for run in runs.values():
            emit(self._frame(run))
        self.packets_in += len(packets)
        self.frames_out += len(frames)
        return frames

    def _frame(self, run: _Run) -> Sequence[bytes]:
        first = run.parts[0]
        if run.count == 1:
            return (VNET_HDR_NONE, first)
        self.coalesced += run.count
        header_len = run.header_len
        header = bytearray(first[:header_len])
        if run.v6:
            tcp_len = header_len - 40 + run.length
            _U16.pack_into(header, 4, tcp_len)
            if run.psh:
                header[53] |= TCP_PSH
            _U16.pack_into(header, 56, pseudo_header_sum(header[8:24], header[24:40], IPPROTO_TCP, tcp_len))
            gso_type = VIRTIO_NET_HDR_GSO_TCPV6
            csum_start = 40
        else:
            total = header_len + run.length
            _U16.pack_into(header, 2, total)
            header[10] = header[11] = 0
            _U16.pack_into(header, 10, ipv4_header_checksum(header))
            if run.psh:
                header[33] |= TCP_PSH
            _U16.pack_into(
                header, 36, pseudo_header_sum(header[12:16], header[16:20], IPPROTO_TCP, total - 20)
            )
            gso_type = VIRTIO_NET_HDR_GSO_TCPV4
            csum_start = 20
        vnet = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso_type, header_len, run.mss, csum_start, 16)
        parts = run.parts
        parts[0] = memoryview(first)[header_len:]
        return [vnet, header, *parts]
