"""Traps and peers given as DNS names through the real daemon glue, without root: two Daemon objects in one
process (their engines, dataplanes over fake TUN devices, IKE and ESP in UDP on 127.0.0.1 and 127.0.0.2).

A packet that meets a trap brings the Child SA up and arrives (held meanwhile); acquires are one at a
time and back off after failures; the trap outlives the peer's delete; a reload and a terminate remove
the traps they should; a DNS-named peer is resolved off the loop before the IKE SA starts.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from pyike.cli import format_conns, format_traps
from pyike.config.load import parse_config
from pyike.ike.events import Failure
from pyike.runtime import traps as traps_module
from pyike.runtime.daemon import Daemon
from pyike.runtime.dataplane import Dataplane
from pyike.runtime.resolver import Resolver
from test_runtime_dataplane import FakeTun, data
from test_runtime_lifetimes import LEFT_IP, RIGHT_IP, daemon_config, free_ports, settle


class Deferred:
    """Stands in for the loop's call_soon: the test runs what the trap deferred when it wants."""

    def __init__(self):
        self.calls = []

    def call_soon(self, function, *args):
        self.calls.append((function, args))

    def run(self):
        calls, self.calls = self.calls, []
        for function, args in calls:
            function(*args)


class Clock:
    def __init__(self):
        self.now = time.monotonic()

    def __call__(self):
        return self.now


class Pod:
    """A daemon as test_runtime_lifetimes.Pod builds it, from a configuration `edit` may change."""

    def __init__(self, me, peer, ports, endpoints, edit=None):
        document = daemon_config(me, peer, ports, {})
        if edit is not None:
            edit(document["connections"]["s2s"])
        config = parse_config(document, "<%s>" % me)
        self.daemon = Daemon("<%s>" % me, config)
        self.tun = FakeTun()
        self.endpoints = endpoints
        self.dataplane = self.daemon.dataplane = Dataplane(
            self.tun, endpoints, ike_handler=self.daemon._on_ike
        )
        self.engine = self.daemon.engine
        self.deferred = Deferred()
        self.daemon.actions.start(self.deferred)
        self.traps = self.daemon.actions.traps
        self.traps.clock = self.clock = Clock()

    def pump(self):
        for endpoint in self.endpoints:
            self.dataplane._on_socket(endpoint)
        self.deferred.run()
        self.engine.tick(time.monotonic())
        self.daemon._flush(wake_timer=False)

    def send(self, packets):
        self.tun.inbox.extend(packets)
        while self.tun.inbox:
            self.dataplane._on_tun()

    def trap(self):
        (trap,) = self.traps.describe()
        return trap

    def children(self):
        return [c.name for sa in self.engine.sas.values() if sa.state == "ESTABLISHED" for c in sa.children]

    def close(self):
        self.daemon.actions.close()
        self.dataplane.close()
        for endpoint in self.endpoints:
            endpoint.close()
        if self.daemon._ipr is not None:
            self.daemon._ipr.close()


def child(**values):
    return lambda conn: conn["children"]["net"].update(values)


@pytest.fixture
def make_pods():
    made = []

    def make(left_edit=None, right_edit=None, right_alive=True):
        ports, endpoints = free_ports()
        left = Pod(LEFT_IP, RIGHT_IP, ports, endpoints[:2], left_edit)
        if not right_alive:  # a peer that never answers
            for endpoint in endpoints[2:]:
                endpoint.close()
            made.append(left)
            return left, None
        right = Pod(RIGHT_IP, LEFT_IP, ports, endpoints[2:], right_edit)
        made.extend((left, right))
        return left, right

    yield make
    for pod in made:
        pod.close()


def arrived(pod, rounds=5):
    for _round in range(rounds):
        pod.pump()
    out, pod.tun.written = pod.tun.written, []
    return out


