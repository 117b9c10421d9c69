"""Traps with the kernel dataplane (runtime/kernel_traps.py, runtime/traps.py): the policies a trap
installs, how a Child SA takes them over and gives them back, what stays after a refusal, and the
acquire from a real kernel in a throw-away network namespace (no kernel ESP needed: the kernel asks for
an SA before it would use one)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kernel_fakes import FakeRoutes, FakeXfrm
from netns import run_in_new_netns
from pyike.esp import TrafficSelector
from pyike.ids import EncrId
from pyike.runtime.children import DataplaneError
from pyike.runtime.kernel_dataplane import KernelDataplane, kernel_sa_pair
from pyike.runtime.traps import Traps
from pyike.runtime.xfrm import AcquireInfo, XfrmError

LOCAL_TS, REMOTE_TS = ("10.1.0.0/24",), ("10.2.0.0/24",)
PEER = ("198.51.100.1", 4500)


class FakeListener:
    def __init__(self):
        self.pending, self.closed = [], False

    def fileno(self):
        return 99

    def read(self):
        pending, self.pending = self.pending, []
        return pending

    def close(self):
        self.closed = True


class FakeLoop:
    def __init__(self):
        self.readers = {}
        self.soon = []

    def add_reader(self, fd, callback, *args):
        self.readers[fd] = (callback, args)

    def remove_reader(self, fd):
        self.readers.pop(fd, None)

    def call_soon(self, fn, *args):
        self.soon.append((fn, args))


def setup(xfrm=None):
    xfrm = xfrm or FakeXfrm()
    listeners = []

    def listener():
        listeners.append(FakeListener())
        return listeners[-1]

    dataplane = KernelDataplane([], nat_t_port=4500, xfrm=xfrm, routes=FakeRoutes(), events=listener)
    loop = FakeLoop()
    dataplane.start(loop)  # without UDP endpoints: only the kernel's events are read
    return xfrm, dataplane, loop, listeners


def trap(dataplane, on_acquire=lambda flow: None, local_ts=LOCAL_TS):
    dataplane.install_trap("c/lan", local_ts, REMOTE_TS, "192.0.2.1", PEER[0], on_acquire, ("10.1.0.1",))


def child(dataplane, spi_in=0x1001, spi_out=0x2001, local_ts=LOCAL_TS):
    event = SimpleNamespace(spi_in=spi_in, spi_out=spi_out, encr_id=EncrId.AES_GCM_16, integ_id=None, esn=False,
                            encr_key_in=b"\x01" * 36, encr_key_out=b"\x02" * 36, integ_key_in=b"",
                            integ_key_out=b"", life_time=3600.0, limits=None)  # fmt: skip
    out, inb = kernel_sa_pair(event)
    dataplane.install_child("c/lan/%08x" % spi_in, out, inb, local_ts, REMOTE_TS, PEER, True, local="192.0.2.1",
                            route_source=("10.1.0.1",), trap="c/lan")  # fmt: skip


def table(xfrm):
    """direction -> (reqid, out SPI) of each policy installed."""
    return {direction: (spec.reqid, spec.spi) for (_sel, direction), spec in xfrm.policies.items()}


def test_a_child_takes_the_traps_policies_and_reqid_over_and_gives_them_back():
    xfrm, dataplane, _loop, _listeners = setup()
    trap(dataplane)
    reqid = dataplane._traps["c/lan"].reqid
    assert table(xfrm) == {"out": (reqid, 0), "in": (reqid, 0), "fwd": (reqid, 0)}
    assert dataplane.routes.routes == [("10.2.0.0/24", "10.1.0.1", "198.51.100.1")]
    child(dataplane)  # FakeXfrm insists: UPDPOLICY for the trap's selectors, never a second NEWPOLICY
    assert table(xfrm) == {"out": (reqid, 0x2001), "in": (reqid, 0), "fwd": (reqid, 0)}
    assert set(xfrm.states) == {0x1001, 0x2001}  # the outbound state replaces the kernel's larval one
    dataplane.remove_child("c/lan/00001001")
    assert table(xfrm) == {"out": (reqid, 0), "in": (reqid, 0), "fwd": (reqid, 0)}  # the trap's again
    assert xfrm.states == {} and dataplane.routes.routes == [("10.2.0.0/24", "10.1.0.1", "198.51.100.1")]
    dataplane.remove_trap("c/lan")
    assert xfrm.policies == {} and dataplane.routes.routes == []


def test_removing_the_trap_under_a_child_leaves_the_childs_policies():
    xfrm, dataplane, _loop, _listeners = setup()
    trap(dataplane)
    child(dataplane)
    dataplane.remove_trap("c/lan")
    assert table(xfrm)["out"][1] == 0x2001
    dataplane.remove_child("c/lan/00001001")
    assert xfrm.policies == {} and xfrm.states == {}


def test_a_narrowed_child_has_policies_and_a_reqid_of_its_own():
    """Sharing the reqid would let the trap's wider policies send and accept traffic outside the
    negotiated selectors through the child's states."""
    xfrm, dataplane, _loop, _listeners = setup()
    trap(dataplane)
    trap_reqid = dataplane._traps["c/lan"].reqid
    child(dataplane, local_ts=["10.1.0.0/25"])
    assert len(xfrm.policies) == 6
    by_reqid = {}
    for spec in xfrm.policies.values():
        by_reqid.setdefault(spec.reqid, []).append(
            (spec.direction, spec.selector.src, spec.selector.dst, spec.spi)
        )
    assert sorted(by_reqid[trap_reqid]) == [("fwd", "10.2.0.0/24", "10.1.0.0/24", 0),
                                            ("in", "10.2.0.0/24", "10.1.0.0/24", 0),
                                            ("out", "10.1.0.0/24", "10.2.0.0/24", 0)]  # fmt: skip
    (child_reqid,) = set(by_reqid) - {trap_reqid}
    assert ("out", "10.1.0.0/25", "10.2.0.0/24", 0x2001) in by_reqid[child_reqid]
    dataplane.remove_child("c/lan/00001001")
    assert len(xfrm.policies) == 3 and all(spec.spi == 0 for spec in xfrm.policies.values())


