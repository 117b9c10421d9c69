"""Byte, packet and sequence-number lifetimes between the dataplane and the IKE engine, without root.

First the dataplane's watch on its own (fake TUN queues, real UDP sockets on the loopback address),
then two daemons in one process: the real Daemon glue, engines and dataplanes, IKE and ESP over UDP on
127.0.0.1 and 127.0.0.2, fake TUN devices. A small rekey_bytes must rekey over and over while packets
flow both ways, and not one packet may be lost (make-before-break).
"""

from __future__ import annotations

import socket
import time

import pytest
from pyike.config.load import parse_config
from pyike.esp import OutboundSA
from pyike.ike.events import VolumeLimits
from pyike.ike.lifetimes import SEQ_MAX, SEQ_REKEY_MARGIN
from pyike.runtime.daemon import INBOUND_LINGER, Daemon
from pyike.runtime.dataplane import Dataplane
from pyike.runtime.udp import open_endpoints
from test_runtime_dataplane import FakeTun, Pair, data, gcm

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
    sa = OutboundSA(0x1001, old.cipher, seq=SEQ_MAX - 2)
    pair.a.switch_outbound("net", sa)
    pair.a.watch(sa, 7, VolumeLimits(soft_seq=SEQ_MAX - SEQ_REKEY_MARGIN))
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


# --- two daemons in one process ------------------------------------------------------------------------

LEFT_IP, RIGHT_IP = "127.0.0.1", "127.0.0.2"
PSK = "lifetimes-unit-psk-5e1c9a"


def daemon_config(me, peer, ports, child_extra):
    return {
        "settings": {
            "listen": [me],
            "ike_port": ports[0],
            "nat_t_port": ports[1],
            "control_socket": "/nonexistent",
        },
        "connections": {
            "s2s": {
                "local": {"address": me, "id": "%s.example" % me},
                "remote": {"address": peer, "id": "%s.example" % peer, "port": ports[0]},
                "psk": PSK,
                "encap": True,  # ESP in UDP: no raw ESP socket without root
                "dpd_delay": 0,
                "ike_proposals": ["aes256gcm16-prfsha256-x25519"],
                "children": {
                    "net": dict(
                        {
                            "local_ts": ["10.1.0.0/24" if me == LEFT_IP else "10.2.0.0/24"],
                            "remote_ts": ["10.2.0.0/24" if me == LEFT_IP else "10.1.0.0/24"],
                            "esp_proposals": ["aes256gcm16"],
                        },
                        **child_extra,
                    )
                },
            }
        },
    }


def free_ports():
    """Two UDP ports free on both loopback addresses (the daemons share the port numbers, as on a LAN)."""
    for _attempt in range(20):
        probes = []
        try:
            for _index in range(2):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind((LEFT_IP, 0))
            ports = tuple(p.getsockname()[1] for p in probes)
            for probe in probes:
                probe.close()
            endpoints = open_endpoints([LEFT_IP], ports) + open_endpoints([RIGHT_IP], ports)
            return ports, endpoints
        except OSError:
            for probe in probes:
                probe.close()
    raise AssertionError("no free UDP ports on the loopback addresses")


class Pod:
    """One daemon: the Daemon object with its engine, a Dataplane over a fake TUN, real UDP sockets."""

    def __init__(self, me, peer, ports, endpoints, child_extra):
        config = parse_config(daemon_config(me, peer, ports, child_extra), "<%s>" % me)
        self.daemon = Daemon("<%s>" % me, config)
        self.tun = FakeTun()
        self.endpoints = endpoints
        self.daemon.dataplane = Dataplane(self.tun, endpoints, ike_handler=self.daemon._on_ike)
        self.daemon.dataplane.limits.on_limit = self.daemon._on_volume_limit
        self.dataplane = self.daemon.dataplane
        self.engine = self.daemon.engine

    def pump(self):
        for endpoint in self.endpoints:
            self.dataplane._on_socket(endpoint)
        self.engine.tick(time.monotonic())
        self.daemon._flush(wake_timer=False)
        self.daemon._expire_lingering(time.monotonic())  # as the daemon's timer does

    def close(self):
        self.dataplane.close()
        for endpoint in self.endpoints:
            endpoint.close()
        if self.daemon._ipr is not None:
            self.daemon._ipr.close()


@pytest.fixture
def pods(request):
    child_extra = getattr(request, "param", {})
    ports, endpoints = free_ports()
    left = Pod(LEFT_IP, RIGHT_IP, ports, endpoints[:2], child_extra)
    right = Pod(RIGHT_IP, LEFT_IP, ports, endpoints[2:], child_extra)
    yield left, right
    left.close()
    right.close()