def test_the_first_packets_bring_the_child_up_and_arrive(make_pods):
    left, right = make_pods(child(start_action="trap"))
    left.daemon._start_actions()
    assert left.trap()["state"] == "idle" and left.engine.sas == {}
    packets = data(3)
    left.send(packets)
    assert left.trap()["state"] == "acquiring" and left.trap()["held_now"] == 3
    assert left.engine.sas == {}  # the acquire runs outside the packet path
    settle(left, right)
    assert left.children() == ["net"]
    assert arrived(right) == packets  # held, then sent through the new Child SA
    trap = left.trap()
    assert (trap["acquires"], trap["sent_held"], trap["dropped"], trap["state"]) == (1, 3, 0, "idle")
    # the Child SA's policy carries the traffic now, the trap sees nothing more
    more = data(2, size=100)
    left.send(more)
    assert arrived(right) == more and left.trap()["packets"] == 3


def test_at_most_eight_packets_are_held_and_only_one_acquire_runs(make_pods):
    left, right = make_pods(child(start_action="trap"))
    left.daemon._start_actions()
    left.send(data(20))
    left.send(data(5))
    trap = left.trap()
    assert (trap["acquires"], trap["held_now"], trap["dropped"]) == (1, traps_module.HOLD_PACKETS, 17)
    assert len(left.deferred.calls) == 1
    settle(left, right)
    assert len(arrived(right)) == traps_module.HOLD_PACKETS


def test_held_packets_older_than_the_hold_time_are_dropped(make_pods):
    left, right = make_pods(child(start_action="trap"))
    left.daemon._start_actions()
    left.send(data(2))
    left.clock.now += traps_module.HOLD_SECONDS + 1
    settle(left, right)
    assert left.children() == ["net"] and arrived(right) == []
    assert left.trap()["dropped"] == 2


def test_failed_acquires_back_off_and_packets_meanwhile_are_dropped(make_pods):
    left, _right = make_pods(child(start_action="trap"), right_alive=False)
    left.daemon._start_actions()
    traps = left.traps
    left.send(data(1))
    left.pump()
    assert left.trap()["state"] == "acquiring" and len(left.engine.sas) == 1  # IKE_SA_INIT unanswered
    delays = []
    for _round in range(7):
        deadline = traps.next_deadline()
        assert deadline == pytest.approx(left.clock.now + traps.acquire_timeout)
        left.clock.now = deadline
        traps.expire(left.clock.now)
        trap = left.trap()
        assert trap["state"] == "backoff" and "no Child SA within" in trap["last_failure"]
        delays.append(trap["backoff_seconds"])
        left.send(data(3))  # during the back-off: dropped, no acquire
        assert left.trap()["acquires"] == _round + 1
        left.clock.now += trap["backoff_seconds"]
        left.send(data(1))  # after it: the next acquire
        left.pump()
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert left.trap()["dropped"] >= 7 * 3


def test_a_failure_of_the_connection_fails_its_acquire(make_pods):
    left, _right = make_pods(child(start_action="trap"), right_alive=False)
    left.daemon._start_actions()
    left.send(data(2))
    left.pump()
    left.engine.terminate("s2s", time.monotonic())  # the half-open SA goes, as after "no answer"
    left.daemon._failed(Failure("s2s", "IKE_SA_INIT", "no answer after 5 retransmits"))
    trap = left.trap()
    assert trap["state"] == "backoff" and trap["failed_acquires"] == 1 and trap["dropped"] == 2


def test_the_trap_outlives_the_peer_deleting_the_ike_sa(make_pods):
    left, right = make_pods(child(start_action="trap"))
    left.daemon._start_actions()
    left.send(data(1))
    settle(left, right)
    assert left.children() == ["net"]
    right.engine.terminate("s2s", time.monotonic())
    right.daemon._flush(wake_timer=False)
    settle(left, right)
    assert left.engine.sas == {} and left.trap()["state"] == "idle"
    packets = data(2, size=200)
    left.send(packets)
    settle(left, right)
    assert left.children() == ["net"] and arrived(right)[-2:] == packets
    assert left.trap()["acquires"] == 2


def test_close_action_trap_installs_a_trap_that_our_terminate_removes(make_pods):
    left, right = make_pods(child(close_action="trap"))
    left.daemon._start_actions()
    assert left.traps.describe() == []
    left.engine.initiate("s2s", None, time.monotonic())
    left.daemon._flush(wake_timer=False)
    settle(left, right)
    right.engine.terminate("s2s", time.monotonic())
    right.daemon._flush(wake_timer=False)
    settle(left, right)
    assert left.trap()["origin"] == "close_action"
    conns = asyncio.run(left.daemon._list_conns({}))
    assert conns[0]["child_actions"]["net"] == {
        "start_action": "none",
        "close_action": "trap",
        "trap": "idle",
    }
    asyncio.run(left.daemon._terminate({"conn": "s2s"}))
    assert left.traps.describe() == []