def test_a_second_child_on_the_traps_selectors_is_refused_and_the_first_keeps_its_policies():
    xfrm, dataplane, _loop, _listeners = setup()
    trap(dataplane)
    child(dataplane)
    held = dict(xfrm.policies)
    with pytest.raises(XfrmError, match="File exists"):  # a NEWPOLICY, not the trap's UPDPOLICY
        child(dataplane, spi_in=0x1002, spi_out=0x2002)
    assert xfrm.policies == held and set(xfrm.states) == {0x1001, 0x2001}


def test_two_traps_on_the_same_selectors_are_refused():
    xfrm, dataplane, _loop, _listeners = setup()
    trap(dataplane)
    with pytest.raises(
        DataplaneError, match=r"trap c/other: its selectors 10\.1\.0\.0/24 -> 10\.2\.0\.0/24 are trap c/lan's"
    ):
        dataplane.install_trap("c/other", LOCAL_TS, REMOTE_TS, "192.0.2.1", PEER[0], print)
    assert len(xfrm.policies) == 3 and list(dataplane._traps) == ["c/lan"]


def test_a_trap_refused_at_any_step_leaves_nothing_and_a_peer_is_required():
    total = FakeXfrm()
    trap(setup(total)[1])
    for step in range(1, total.requests + 1):
        xfrm, dataplane, _loop, _listeners = setup(FakeXfrm(fail_at=step))
        with pytest.raises(XfrmError):
            trap(dataplane)
        assert (xfrm.policies, dataplane._traps, dataplane.routes.routes) == ({}, {}, []), step
    _xfrm, dataplane, _loop, _listeners = setup()
    with pytest.raises(DataplaneError, match="c/lan: a trap in kernel mode needs the peer's address"):
        dataplane.install_trap("c/lan", LOCAL_TS, REMOTE_TS, "192.0.2.1", None, print)


def test_acquires_reach_their_trap_and_nothing_else_escapes():
    _xfrm, dataplane, loop, listeners = setup()
    seen = []
    trap(dataplane, seen.append)
    reqid = dataplane._traps["c/lan"].reqid
    callback, _args = loop.readers[99]

    def broken(flow):
        raise RuntimeError("bug in the trap's owner")

    listeners[0].pending = [
        AcquireInfo(reqid, "192.0.2.1", "198.51.100.1", "10.1.0.10 -> 10.2.0.10"),
        AcquireInfo(reqid + 1, "192.0.2.1", "198.51.100.9", "10.1.0.10 -> 10.9.0.1"),  # not ours
        AcquireInfo(None, "192.0.2.1", "198.51.100.1", "?"),
    ]
    callback()
    assert seen == ["10.1.0.10 -> 10.2.0.10"]
    dataplane._traps["c/lan"].on_acquire = broken
    listeners[0].pending = [AcquireInfo(reqid, "192.0.2.1", "198.51.100.1", "10.1.0.10 -> 10.2.0.10")]
    callback()  # logged, not raised
    assert "c/lan" in dataplane._traps and loop.readers


