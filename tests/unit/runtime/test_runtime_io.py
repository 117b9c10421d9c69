"""UDP demultiplexing and GSO runs, route prefixes, and the static-keys tool's configuration."""

from __future__ import annotations

import socket

import pytest
from pyike.esp import SAD
from pyike.ids import EncrId, IntegId
from pyike.runtime.routes import networks_of_range
from pyike.runtime.static_tunnel import ConfigError, build_sas, make_pair, parse_cipher
from pyike.runtime.udp import (
    KIND_ESP,
    KIND_IKE,
    KIND_INVALID,
    KIND_KEEPALIVE,
    NON_ESP_MARKER,
    UdpEndpoint,
    classify,
)
from runtime_packets import udp_packet


def test_rfc3948_classification():
    assert classify(b"\xff") == KIND_KEEPALIVE
    assert classify(NON_ESP_MARKER + b"ike") == KIND_IKE
    assert classify(b"\x00\x00\x00\x01" + bytes(12)) == KIND_ESP  # an SPI with leading zero octets
    assert classify(b"\x01\x02\x03") == KIND_INVALID
    assert classify(b"anything", nat_t=False) == KIND_IKE


class RecordingSocket:
    def __init__(self):
        self.calls = []

    def sendmsg(self, buffers, ancdata, flags, address):
        self.calls.append(("gso", [len(b) for b in buffers], ancdata))

    def sendto(self, data, address):
        self.calls.append(("one", len(data)))


def test_gso_runs_split_on_size_changes_and_limits():
    endpoint = UdpEndpoint("127.0.0.1", 0)
    try:
        endpoint.gso = True
        endpoint.sock.close()
        endpoint.sock = RecordingSocket()
        sizes = [100] * 3 + [60] + [100] * 2 + [200] + [100]
        assert endpoint.send_esp([b"x" * n for n in sizes], ("127.0.0.1", 9)) == 0
        assert [c[:2] for c in endpoint.sock.calls] == [
            ("gso", [100, 100, 100, 60]),  # a shorter packet may end a run
            ("gso", [100, 100]),
            ("gso", [200, 100]),
        ]
        endpoint.sock.calls.clear()
        endpoint.send_esp([b"y" * 1400] * 100, ("127.0.0.1", 9))
        runs = [c[1] for c in endpoint.sock.calls]
        assert sum(len(r) for r in runs) == 100 and all(sum(r) <= 65000 for r in runs)
    finally:
        endpoint.sock = socket.socket()
        endpoint.close()


def test_gso_over_loopback_arrives_complete():
    sender, receiver = UdpEndpoint("127.0.0.1", 0), UdpEndpoint("127.0.0.1", 0)
    try:
        packets = [bytes([i + 1]) * 1000 for i in range(10)] + [b"\x0b" * 10]
        assert sender.send_esp(packets, receiver.local) == 0
        got = []
        while True:
            try:
                start, end, segment, source, local = receiver.recv()
            except BlockingIOError:
                break
            view = receiver.view
            got.extend(bytes(view[i : min(i + segment, end)]) for i in range(start, end, segment))
            assert source == sender.local and local == receiver.local
        assert got == packets
    finally:
        sender.close()
        receiver.close()


def test_selector_ranges_become_exact_prefixes():
    assert networks_of_range(0x0A010000, 0x0A0100FF, 4) == ["10.1.0.0/24"]
    assert networks_of_range(0x0A010001, 0x0A010002, 4) == ["10.1.0.1/32", "10.1.0.2/32"]
    assert networks_of_range(0, 2**128 - 1, 6) == ["::/0"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("aes256gcm16", (EncrId.AES_GCM_16, 256, IntegId.NONE)),
        ("AES128GCM16", (EncrId.AES_GCM_16, 128, IntegId.NONE)),
        ("chacha20poly1305", (EncrId.CHACHA20_POLY1305, None, IntegId.NONE)),
        ("aes256-sha384", (EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_384_192)),
    ],
)
def test_cipher_names(name, expected):
    assert parse_cipher(name) == expected


def test_bad_configuration_names_the_field():
    with pytest.raises(ConfigError, match="cipher"):
        parse_cipher("des-md5")
    left, _right = make_pair(
        {"address": "192.0.2.1", "lan": "10.1.0.1", "ts": "10.1.0.0/24"},
        {"address": "198.51.100.1", "lan": "10.2.0.1", "ts": "10.2.0.0/24"},
    )
    child = dict(left["children"][0], spi_in="12")
    with pytest.raises(ConfigError, match="spi_in"):
        build_sas(child)
    child = dict(left["children"][0], key_out="abcd")
    with pytest.raises(ConfigError, match="net"):
        build_sas(child)
    child = dict(left["children"][0], key_in="zz")
    with pytest.raises(ConfigError, match="key_in must be hex"):
        build_sas(child)


@pytest.mark.parametrize("cipher", ["aes256gcm16", "chacha20poly1305", "aes128-sha256", "aes256-sha512"])
def test_a_generated_pair_interoperates(cipher):
    left, right = make_pair(
        {"address": "192.0.2.1", "lan": "10.1.0.1", "ts": "10.1.0.0/24"},
        {"address": "198.51.100.1", "lan": "10.2.0.1", "ts": "10.2.0.0/24"},
        cipher=cipher,
        stats_file="/run/x.json",
    )
    assert left["stats_file"] == right["stats_file"] == "/run/x.json"
    assert left["children"][0]["peer"] == "198.51.100.1" and right["children"][0]["peer"] == "192.0.2.1"
    out_left, _in_left = build_sas(left["children"][0])
    _out_right, in_right = build_sas(right["children"][0])
    sad = SAD()
    sad.add(in_right)
    packet = udp_packet("10.1.0.10", "10.2.0.10")
    assert sad.decapsulate(out_left.encapsulate(packet)) == packet


def test_open_endpoints_treats_the_first_port_as_plain_ike_whatever_its_number():
    from pyike.runtime.udp import open_endpoints

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    ike_port = probe.getsockname()[1]
    probe.close()
    endpoints = open_endpoints(["127.0.0.1"], (ike_port, 0))
    try:
        assert [e.nat_t for e in endpoints] == [False, True]
    finally:
        for endpoint in endpoints:
            endpoint.close()


def test_route_sources_are_picked_per_ip_version():
    from pyike.runtime.dataplane import _sources

    assert _sources(None) == {}
    assert _sources("10.1.0.1") == {4: "10.1.0.1"}
    assert _sources(["fd00::1", "10.1.0.1", "10.1.0.2"]) == {6: "fd00::1", 4: "10.1.0.1"}