def test_a_reload_removes_a_trap_the_configuration_no_longer_asks_for(make_pods, tmp_path):
    left, _right = make_pods(child(start_action="trap"))
    left.daemon._start_actions()
    assert left.traps.describe()
    document = daemon_config(LEFT_IP, RIGHT_IP, (500, 4500), {})
    path = tmp_path / "pyike.json"
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    left.daemon.config_path = str(path)
    assert "reloaded" in asyncio.run(left.daemon._reload(raise_errors=True))["message"]
    assert left.traps.describe() == [] and len(left.dataplane.spd) == 0


# --- peers given as DNS names -----------------------------------------------------------------------------


def named(host, **values):
    def edit(conn):
        conn["remote"]["address"] = host
        conn["children"]["net"].update(values)

    return edit


def answers(mapping, calls=None):
    """A stand-in for getaddrinfo (the real one and /etc/hosts: test_runtime_resolver, the lab tests)."""

    def lookup(name, port, family, kind, proto):
        if calls is not None:
            calls.append(name)
        if name not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(family, kind, proto, "", (address, 0)) for address in mapping[name]]

    return lookup


async def settle_async(left, right, rounds=40):
    for _round in range(rounds):
        left.pump()
        right.pump()
        await asyncio.sleep(0.005)


def test_a_named_peer_is_resolved_before_the_ike_sa_starts(make_pods):
    left, right = make_pods(named("right.test"))
    calls = []
    left.daemon.actions.resolver = Resolver(lookup=answers({"right.test": [RIGHT_IP]}, calls))

    async def scenario():
        left.daemon._start_actions()  # a responder's look-up at load
        await settle_async(left, right, 5)
        assert left.engine.peer_addresses == {"s2s": (RIGHT_IP,)}
        left.engine.initiate("s2s", None, time.monotonic())
        left.daemon._flush(wake_timer=False)
        await settle_async(left, right)
        assert left.children() == ["net"]
        (sa,) = left.engine.sas.values()
        assert sa.remote[0] == RIGHT_IP
        conns = await left.daemon._list_conns({})
        assert (conns[0]["remote_address"], conns[0]["peer_addresses"]) == ("right.test", [RIGHT_IP])

    asyncio.run(scenario())
    assert calls == ["right.test", "right.test"]  # at load, and for the initiation


def test_a_name_that_does_not_resolve_fails_the_initiate_and_is_tried_again(make_pods):
    left, _right = make_pods(named("nowhere.test"))
    left.daemon.actions.resolver = Resolver(lookup=answers({}))

    async def scenario():
        reply = asyncio.ensure_future(left.daemon._initiate({"conn": "s2s", "wait": 5}))
        for _round in range(20):
            await asyncio.sleep(0.01)
            if reply.done():
                break
        with pytest.raises(Exception, match=r"resolve nowhere\.test failed: Name or service not known"):
            await reply
        assert list(left.engine.restarts) == [("s2s", "net")]  # the connection's first child

    asyncio.run(scenario())


def test_pyikectl_shows_traps_in_list_sas_and_list_conns(make_pods):
    left, right = make_pods(child(start_action="trap", close_action="start"))
    left.daemon._start_actions()
    left.send(data(1))
    settle(left, right)
    traps = asyncio.run(left.daemon._list_traps({}))
    assert format_traps(traps) == (
        "trap s2s/net (start_action): 10.1.0.0/24 === 10.2.0.0/24, idle; 1 acquire(s), 1 packet(s) held, 0 dropped"
    )
    conns = asyncio.run(left.daemon._list_conns({}))
    assert format_conns(conns) == (
        "s2s: 127.0.0.1 -> 127.0.0.2, children: net (start_action trap, close_action start, trap idle)"
    )
    stats = asyncio.run(left.daemon._stats({}))
    assert stats["traps"] == traps
