"""Route-based connections in the userspace dataplane: a TUN device and an SPD per connection.

The packet tests use fake TUN queues and real UDP sockets on the loopback address (no root); the device
tests create real TUN devices in a throw-away network namespace (root).
"""

from __future__ import annotations

import os
import socket

import pytest
from netns import run_in_new_netns
from pyike.esp import InboundSA, OutboundSA
from pyike.runtime.dataplane import Dataplane, DataplaneError
from pyike.runtime.route_tuns import RouteTun
from pyike.runtime.traps import Traps
from pyike.runtime.udp import NON_ESP_MARKER, UdpEndpoint
from pyike.selectors import TrafficSelector
from runtime_packets import udp_packet
from test_runtime_dataplane import A_NET, B_NET, FakeTun, gcm

ANY = "0.0.0.0/0"
IF_ID = 7


class RoutedPair:
    """Gateways a and b, each with a main TUN and a route-based connection's TUN (if_id 7)."""

    def __init__(self):
        self.a_main, self.b_main = FakeTun(), FakeTun()
        self.a_ep, self.b_ep = UdpEndpoint("127.0.0.1", 0), UdpEndpoint("127.0.0.1", 0)
        self.a = Dataplane(self.a_main, [self.a_ep])
        self.b = Dataplane(self.b_main, [self.b_ep])
        self.a_if, self.b_if = RouteTun(FakeTun(), IF_ID), RouteTun(FakeTun(), IF_ID)
        self.a.attach(self.a_if)
        self.b.attach(self.b_if)
        self.keys = (os.urandom(36), os.urandom(36))

    def install(self, spis=(0x1001, 0x2002), child="route", if_id=IF_ID, selectors=(ANY, ANY)):
        (ab, ba), (k_ab, k_ba) = spis, self.keys
        a_ts, b_ts = selectors
        self.a.install_child(child, OutboundSA(ab, gcm(k_ab)), InboundSA(ba, gcm(k_ba)), [a_ts], [b_ts],
                             self.b_ep.local, if_id=if_id)  # fmt: skip
        self.b.install_child(child, OutboundSA(ba, gcm(k_ba)), InboundSA(ab, gcm(k_ab)), [b_ts], [a_ts],
                             self.a_ep.local, if_id=if_id)  # fmt: skip

    def a_if_to_b(self, packets):
        self.a_if.tun.inbox.extend(packets)
        self.a._on_route_tun(self.a_if)
        self.b._on_socket(self.b_ep)
        return self._take(self.b_if.tun), self._take(self.b_main)

    @staticmethod
    def _take(tun):
        out, tun.written = tun.written, []
        return out

    def close(self):
        for dataplane, endpoint in ((self.a, self.a_ep), (self.b, self.b_ep)):
            dataplane.close()
            endpoint.close()


@pytest.fixture
def routed():
    pair = RoutedPair()
    yield pair
    pair.close()


def packets(count, src="10.1.0.10", dst="10.2.0.10"):
    return [udp_packet(src, dst, payload=bytes([i]) * 300) for i in range(count)]


def test_what_is_routed_into_the_interface_crosses_to_the_peers_interface(routed):
    routed.install()
    sent = [*packets(4), udp_packet("169.254.10.1", "169.254.10.2", payload=b"bgp")]
    on_interface, on_main = routed.a_if_to_b(sent)
    assert on_interface == sent and on_main == []
    stats = routed.b.stats()
    assert (
        stats["children"]["route"]["interface"] == "fake0" and stats["children"]["route"]["packets_in"] == 5
    )
    assert stats["interfaces"]["fake0"]["if_id"] == IF_ID and stats["interfaces"]["fake0"]["policies"] == 1
    assert len(routed.a.spd) == 0 and len(routed.a_if.spd) == 1  # the policy is the interface's only


def test_the_main_tun_does_not_reach_a_route_based_child(routed):
    """0.0.0.0/0 selectors bound to an interface capture nothing that is routed elsewhere."""
    routed.install()
    routed.a_main.inbox.extend(packets(3))
    routed.a._on_tun()
    stats = routed.a.stats()
    assert stats["children"]["route"]["packets_out"] == 0
    assert stats["drops"]["spd_no_policy"] == 3


def test_an_interface_without_policies_never_falls_back_to_the_main_spd(routed):
    """A policy-based child covers the packets, but they were routed into the route-based connection's
    device, whose SPD is empty (no Child SA, no trap yet): dropped, not sent through the other child."""
    routed.install(spis=(0x3003, 0x4004), child="lan", if_id=0, selectors=(A_NET, B_NET))
    routed.a_if.tun.inbox.extend(packets(3))
    routed.a._on_route_tun(routed.a_if)
    assert routed.a.stats()["children"]["lan"]["packets_out"] == 0
    assert routed.a.stats()["interfaces"]["fake0"]["drops"]["spd_no_policy"] == 3