def test_the_traps_of_a_kernel_dataplane_initiate_once_per_acquire_and_back_off_after_a_failure():
    _xfrm, dataplane, loop, listeners = setup()
    now = [100.0]
    initiated = []
    traps = Traps(dataplane, lambda conn, child: initiated.append((conn, child)) or True, loop.call_soon, 30.0,
                  clock=lambda: now[0])  # fmt: skip
    local_ts, remote_ts = (
        [TrafficSelector.from_network("10.1.0.0/24")],
        [TrafficSelector.from_network("10.2.0.0/24")],
    )
    assert traps.install("c", "lan", "start_action", local_ts, remote_ts, "10.1.0.1",
                         local="192.0.2.1", peer="198.51.100.1")  # fmt: skip
    reqid = dataplane._traps["c/lan"].reqid
    flow = AcquireInfo(reqid, "192.0.2.1", "198.51.100.1", "10.1.0.10 -> 10.2.0.10")
    listeners[0].pending = [flow, flow]  # two acquires before the first is answered: one initiation
    loop.readers[99][0]()
    for fn, args in loop.soon:
        fn(*args)
    assert initiated == [("c", "lan")]
    traps.conn_failed("c", "IKE_AUTH failed: AUTHENTICATION_FAILED")
    loop.soon.clear()
    listeners[0].pending = [flow]
    loop.readers[99][0]()
    assert loop.soon == []  # backing off
    now[0] += 1.5
    listeners[0].pending = [flow]
    loop.readers[99][0]()
    assert len(loop.soon) == 1
    [described] = traps.describe()
    assert (described["acquires"], described["failed_acquires"], described["packets"]) == (2, 1, 4)
    traps.remove("c", "lan", "the configuration changed")
    assert dataplane._traps == {} and xfrm_policies_of(dataplane) == {}
    dataplane.stop()
    assert listeners[0].closed and loop.readers == {}


def xfrm_policies_of(dataplane):
    return dataplane.xfrm.policies


ACQUIRE = r"""
import asyncio, json, socket, subprocess
from pyike.runtime.kernel_dataplane import KernelDataplane
from pyike.runtime.xfrm import XfrmEvents
run = lambda *argv: subprocess.run(argv, check=True, capture_output=True)
run("ip", "link", "set", "lo", "up")
run("ip", "link", "add", "wan0", "type", "veth", "peer", "name", "wan1")
for dev in ("wan0", "wan1"):
    run("ip", "link", "set", dev, "up")
run("ip", "addr", "add", "192.0.2.1/24", "dev", "wan0")
run("ip", "addr", "add", "10.1.0.1/24", "dev", "wan0")
run("ip", "route", "add", "default", "dev", "wan0")
run("sysctl", "-qw", "net.core.xfrm_acq_expires=1")  # the larval state's hard expire after 1 s
xfrm_text = lambda what: subprocess.run(["ip", "xfrm", what], capture_output=True, text=True).stdout
acquired = []
events = XfrmEvents()  # a second listener beside the dataplane's: what the kernel multicasts

async def main():
    dataplane = KernelDataplane([], nat_t_port=4500)
    dataplane.start(asyncio.get_running_loop())
    dataplane.install_trap("c/lan", ["10.1.0.0/24"], ["10.2.0.0/24"], "192.0.2.1", "198.51.100.1", acquired.append)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("10.1.0.1", 0))
    try:
        sock.sendto(b"first packet", ("10.2.0.5", 9))  # dropped by the kernel, which asks for an SA
    except OSError as exc:
        acquired.append("send: %s" % exc)
    for _ in range(50):
        if acquired:
            break
        await asyncio.sleep(0.05)
    policies, states = xfrm_text("policy"), xfrm_text("state")
    seen = []
    for _ in range(60):
        seen += [type(event).__name__ + ":" + str(getattr(event, "hard", "")) for event in events.read()]
        if any(name.startswith("ExpireInfo") for name in seen):
            break
        await asyncio.sleep(0.05)
    reconciled = dataplane.reconcile()  # after a reload: what no child and no trap owns goes
    kept = xfrm_text("policy")
    dataplane.close()
    return {"acquired": acquired, "policies": policies, "states": states, "reconciled": reconciled, "seen": seen,
            "kept": kept, "after": xfrm_text("policy")}

print(json.dumps(asyncio.run(main())))
"""


@pytest.mark.root
def test_the_kernel_asks_for_an_sa_when_a_packet_meets_a_trap():
    result = run_in_new_netns(ACQUIRE)
    assert result["acquired"] == ["10.1.0.1 -> 10.2.0.5"], result
    assert result["policies"].count("tmpl src 192.0.2.1 dst 198.51.100.1") == 1  # out
    assert result["policies"].count("tmpl src 198.51.100.1 dst 192.0.2.1") == 2  # in, fwd
    assert "spi 0x00000000" in result["states"]  # the kernel's larval state for the template
    assert result["reconciled"] == [0, 0] and result["kept"] == result["policies"]  # a reload keeps traps
    assert result["seen"] == ["AcquireInfo:", "ExpireInfo:True"], result["seen"]  # the larval state's end
    assert result["after"] == ""  # close removes the trap's policies
