"""The packet pump without root: fake TUN queues, real UDP sockets on the loopback address."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from pyike.esp import InboundSA, OutboundSA, TrafficSelector, make_cipher
from pyike.ids import EncrId
from pyike.runtime.dataplane import Dataplane, DataplaneError
from pyike.runtime.udp import NON_ESP_MARKER, UdpEndpoint
from runtime_packets import kernel_segment, tcp_segment, udp_packet

A_NET, B_NET = "10.1.0.0/24", "10.2.0.0/24"


class FakeTun:
    """Stands in for runtime.tun.Tun: packets to "read" go in ``inbox``, writes land in lists."""

    name = "fake0"
    fd = -1
    mtu = 1400

    def __init__(self, vnet_hdr: bool = False):
        self.vnet_hdr = vnet_hdr
        self.inbox = []
        self.written = []
        self.batch = 64

    def set_batch(self, batch):
        self.batch = batch

    def read_batch(self, limit=0):
        out, self.inbox = self.inbox[: self.batch], self.inbox[self.batch :]
        return [memoryview(bytearray(p)) for p in out]  # like the real one: views of buffers

    def write_batch(self, packets):
        self.written.extend(bytes(p) for p in packets)
        return 0

    def write_vnet(self, frames):
        for frame in frames:
            self.written.extend(kernel_segment(frame))
        return 0


def gcm(key: bytes):
    return make_cipher(EncrId.AES_GCM_16, key)


class Pair:
    """Gateways a (10.1/24) and b (10.2/24) with one child "net" between them."""

    def __init__(self, vnet_hdr=False, spis=(0x1001, 0x2002)):
        self.a_tun, self.b_tun = FakeTun(vnet_hdr), FakeTun(vnet_hdr)
        self.a_ep = UdpEndpoint("127.0.0.1", 0)
        self.b_ep = UdpEndpoint("127.0.0.1", 0)
        self.a = Dataplane(self.a_tun, [self.a_ep])
        self.b = Dataplane(self.b_tun, [self.b_ep])
        self.keys = (os.urandom(36), os.urandom(36))
        self.install(spis)

    def install(self, spis, child="net"):
        ab, ba = spis
        k_ab, k_ba = self.keys
        self.a.install_child(
            child, OutboundSA(ab, gcm(k_ab)), InboundSA(ba, gcm(k_ba)), [A_NET], [B_NET], self.b_ep.local
        )
        self.b.install_child(
            child, OutboundSA(ba, gcm(k_ba)), InboundSA(ab, gcm(k_ab)), [B_NET], [A_NET], self.a_ep.local
        )

    def a_to_b(self, packets):
        self.a_tun.inbox.extend(packets)
        self.a._on_tun()
        self.b._on_socket(self.b_ep)
        out, self.b_tun.written = self.b_tun.written, []
        return out

    def close(self):
        for dp, ep in ((self.a, self.a_ep), (self.b, self.b_ep)):
            dp.close()
            ep.close()


@pytest.fixture
def pair():
    p = Pair()
    yield p
    p.close()


def data(count, src="10.1.0.10", dst="10.2.0.10", size=1000):
    return [udp_packet(src, dst, payload=bytes([i]) * size) for i in range(count)]


def test_packets_cross_and_are_counted(pair):
    packets = [*data(3), udp_packet(payload=b"x" * 10, src="10.1.0.10", dst="10.2.0.10")]
    assert pair.a_to_b(packets) == packets
    a, b = pair.a.stats(), pair.b.stats()
    assert a["children"]["net"]["packets_out"] == 4
    assert a["children"]["net"]["bytes_out"] == sum(map(len, packets))
    assert b["children"]["net"]["packets_in"] == 4
    assert b["children"]["net"]["spi_in"] == [0x1001]
    assert b["io"]["udp_rx"] >= 1 and a["io"]["tun_rx"] == 4


def test_equal_sizes_go_out_as_one_gso_send_and_arrive_by_gro(pair):
    if not pair.a_ep.gso:
        pytest.skip("no UDP GSO here")
    packets = data(40)
    assert pair.a_to_b(packets) == packets
    assert pair.a.stats()["endpoints"]["127.0.0.1:%d" % pair.a_ep.local[1]]["gso_sends"] == 1
    if pair.b_ep.gro:
        assert pair.b.stats()["io"]["udp_rx"] < 40


def test_garbage_keepalives_and_ike_are_told_apart(pair):
    seen = []
    pair.b.ike_handler = lambda data, src, dst: seen.append((data, src, dst))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    # after a long datagram of zeros, a short one must not borrow the rest of the marker from it
    for datagram in (
        bytes(200),
        b"\0\0",
        b"\x7f" + os.urandom(99),
        b"\xff",
        b"\x01\x02",
        NON_ESP_MARKER + b"IKE-MESSAGE",
    ):
        sender.sendto(datagram, pair.b_ep.local)
    pair.b._on_socket(pair.b_ep)
    source = sender.getsockname()
    sender.close()
    stats = pair.b.stats()
    assert stats["drops"]["unknown_spi"] == 1
    assert stats["io"]["keepalives_in"] == 1
    assert stats["drops"]["invalid_datagram"] == 2
    assert seen[1:] == [(b"IKE-MESSAGE", source, pair.b_ep.local)]
    assert seen[0][0] == bytes(196)  # 200 zero octets: the marker and an (empty) IKE message
    assert stats["io"]["ike_in"] == 2


def test_ike_without_a_handler_is_counted_and_send_ike_adds_the_marker(pair):
    pair.a.send_ike(b"HELLO", pair.a_ep.local, pair.b_ep.local)
    pair.b._on_socket(pair.b_ep)
    assert pair.b.stats()["drops"]["ike_unhandled"] == 1
    got = []
    pair.b.ike_handler = lambda data, src, dst: got.append(data)
    pair.a.send_ike(b"HELLO", pair.a_ep.local, pair.b_ep.local)
    pair.b._on_socket(pair.b_ep)
    assert got == [b"HELLO"]
    with pytest.raises(DataplaneError):
        pair.a.send_ike(b"x", ("127.0.0.1", 1), pair.b_ep.local)


def test_a_replayed_esp_packet_is_dropped_and_counted(pair):
    captured = []
    original = pair.a_ep.send_esp
    pair.a_ep.send_esp = lambda packets, *address: captured.extend(packets) or original(packets, *address)
    assert len(pair.a_to_b(data(1))) == 1
    replayer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    replayer.sendto(captured[0], pair.b_ep.local)
    replayer.sendto(captured[0], pair.b_ep.local)
    pair.b._on_socket(pair.b_ep)
    replayer.close()
    assert pair.b_tun.written == []
    assert pair.b.stats()["children"]["net"]["drops"]["replayed"] == 2


def test_packets_outside_the_selectors_are_dropped_on_both_sides(pair):
    assert pair.a_to_b(data(1, src="10.9.0.1")) == []  # no outbound policy on a
    assert pair.a.stats()["drops"]["spd_no_policy"] == 1
    # b accepts only 10.1/24 -> 10.2/24 on this SA even if a sends something else under it
    pair.a.remove_child("net")
    k_ab = pair.keys[0]
    wide = OutboundSA(0x1001, gcm(k_ab), seq=100)
    pair.a.install_child("net", wide, None, ["10.0.0.0/8"], [B_NET], pair.b_ep.local)
    assert pair.a_to_b(data(1, src="10.9.0.1")) == []
    assert pair.b.stats()["children"]["net"]["drops"]["selector"] == 1


def test_make_before_break_rekey_keeps_traffic_and_totals(pair):
    assert len(pair.a_to_b(data(5))) == 5
    new_keys = os.urandom(36)
    pair.b.add_inbound("net", InboundSA(0x3003, gcm(new_keys)))
    assert len(pair.a_to_b(data(2))) == 2  # still the old SA
    old = pair.a.switch_outbound("net", OutboundSA(0x3003, gcm(new_keys)))
    assert old.spi == 0x1001
    assert len(pair.a_to_b(data(3))) == 3  # the new SA
    removed = pair.b.remove_inbound("net", 0x1001)
    assert removed is not None and removed.traffic.packets == 7
    a, b = pair.a.stats()["children"]["net"], pair.b.stats()["children"]["net"]
    assert a["packets_out"] == 10 and a["spi_out"] == 0x3003
    assert b["packets_in"] == 10 and b["spi_in"] == [0x3003]
    # a late packet of the old SA is now unknown
    late = OutboundSA(0x1001, gcm(pair.keys[0]), seq=50).encapsulate(data(1)[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(late, pair.b_ep.local)
    pair.b._on_socket(pair.b_ep)
    assert pair.b.stats()["drops"]["unknown_spi"] == 1


def test_install_and_remove_are_checked(pair):
    with pytest.raises(DataplaneError, match="already installed"):
        pair.install((0x1001, 0x2002))
    with pytest.raises(DataplaneError, match="already installed"):
        pair.a.install_child(
            "other", None, InboundSA(0x2002, gcm(pair.keys[1])), [A_NET], [B_NET], ("127.0.0.1", 9)
        )
    with pytest.raises(DataplaneError, match="no raw ESP socket"):
        pair.a.install_child("raw", None, None, [A_NET], [B_NET], ("127.0.0.1", 0), encap=False)
    with pytest.raises(DataplaneError, match="no child"):
        pair.a.switch_outbound("nope", OutboundSA(5, gcm(pair.keys[0])))
    pair.a.remove_child("net")
    pair.a.remove_child("net")  # idempotent
    assert pair.a.children == ()
    assert pair.a_to_b(data(1)) == []


def test_tcp_runs_are_written_as_super_packets_with_a_vnet_header():
    pair = Pair(vnet_hdr=True)
    try:
        written_frames = []
        pair.b_tun.write_vnet = lambda frames: written_frames.extend(frames) or 0
        seq = 1
        segments = []
        for index in range(20):
            segments.append(
                tcp_segment("10.1.0.10", "10.2.0.10", seq=seq, payload=b"d" * 1300, ip_id=index + 1)
            )
            seq += 1300
        pair.a_tun.inbox.extend(segments)
        pair.a._on_tun()
        pair.b._on_socket(pair.b_ep)
        assert [s for f in written_frames for s in kernel_segment(f)] == segments
        assert len(written_frames) < 20
        assert struct.unpack("=BBHHHH", written_frames[0][0])[1] == 1  # GSO TCPv4
    finally:
        pair.close()


class FakeRoutes:
    def __init__(self, fail_on=None):
        self.routes, self.fail_on = [], fail_on

    def add(self, network, source=None):
        if network == self.fail_on:
            raise OSError(22, "refused")
        self.routes.append((network, source))

    def remove(self, network, source=None):
        self.routes.remove((network, source))


def test_routes_follow_children_with_a_source_per_ip_version():
    routes = FakeRoutes()
    endpoint = UdpEndpoint("127.0.0.1", 0)
    dataplane = Dataplane(FakeTun(), [endpoint], routes=routes, route_source=["fd00:1::1", "10.1.0.1"])
    try:
        dataplane.install_child(
            "net",
            None,
            None,
            [A_NET, "fd00:1::/64"],
            [B_NET, "fd00:2::/64", TrafficSelector.from_range("10.3.0.0", "10.3.0.1")],
            ("127.0.0.1", 9),
        )
        assert routes.routes == [
            ("10.2.0.0/24", "10.1.0.1"),
            ("fd00:2::/64", "fd00:1::1"),
            ("10.3.0.0/31", "10.1.0.1"),
        ]
        dataplane.remove_child("net")
        assert routes.routes == []
        routes.fail_on = "fd00:2::/64"
        with pytest.raises(OSError):
            dataplane.install_child("net", None, None, [A_NET], [B_NET, "fd00:2::/64"], ("127.0.0.1", 9))
        assert routes.routes == [] and dataplane.children == ()  # rolled back
    finally:
        dataplane.close()
        endpoint.close()