def settle(left, right, rounds=30):
    for _round in range(rounds):
        left.pump()
        right.pump()
        time.sleep(0.001)


def up(left, right):
    left.engine.initiate("s2s", None, time.monotonic())
    left.daemon._flush(wake_timer=False)
    settle(left, right)
    assert len(left.dataplane.children) == len(right.dataplane.children) == 1


def send(source, sink, packets):
    """Through source's TUN, ESP over UDP, out of sink's TUN; returns what arrived."""
    source.tun.inbox.extend(packets)
    while source.tun.inbox:
        source.dataplane._on_tun()
    for _round in range(5):
        sink.pump()
    out, sink.tun.written = sink.tun.written, []
    return out


def child_counts(pod):
    (sa,) = [sa for sa in pod.engine.sas.values() if sa.state == "ESTABLISHED"]
    return len(sa.children)


@pytest.mark.parametrize("pods", [{"rekey_bytes": 60_000, "life_bytes": 100_000}], indirect=True)
def test_a_small_rekey_bytes_rekeys_again_and_again_without_loss(pods):
    left, right = pods
    up(left, right)
    first = left.dataplane.stats()["children"]
    sent = received = 0
    for _burst in range(100):
        forth = data(8, size=1000)
        back = data(8, src="10.2.0.10", dst="10.1.0.10", size=1000)
        received += len(send(left, right, forth)) + len(send(right, left, back))
        sent += len(forth) + len(back)
        settle(left, right, rounds=3)  # the IKE exchanges go on between the bursts
    settle(left, right)
    assert received == sent == 100 * 16  # 800 kB each way through SAs of 60 kB: no loss
    counters = [pod.engine.counters for pod in (left, right)]
    rekeys = sum(c.get("volume_rekeys", 0) for c in counters)
    assert rekeys >= 12, counters
    assert not any(c.get("volume_expiries") for c in counters), counters
    assert child_counts(left) == child_counts(right) == 1
    (child_id,) = left.dataplane.children
    assert list(first) == [child_id]  # one dataplane child throughout, its SAs replaced underneath
    stats = left.dataplane.child_stats(child_id)
    assert stats["packets_out"] == stats["packets_in"] == 100 * 8
    # the inbound SAs of replaced pairs linger a moment (packets of the old SA can still be on their
    # way on the ESP socket when the DELETE arrives on the IKE socket), then go
    assert len(stats["spi_in"]) >= 1
    left.daemon._expire_lingering(time.monotonic() + INBOUND_LINGER)
    stats = left.dataplane.child_stats(child_id)
    assert len(stats["spi_in"]) == 1 and len(left.dataplane.limits) == 2
    assert not left.daemon.failures and not right.daemon.failures


@pytest.mark.parametrize("pods", [{"rekey_packets": 100, "life_packets": 400}], indirect=True)
def test_the_hard_limit_deletes_a_child_sa_whose_rekey_cannot_happen(pods):
    left, right = pods
    up(left, right)
    # the peer stops answering IKE (its IKE sockets are not read): no rekey can complete
    right.pump = lambda: None
    sent = data(120, size=100)
    send(left, right, sent[:110])
    left.pump()  # the soft limit started a rekey that goes unanswered
    assert left.engine.counters.get("volume_rekeys") == 1
    send(left, right, data(150, size=100) + data(150, size=100))
    (sa,) = left.engine.sas.values()
    (child,) = sa.children
    assert child.state == "REKEYING" and child.expire_at is not None  # the rekey gets a moment more
    left.engine.tick(child.expire_at)  # it does not come: the hard limit deletes the Child SA
    assert child.delete_sent  # DELETING


@pytest.mark.parametrize("pods", [{}], indirect=True)
def test_the_sequence_number_limit_forces_a_rekey(pods):
    """RFC 4303 §3.3.3: without ESN an ESP SA must be rekeyed before its 32-bit counter wraps."""
    left, right = pods
    up(left, right)
    (child_id,) = left.dataplane.children
    old = left.dataplane.outbound_of(child_id)
    old._seq = SEQ_MAX - SEQ_REKEY_MARGIN - 5  # as if 4 billion packets had gone through
    assert len(send(left, right, data(10))) == 10
    assert left.dataplane.limits.check(everything=True) == 1  # the daemon's slow timer
    settle(left, right)
    new = left.dataplane.outbound_of(child_id)
    assert new is not old and new.seq == 0
    assert left.engine.counters.get("volume_rekeys") == 1
    assert len(send(left, right, data(10))) == 10 and new.seq == 10
