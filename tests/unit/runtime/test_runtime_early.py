"""ESP that arrives before its inbound SA (runtime/early.py): kept for a moment, then decrypted."""

from __future__ import annotations

import os
import socket

import pytest
from pyike.esp import InboundSA, OutboundSA
from pyike.runtime.early import EarlyPackets
from test_runtime_dataplane import Pair, data, gcm


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_packets_are_kept_by_spi_in_arrival_order_and_taken_once():
    early = EarlyPackets(max_bytes=1000, max_age=2.0, clock=Clock())
    early.hold(7, memoryview(b"a" * 10))  # a view of a reused buffer: kept as a copy
    early.hold(8, b"b" * 10)
    early.hold(7, b"c" * 10)
    assert early.take(7) == [b"a" * 10, b"c" * 10]
    assert early.take(7) == []
    assert early.take(8) == [b"b" * 10] and len(early) == 0


def test_the_byte_budget_lets_the_oldest_go_first():
    early = EarlyPackets(max_bytes=25, max_age=2.0, clock=Clock())
    for spi in (1, 2, 3):
        early.hold(spi, bytes(10))
    assert early.take(1) == [] and early.take(2) == [bytes(10)] and early.take(3) == [bytes(10)]
    early.hold(4, bytes(26))  # larger than the whole budget: not kept
    assert early.take(4) == []


def test_packets_older_than_max_age_are_not_delivered():
    clock = Clock()
    early = EarlyPackets(max_bytes=1000, max_age=2.0, clock=clock)
    early.hold(1, b"old")
    clock.now += 1.5
    early.hold(1, b"new")
    clock.now += 1.0
    assert early.take(1) == [b"new"]


@pytest.fixture
def pair():
    p = Pair()
    yield p
    p.close()


def send_raw(pair, datagrams):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for datagram in datagrams:
            sender.sendto(datagram, pair.b_ep.local)
    pair.b._on_socket(pair.b_ep)


def test_esp_that_overtakes_its_sa_is_delivered_when_the_sa_is_installed(pair):
    """The peer answered an exchange that creates a Child SA and sends on it at once; its first ESP
    packets reach us before its response does (strongSwan after a reauthentication)."""
    keys = os.urandom(36)
    sent = data(3)
    ahead = OutboundSA(0x4004, gcm(keys))
    send_raw(pair, [ahead.encapsulate(p) for p in sent])
    assert pair.b_tun.written == []
    assert pair.b.stats()["drops"]["unknown_spi"] == 3  # arrived without an SA: counted as ever
    pair.b.add_inbound("net", InboundSA(0x4004, gcm(keys)))
    assert pair.b_tun.written == sent
    stats = pair.b.stats()
    assert stats["io"]["early_in"] == 3
    assert stats["children"]["net"]["packets_in"] == 3


def test_early_packets_pass_the_same_checks_as_any_other(pair):
    keys = os.urandom(36)
    genuine = OutboundSA(0x4004, gcm(keys)).encapsulate(data(1)[0])
    forged = OutboundSA(0x4004, gcm(os.urandom(36))).encapsulate(data(1)[0])
    send_raw(pair, [forged, genuine, genuine])  # a forgery and a replay
    pair.b.add_inbound("net", InboundSA(0x4004, gcm(keys)))
    assert pair.b_tun.written == data(1)
    drops = pair.b.stats()["children"]["net"]["drops"]
    assert drops["icv"] == 1 and drops["replayed"] == 1
    assert pair.b.stats()["io"]["early_in"] == 1