def test_esp_after_the_ike_message_that_installs_the_first_route_child_goes_to_its_device(routed):
    """The decision is made per packet: a Child SA that an IKE message installed earlier in the same
    socket batch counts (the peer sends ESP as soon as it has answered)."""
    k_ab, k_ba = routed.keys
    routed.a.install_child("route", OutboundSA(0x1001, gcm(k_ab)), InboundSA(0x2002, gcm(k_ba)), [ANY], [ANY],
                           routed.b_ep.local, if_id=IF_ID)  # fmt: skip

    def install_on_ike(data, source, local):
        routed.b.install_child("route", OutboundSA(0x2002, gcm(k_ba)), InboundSA(0x1001, gcm(k_ab)), [ANY],
                               [ANY], routed.a_ep.local, if_id=IF_ID)  # fmt: skip

    routed.b.ike_handler = install_on_ike
    ike = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ike.sendto(NON_ESP_MARKER + b"IKE_AUTH response", routed.b_ep.local)
    ike.close()
    sent = packets(2)
    routed.a_if.tun.inbox.extend(sent)
    routed.a._on_route_tun(routed.a_if)
    routed.b._on_socket(routed.b_ep)  # one batch: the IKE message, then the ESP
    assert routed.b_if.tun.written == sent and routed.b_main.written == []


def test_policy_based_and_route_based_children_share_the_sockets(routed):
    routed.install()
    routed.install(spis=(0x3003, 0x4004), child="lan", if_id=0, selectors=(A_NET, B_NET))
    routed.a_main.inbox.extend(packets(2))
    routed.a._on_tun()
    routed.a_if.tun.inbox.extend(packets(3, src="192.168.7.1", dst="192.168.8.1"))
    routed.a._on_route_tun(routed.a_if)
    routed.b._on_socket(routed.b_ep)
    assert len(routed.b_main.written) == 2 and len(routed.b_if.tun.written) == 3


def test_rekey_and_early_packets_keep_to_the_interface(routed):
    routed.install()
    k_new = os.urandom(36)
    new_in = InboundSA(0x5005, gcm(k_new))
    # the peer sends through its new SA before ours is installed: held (early.py), then decrypted
    routed.a.switch_outbound("route", OutboundSA(0x5005, gcm(k_new)))
    routed.a_if.tun.inbox.extend(packets(2))
    routed.a._on_route_tun(routed.a_if)
    routed.b._on_socket(routed.b_ep)
    assert routed.b_if.tun.written == [] and routed.b.stats()["drops"]["unknown_spi"] >= 1
    routed.b.add_inbound("route", new_in)
    assert len(routed.b_if.tun.written) == 2 and routed.b_main.written == []
    routed.b.remove_inbound("route", 0x1001)
    routed.b_if.tun.written = []
    on_interface, on_main = routed.a_if_to_b(packets(3))
    assert len(on_interface) == 3 and on_main == []
    assert routed.b._routed == {0x5005: routed.b_if}


def test_removal_and_detach_leave_nothing_routed(routed):
    routed.install()
    routed.b.remove_child("route")
    assert routed.b._routed == {} and len(routed.b_if.spd) == 0
    routed.install(spis=(0x6006, 0x7007), child="again")
    routed.b.detach(routed.b_if)
    assert routed.b._routed == {} and "fake0" not in routed.b.stats()["interfaces"]
    routed.b.remove_child("again")  # a reload removes the device first, then the connection's SAs


def test_an_unknown_if_id_is_refused_and_nothing_is_installed(routed):
    with pytest.raises(DataplaneError, match="no interface with if_id 99"):
        routed.install(if_id=99)
    assert routed.a.children == () and len(routed.a.sad) == 0


