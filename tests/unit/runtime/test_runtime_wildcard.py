"""Wildcard listen addresses (the default 0.0.0.0, and '::'): sockets open on Python 3.11, IKE and ESP
replies leave from the address the peer sent to, and '::' alone serves IPv4 peers too (dual-stack).

127.0.0.1 and 127.0.0.2 are both addresses of the loopback device: a reply to 127.0.0.1 leaves from
127.0.0.1 unless the socket is told otherwise, so a peer that sent to 127.0.0.2 sees whether it was.
"""

from __future__ import annotations

import socket

import pytest
from pyike.esp import InboundSA, OutboundSA
from pyike.runtime.dataplane import Dataplane
from pyike.runtime.udp import NON_ESP_MARKER, open_endpoints
from runtime_packets import udp_packet
from test_runtime_dataplane import FakeTun, gcm

SENT_TO = "127.0.0.2"


class Wildcard:
    """A dataplane over a fake TUN listening on `address` (ephemeral ports), recording IKE messages."""

    def __init__(self, addresses):
        self.endpoints = open_endpoints(addresses, (0, 0))
        self.received = []
        self.tun = FakeTun()
        self.dataplane = Dataplane(
            self.tun, self.endpoints, ike_handler=lambda *message: self.received.append(message)
        )

    def port(self, family, nat_t):
        (endpoint,) = [e for e in self.endpoints if e.family == family and e.nat_t == nat_t]
        return endpoint.local[1]

    def pump(self):
        for endpoint in self.endpoints:
            self.dataplane._on_socket(endpoint)

    def close(self):
        self.dataplane.close()
        for endpoint in self.endpoints:
            endpoint.close()


@pytest.fixture
def peer():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def exchange(wildcard, peer, family, nat_t):
    """The peer sends an IKE message to SENT_TO; the dataplane answers through send_ike."""
    port = wildcard.port(family, nat_t)
    peer.sendto((NON_ESP_MARKER if nat_t else b"") + b"request", (SENT_TO, port))
    wildcard.pump()
    ((data, source, local),) = wildcard.received
    assert data == b"request"
    assert source == peer.getsockname()  # plain IPv4, also when a dual-stack socket received it
    assert local == (SENT_TO, port)  # the engine compares it with the configured local address
    assert wildcard.dataplane.send_ike(b"response", local, source)
    answer, answered_from = peer.recvfrom(100)
    assert answer == (NON_ESP_MARKER if nat_t else b"") + b"response"
    return answered_from


@pytest.mark.parametrize("nat_t", [False, True], ids=["port-500", "port-4500"])
def test_the_default_listen_address_answers_ike_from_the_address_the_peer_sent_to(peer, nat_t):
    wildcard = Wildcard(["0.0.0.0"])  # settings.listen's default
    try:
        assert exchange(wildcard, peer, socket.AF_INET, nat_t) == (
            SENT_TO,
            wildcard.port(socket.AF_INET, nat_t),
        )
    finally:
        wildcard.close()


@pytest.mark.parametrize("nat_t", [False, True], ids=["port-500", "port-4500"])
def test_listening_on_ipv6_any_alone_serves_ipv4_peers_too(peer, nat_t):
    wildcard = Wildcard(["::"])
    try:
        assert [e.family for e in wildcard.endpoints] == [socket.AF_INET6] * 2
        assert exchange(wildcard, peer, socket.AF_INET6, nat_t) == (
            SENT_TO,
            wildcard.port(socket.AF_INET6, nat_t),
        )
    finally:
        wildcard.close()


def test_ipv6_peers_reach_a_dual_stack_socket_as_before():
    wildcard = Wildcard(["::"])
    peer6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        peer6.bind(("::1", 0))
        peer6.settimeout(5)
        port = wildcard.port(socket.AF_INET6, False)
        peer6.sendto(b"request", ("::1", port))
        wildcard.pump()
        ((_data, source, local),) = wildcard.received
        assert source == peer6.getsockname()[:2] and local == ("::1", port)
        assert wildcard.dataplane.send_ike(b"response", local, source)
        assert peer6.recvfrom(100)[0] == b"response"
    finally:
        peer6.close()
        wildcard.close()


def test_ipv4_and_ipv6_any_together_each_get_their_own_sockets_on_the_same_ports():
    probe = Wildcard(["0.0.0.0"])  # two free port numbers
    ports = (probe.port(socket.AF_INET, False), probe.port(socket.AF_INET, True))
    probe.close()
    endpoints = open_endpoints(["0.0.0.0", "::"], ports)  # '::' must not claim the IPv4 ports as well
    try:
        assert sorted((e.family, e.local[1]) for e in endpoints) == sorted(
            (family, port) for family in (socket.AF_INET, socket.AF_INET6) for port in ports
        )
    finally:
        for endpoint in endpoints:
            endpoint.close()


def test_raw_esp_needs_a_socket_per_family():
    from pyike.runtime.udp import raw_esp_addresses

    assert raw_esp_addresses(["::"]) == ["::", "0.0.0.0"]  # raw sockets are not dual-stack
    assert raw_esp_addresses(["0.0.0.0"]) == ["0.0.0.0"]
    assert raw_esp_addresses(["0.0.0.0", "::"]) == ["0.0.0.0", "::"]
    assert raw_esp_addresses(["192.0.2.1", "::"]) == ["192.0.2.1", "::"]


@pytest.mark.parametrize("listen", [["0.0.0.0"], ["::"]], ids=["ipv4-any", "ipv6-any"])
def test_esp_in_udp_leaves_from_the_child_sas_local_address(peer, listen):
    wildcard = Wildcard(listen)
    try:
        (endpoint,) = [e for e in wildcard.endpoints if e.nat_t]
        key = bytes(36)
        wildcard.dataplane.install_child(
            "net",
            OutboundSA(0x1001, gcm(key)),
            InboundSA(0x2002, gcm(key)),
            ["10.1.0.0/24"],
            ["10.2.0.0/24"],
            peer.getsockname(),
            encap=True,
            local=SENT_TO,
        )
        wildcard.tun.inbox.append(udp_packet("10.1.0.10", "10.2.0.10"))
        wildcard.dataplane._on_tun()
        esp, sent_from = peer.recvfrom(2000)
        assert esp[:4] == b"\x00\x00\x10\x01" and sent_from == (SENT_TO, endpoint.local[1])
    finally:
        wildcard.close()
