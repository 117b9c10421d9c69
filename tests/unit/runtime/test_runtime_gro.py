"""Userspace GRO: decrypted TCP segments become virtio-net super packets the kernel splits back."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.runtime.gro import VNET_HDR_NONE, TcpCoalescer, ipv4_header_checksum, pseudo_header_sum
from runtime_packets import checksum, kernel_segment, tcp_segment, udp_packet

MSS = 1348


def flow(count, seq=1000, size=MSS, src="10.2.0.10", dst="10.1.0.10", sport=5201, last_size=None, **kw):
    packets = []
    for index in range(count):
        length = last_size if (last_size and index == count - 1) else size
        packets.append(
            tcp_segment(
                src, dst, sport=sport, seq=seq, payload=bytes([index % 251]) * length, ip_id=index + 1, **kw
            )
        )
        seq += length
    return packets


def resegment(frames):
    return [segment for frame in frames for segment in kernel_segment(frame)]


def test_checksum_helpers_match_rfc1071():
    header = bytearray(tcp_segment()[:20])
    expected = struct.unpack("!H", header[10:12])[0]
    header[10:12] = b"\0\0"
    assert ipv4_header_checksum(bytes(header)) == expected
    src, dst = bytes(header[12:16]), bytes(header[16:20])
    pseudo = src + dst + struct.pack("!BBH", 0, 6, 1234)
    assert pseudo_header_sum(src, dst, 6, 1234) == ~checksum(pseudo) & 0xFFFF


def test_a_bulk_run_becomes_one_super_packet_that_segments_back_exactly():
    packets = flow(40, last_size=700)
    coalescer = TcpCoalescer()
    frames = coalescer.coalesce(packets)
    assert len(frames) == 1
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = struct.unpack("=BBHHHH", frames[0][0])
    assert (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset) == (1, 1, 52, MSS, 20, 16)
    assert resegment(frames) == packets
    assert coalescer.coalesced == 40 and coalescer.frames_out == 1


def test_ipv6_runs_coalesce_too():
    packets = flow(10, src="2001:db8:2::10", dst="2001:db8:1::10")
    frames = TcpCoalescer().coalesce(packets)
    assert len(frames) == 1 and struct.unpack("=BBHHHH", frames[0][0])[1] == 4
    assert resegment(frames) == packets


def test_interleaved_flows_each_coalesce_and_keep_their_order():
    a = flow(8, sport=1111)
    b = flow(8, sport=2222, seq=50_000)
    mixed = [packet for pair in zip(a, b) for packet in pair]
    frames = TcpCoalescer().coalesce(mixed)
    assert len(frames) == 2
    out = resegment(frames)
    assert [p for p in out if p in a] == a and [p for p in out if p in b] == b


def test_what_must_not_be_merged_is_passed_through():
    data = flow(3)
    fin = tcp_segment(seq=1000 + 3 * MSS, flags=0x11, payload=b"end")
    pure_ack = tcp_segment(flags=0x10, payload=b"")
    syn = tcp_segment(flags=0x02, payload=b"")
    udp = udp_packet()
    frames = TcpCoalescer().coalesce([*data, fin, pure_ack, syn, udp])
    assert [bytes(f[0]) for f in frames[1:]] == [VNET_HDR_NONE] * 4
    assert resegment(frames) == [*data, fin, pure_ack, syn, udp]


def test_gaps_psh_shorter_segments_and_option_changes_end_a_run():
    run1 = flow(3)
    gap = flow(2, seq=1000 + 5 * MSS)  # two segments missing
    frames = TcpCoalescer().coalesce(run1 + gap)
    assert len(frames) == 2 and resegment(frames) == run1 + gap

    pushed = flow(2, flags=0x18) + flow(2, seq=1000 + 2 * MSS)
    frames = TcpCoalescer().coalesce(pushed)
    assert resegment(frames) == pushed and len(frames) == 3  # a PSH closes its run

    short_first = flow(1, size=500) + flow(3, seq=1500)
    frames = TcpCoalescer().coalesce(short_first)
    assert resegment(frames) == short_first

    other_ts = flow(2) + flow(
        2, seq=1000 + 2 * MSS, options=b"\x01\x01\x08\x0a\x00\x00\x00\x09\x00\x00\x00\x02"
    )
    frames = TcpCoalescer().coalesce(other_ts)
    assert len(frames) == 2 and resegment(frames) == other_ts

    other_ack = flow(2) + flow(2, seq=1000 + 2 * MSS, ack=99)
    assert len(TcpCoalescer().coalesce(other_ack)) == 2


def test_super_packets_stay_below_the_ip_length_limit():
    packets = flow(64, size=1448)
    frames = TcpCoalescer().coalesce(packets)
    assert all(sum(len(part) for part in frame[1:]) <= 65535 for frame in frames)
    assert resegment(frames) == packets


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2), st.sampled_from([MSS, MSS, MSS, 600, 0]), st.sampled_from([0x10, 0x10, 0x18])
        ),
        max_size=60,
    )
)
def test_any_mix_of_flows_comes_out_as_the_same_packets_in_flow_order(spec):
    seqs = {0: 10, 1: 70_000, 2: 0xFFFFFF00}  # flow 2 wraps its sequence number
    ids = {0: 1, 1: 1, 2: 1}  # IPv4 IDs count up per flow, as the kernel numbers the segments
    packets = []
    for flow_id, size, flags in spec:
        packet = tcp_segment(
            sport=1000 + flow_id, seq=seqs[flow_id], flags=flags, payload=b"p" * size, ip_id=ids[flow_id]
        )
        seqs[flow_id] = (seqs[flow_id] + size) & 0xFFFFFFFF
        ids[flow_id] += 1
        packets.append(packet)
    out = resegment(TcpCoalescer().coalesce(packets))
    assert sorted(out) == sorted(packets)
    for flow_id in seqs:
        port = struct.pack("!H", 1000 + flow_id)
        assert [p for p in out if p[20:22] == port] == [p for p in packets if p[20:22] == port]


def test_a_bogus_tcp_data_offset_is_passed_through_untouched():
    packets = flow(3)
    bogus = [bytearray(p) for p in packets]
    for packet in bogus:
        packet[32] = 0x20  # data offset 2 words: shorter than a TCP header
    frames = TcpCoalescer().coalesce([bytes(p) for p in bogus])
    assert [bytes(f[0]) for f in frames] == [VNET_HDR_NONE] * 3


def _with_ip_byte(packet: bytes, offset: int, value: int) -> bytes:
    header = bytearray(packet[:20])
    header[offset] = value
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return bytes(header) + packet[20:]


def test_tos_ttl_or_df_changes_end_a_run():
    for offset, value in ((1, 0x10), (8, 63), (6, 0x00)):  # TOS, TTL, DF cleared
        packets = flow(4)
        packets[2] = _with_ip_byte(packets[2], offset, value)
        frames = TcpCoalescer().coalesce(packets)
        assert len(frames) == 3 and resegment(frames) == packets, offset  # [0, 1], [2], [3]
