"""ConnectionActions with the kernel dataplane: a start_action trap names the IKE addresses in its policy
templates, and a peer given as a DNS name gets its trap once the name has resolved (runtime/actions.py)."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

from kernel_fakes import FakeRoutes, FakeXfrm
from pyike.esp import TrafficSelector
from pyike.runtime.actions import ConnectionActions
from pyike.runtime.kernel_dataplane import KernelDataplane
from pyike.runtime.resolver import Resolver


class Events:
    def fileno(self):
        return 99

    def read(self):
        return []

    def close(self):
        pass


class Loop:
    def add_reader(self, *args):
        pass

    def remove_reader(self, fd):
        pass


def policy(remote_address=None, remote_host=None):
    child = SimpleNamespace(name="lan", start_action="trap", close_action="none",
                            local_ts=[TrafficSelector.from_network("10.1.0.0/24")],
                            remote_ts=[TrafficSelector.from_network("10.2.0.0/24")])  # fmt: skip
    return SimpleNamespace(name="c", local_address="192.0.2.1", remote_address=remote_address,
                           remote_host=remote_host, dpd_action="clear", children={"lan": child})  # fmt: skip


def actions_for(conn_policy, lookups, interface=None):
    engine = SimpleNamespace(policies={"c": conn_policy}, peer_addresses={}, sas={},
                             retransmit=SimpleNamespace(span=lambda: 10.0))  # fmt: skip
    engine.set_peer_addresses = engine.peer_addresses.__setitem__
    dataplane = KernelDataplane([], nat_t_port=4500, xfrm=FakeXfrm(), routes=FakeRoutes(), events=Events)
    dataplane.start(Loop())
    failures = []
    config = SimpleNamespace(connections={"c": SimpleNamespace(interface=interface)})
    daemon = SimpleNamespace(engine=engine, dataplane=dataplane, config=config, _flush=lambda: None,
                             _failed=failures.append)  # fmt: skip

    def lookup(host, port, family, *args):
        lookups.append(host)
        return [(family, socket.SOCK_DGRAM, 17, "", ("198.51.100.7", 0))]

    return ConnectionActions(daemon, lambda ts: None, Resolver(lookup=lookup)), dataplane, failures


def templates(dataplane):
    return sorted(
        {(spec.direction, spec.tmpl_src, spec.tmpl_dst) for spec in dataplane.xfrm.policies.values()}
    )


def test_a_start_action_trap_names_the_ike_addresses_in_its_templates():
    async def run():
        actions, dataplane, failures = actions_for(policy(remote_address="198.51.100.1"), [])
        actions.start(asyncio.get_running_loop())
        actions.apply_start_actions()
        installed = templates(dataplane)
        actions.close()
        return installed, failures, dataplane

    found, failures, dataplane = asyncio.run(run())
    assert found == [("fwd", "198.51.100.1", "192.0.2.1"), ("in", "198.51.100.1", "192.0.2.1"),
                     ("out", "192.0.2.1", "198.51.100.1")]  # fmt: skip
    assert failures == [] and dataplane._traps == {}  # close removed the trap


def test_a_dns_peers_trap_waits_for_the_name_then_names_the_resolved_address():
    lookups = []

    async def run():
        actions, dataplane, failures = actions_for(policy(remote_host="gw2.example"), lookups)
        actions.start(asyncio.get_running_loop())
        actions.apply_start_actions()
        waiting = templates(dataplane)
        for _attempt in range(100):
            if dataplane._traps:
                break
            await asyncio.sleep(0.01)
        return waiting, templates(dataplane), failures

    waiting, found, failures = asyncio.run(run())
    assert waiting == [] and failures == []  # no failure for a name not resolved yet
    assert lookups == ["gw2.example"]
    assert ("out", "192.0.2.1", "198.51.100.7") in found and len(found) == 3


def test_a_route_based_connections_trap_takes_only_its_interfaces_traffic():
    async def run():
        actions, dataplane, failures = actions_for(policy(remote_address="198.51.100.1"), [],
                                                   interface=SimpleNamespace(if_id=7))  # fmt: skip
        actions.start(asyncio.get_running_loop())
        actions.apply_start_actions()
        return [spec.selector.if_id for spec in dataplane.xfrm.policies.values()], failures

    if_ids, failures = asyncio.run(run())
    assert if_ids == [7, 7, 7] and failures == []
