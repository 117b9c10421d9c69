"""Byte, packet and sequence-number lifetimes: the dataplane's watch (fake TUN queues, real UDP sockets
on the loopback address)."""

from __future__ import annotations

import pytest
from pyike.esp import OutboundSA
from pyike.ike.events import VolumeLimits
from test_runtime_dataplane import Pair, data, gcm

# --- the dataplane's watch ---------------------------------------------------------------------------


@pytest.fixture
def pair():
    p = Pair()
    p.fired = {"a": [], "b": []}
    p.a.limits.on_limit = lambda key, hard, what: p.fired["a"].append((key, hard, what))
    p.b.limits.on_limit = lambda key, hard, what: p.fired["b"].append((key, hard, what))
    yield p
    p.close()


def outbound(dataplane):
    return dataplane.outbound_of("net")


def inbound(dataplane, spi):
    return dataplane._child("net").inbound[spi]


def test_soft_then_hard_byte_limit_of_an_outbound_sa(pair):
    pair.a.watch(outbound(pair.a), 7, VolumeLimits(soft_bytes=3000, hard_bytes=6000))
    assert len(pair.a_to_b(data(2))) == 2  # 2 x 1028 bytes
    assert pair.fired["a"] == []
    pair.a_to_b(data(1))
    assert pair.fired["a"] == [(7, False, "bytes")]
    pair.a_to_b(data(1))
    assert pair.fired["a"] == [(7, False, "bytes")]  # each limit is reported once
    pair.a_to_b(data(2))
    assert pair.fired["a"] == [(7, False, "bytes"), (7, True, "bytes")]


def test_one_batch_over_both_limits_reports_the_soft_one_first(pair):
    """A rekey may still save the SA: the hard limit follows on the next check."""
    pair.a.watch(outbound(pair.a), 7, VolumeLimits(soft_packets=2, hard_packets=3))
    pair.a_to_b(data(10))
    assert pair.fired["a"] == [(7, False, "packets")]
    pair.a_to_b(data(1))
    assert pair.fired["a"] == [(7, False, "packets"), (7, True, "packets")]


def test_inbound_sas_are_watched_too(pair):
    pair.b.watch(inbound(pair.b, 0x1001), 9, VolumeLimits(soft_packets=5, hard_packets=50))
    pair.a_to_b(data(4))
    assert pair.fired["b"] == []
    pair.a_to_b(data(1))
    assert pair.fired["b"] == [(9, False, "packets")]


def test_sequence_numbers_are_checked_on_the_slow_timer_only(pair):
    sa = outbound(pair.a)
    pair.a.watch(sa, 7, VolumeLimits(soft_seq=3))
    assert pair.a.limits.counting == 0  # nothing to do after each batch
    pair.a_to_b(data(5))
    assert pair.fired["a"] == []
    assert pair.a.limits.check(everything=True) == 1
    assert pair.fired["a"] == [(7, False, "sequence numbers")]


def test_an_exhausted_sequence_number_space_is_a_hard_limit(pair):
    """RFC 4303 §3.3.3: without ESN the counter must not cycle; the SA stops and must be replaced."""
    old = outbound(pair.a)
    sa = OutboundSA(0x1001, old.cipher, seq=0xFFFFFFFF - 2)
    pair.a.switch_outbound("net", sa)
    pair.a.watch(sa, 7, VolumeLimits(soft_seq=0xFFFFFFFF - (1 << 24)))
    pair.a_to_b(data(1))
    pair.a.limits.check(everything=True)
    assert pair.fired["a"] == [(7, False, "sequence numbers")]
    assert len(pair.a_to_b(data(4))) == 1  # the last sequence number is used, then the SA refuses
    assert sa.drops.seq_overflow == 3
    pair.a.limits.check(everything=True)
    assert pair.fired["a"][-1] == (7, True, "sequence numbers")


def test_watches_end_with_their_sas(pair):
    old = outbound(pair.a)
    pair.a.watch(old, 7, VolumeLimits(soft_bytes=1))
    pair.a.watch(inbound(pair.a, 0x2002), 7, VolumeLimits(soft_bytes=1))
    assert len(pair.a.limits) == 2 and pair.a.limits.counting == 2
    pair.a.switch_outbound("net", OutboundSA(0x5005, gcm(b"k" * 36)))
    assert len(pair.a.limits) == 1
    pair.a.remove_child("net")
    assert len(pair.a.limits) == 0 and pair.a.limits.counting == 0