def test_a_trap_on_an_interface_holds_the_first_packet_and_sends_it_through_the_child(routed):
    deferred = []
    acquired = []

    def acquire(conn, child):
        acquired.append((conn, child))
        return True

    traps = Traps(routed.a, acquire, lambda fn, *args: deferred.append((fn, args)), acquire_timeout=30.0)
    any_ts = [TrafficSelector.parse(ANY)]
    assert traps.install("s2s", "route", "start_action", any_ts, any_ts, if_id=IF_ID)
    assert len(routed.a_if.spd) == 1 and len(routed.a.spd) == 0 and routed.a.routes is None
    first = packets(1)
    routed.a_if.tun.inbox.extend(first)
    routed.a._on_route_tun(routed.a_if)
    for fn, args in deferred:
        fn(*args)
    assert acquired == [("s2s", "route")]
    routed.install()
    traps.child_up("s2s", "route")
    routed.b._on_socket(routed.b_ep)
    assert routed.b_if.tun.written == first
    assert traps.remove("s2s", "route", "test") and len(routed.a_if.spd) == 1  # the Child SA's stays
    with pytest.raises(DataplaneError, match="if_id 5"):
        traps.install("s2s", "other", "start_action", any_ts, any_ts, if_id=5)


NETNS_SCRIPT = r"""
import json, subprocess
from pyike.config.model import RouteInterface
from pyike.runtime.dataplane import Dataplane
from pyike.runtime.tun import Tun
from pyike.runtime.children import DataplaneError

def link(name):
    return subprocess.run(["ip", "-o", "address", "show", "dev", name], capture_output=True, text=True).stdout

out = {}
main = Tun("pyike0")
dataplane = Dataplane(main, [])
dataplane.interfaces.sync({"vti1": RouteInterface("vti1", 11, ("169.254.1.1/30", "fd00::1/64"), 1300)})
out["created"] = subprocess.run(["ip", "-d", "link", "show", "vti1"], capture_output=True, text=True).stdout
out["addresses"] = link("vti1")
dataplane.interfaces.sync({"vti1": RouteInterface("vti1", 11, ("169.254.2.1/30",), 1350)})
out["changed"] = subprocess.run(["ip", "-d", "link", "show", "vti1"], capture_output=True, text=True).stdout
out["changed_addresses"] = link("vti1")
out["buffers"] = len(dataplane._route_tuns[11].tun._buffers[0])
for name, spec in (("new if_id", RouteInterface("vti1", 12, (), None)),
                   ("main tun", RouteInterface("pyike0", 13, (), None)),
                   ("loopback", RouteInterface("lo", 14, (), None)),
                   ("bad address", RouteInterface("vti2", 15, ("10.9.9.9/33",), None))):
    try:
        dataplane.interfaces.sync({"vti1": RouteInterface("vti1", 11, ("169.254.2.1/30",), 1350), spec.name: spec})
        out[name] = "accepted"
    except (DataplaneError, OSError, ValueError) as exc:
        out[name] = str(exc)
out["vti2 left"] = "vti2" in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
try:  # a refused reload closes what it created: vti3 goes again, vti1 stays
    dataplane.interfaces.sync({"vti1": RouteInterface("vti1", 11, ("169.254.2.1/30",), 1350),
                               "vti3": RouteInterface("vti3", 16, (), None), "lo": RouteInterface("lo", 17, (), None)})
except DataplaneError as exc:
    out["rolled back"] = [str(exc), sorted(dataplane.interfaces.ours), sorted(dataplane._route_tuns)]
dataplane.interfaces.sync({})
out["after remove"] = subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
out["attached"] = sorted(dataplane._route_tuns)
print(json.dumps(out))
"""


@pytest.mark.root
def test_real_tun_devices_are_created_changed_refused_and_removed():
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace and TUN devices)")
    out = run_in_new_netns(NETNS_SCRIPT)
    assert "mtu 1300" in out["created"] and "tun" in out["created"] and "UP" in out["created"], out["created"]
    assert "169.254.1.1/30" in out["addresses"] and "fd00::1/64" in out["addresses"], out["addresses"]
    assert "mtu 1350" in out["changed"], out["changed"]
    assert "169.254.2.1/30" in out["changed_addresses"] and "169.254.1.1" not in out["changed_addresses"]
    assert "fd00::1" not in out["changed_addresses"], out["changed_addresses"]
    assert out["buffers"] >= 1350 + 64
    assert out["new if_id"] == "interface vti1 has if_id 11; a new if_id (12) takes a restart of the daemon"
    for name in ("main tun", "loopback"):
        spec = "pyike0" if name == "main tun" else "lo"
        assert out[name] == (
            "interface %s exists already and is not this daemon's: remove it or give the connection another "
            "interface name" % spec
        )
    assert out["bad address"].startswith("interface vti2: cannot set its addresses, MTU or state"), out
    assert out["vti2 left"] is False
    assert (
        out["rolled back"][1:] == [["vti1"], [11]] and "interface lo exists already" in out["rolled back"][0]
    )
    assert "vti1" not in out["after remove"] and out["attached"] == []
