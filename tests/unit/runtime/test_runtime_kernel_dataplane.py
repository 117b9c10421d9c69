"""The kernel dataplane's choices and what it asks of the kernel, on a kernel without ESP (this machine):
the dataplane choice, the policies of a Child SA, the kernel's refusal reported with its reason, and the
bookkeeping of installs, rekeys and failures against a recording XFRM table (:class:`FakeXfrm`) that
can refuse any request. The states themselves are proven in the VM (tests/vm/test_kernel_*.py)."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest
from kernel_fakes import FakeRoutes, FakeXfrm
from netns import run_in_new_netns
from pyike.esp import TrafficSelector
from pyike.ids import EncrId
from pyike.ike.events import VolumeLimits
from pyike.ike.lifetimes import SEQ_MAX
from pyike.runtime.children import DataplaneError
from pyike.runtime.choice import DataplaneUnavailable, choose_dataplane
from pyike.runtime.installer import ChildSaInstaller
from pyike.runtime.kernel_dataplane import (
    LIFETIME_MARGIN,
    KernelChild,
    KernelDataplane,
    kernel_sa_pair,
)
from pyike.runtime.xfrm import ExpireInfo, XfrmError
from pyike.runtime.xfrm_msg import XFRM_INF
from pyike.runtime.xfrm_selectors import _pair_selectors, _ports

NO_ESP = "kernel ESP unavailable: XFRM_MSG_NEWSA for esp: Requested type not found (errno 93)"


def test_auto_takes_the_kernel_only_when_the_probe_installed_a_state():
    def yes():
        return True, "kernel ESP available: ..."

    def no():
        return False, NO_ESP

    assert choose_dataplane("auto", no).as_dict() == {
        "mode": "userspace",
        "setting": "auto",
        "reason": "auto: " + NO_ESP,
    }
    assert choose_dataplane("auto", yes).mode == "kernel"
    assert choose_dataplane("kernel", yes).mode == "kernel"

    def never():
        raise AssertionError("userspace must not probe the kernel")

    assert choose_dataplane("userspace", never).reason == "settings.dataplane is userspace"
    with pytest.raises(DataplaneUnavailable) as caught:
        choose_dataplane("kernel", no)
    assert str(caught.value).startswith(
        "settings.dataplane is kernel, but " + NO_ESP + "; set settings.dataplane"
    )


def test_port_ranges_become_masks_as_strongswan_computes_them():
    assert _ports(0, 65535) == (0, 0)
    assert _ports(443, 443) == (443, 0xFFFF)
    assert _ports(1024, 2047) == (1024, 0xFC00)  # an aligned range is exact
    assert _ports(1000, 1100) == (0, 0xF800)  # widened to the common leading bits (0-2047)


def test_selectors_of_a_pair_cover_ranges_with_prefixes():
    local = TrafficSelector.from_network("10.1.0.0/24")
    remote = TrafficSelector(
        4,
        int.from_bytes(bytes([10, 2, 0, 0]), "big"),
        int.from_bytes(bytes([10, 2, 0, 2]), "big"),
        6,
        0,
        65535,
    )
    got = [(s.src, s.dst, s.proto, s.dport, s.dport_mask) for s, _back in _pair_selectors(local, remote)]
    assert got == [("10.1.0.0/24", "10.2.0.0/31", 6, 0, 0), ("10.1.0.0/24", "10.2.0.2/32", 6, 0, 0)]


def test_policies_of_a_child_name_the_outbound_spi_in_the_out_template():
    dataplane = KernelDataplane.__new__(KernelDataplane)  # no socket: only the policy layout is asked
    child = KernelChild("c", 0x70790001, "192.0.2.1", ("198.51.100.1", 4500), True,
                        (TrafficSelector.from_network("10.1.0.0/24"),), (TrafficSelector.from_network("10.2.0.0/24"),))  # fmt: skip

    class Out:
        spi = 0xC0FFEE01

    child.outbound = Out()
    specs = dataplane._policy_specs(child)
    got = [
        (s.direction, s.selector.src, s.selector.dst, s.tmpl_src, s.tmpl_dst, s.spi, s.selector.priority())
        for s in specs
    ]
    assert got == [
        ("out", "10.1.0.0/24", "10.2.0.0/24", "192.0.2.1", "198.51.100.1", 0xC0FFEE01, 375423),
        ("in", "10.2.0.0/24", "10.1.0.0/24", "198.51.100.1", "192.0.2.1", 0, 375423),
        ("fwd", "10.2.0.0/24", "10.1.0.0/24", "198.51.100.1", "192.0.2.1", 0, 375423),
    ]


SCRIPT = r"""
import json, subprocess
from pyike.esp import TrafficSelector
from pyike.ids import EncrId
from pyike.runtime.kernel_dataplane import KernelDataplane, KernelSA
from pyike.runtime.xfrm import probe
dataplane = KernelDataplane([], nat_t_port=4500)
from pyike.ids import IntegId
out = KernelSA(0xC0FFEE01, EncrId.AES_CBC, bytes(16), IntegId.HMAC_SHA2_256_128, bytes(32), True, outbound=True)
inb = KernelSA(0xC0FFEE02, EncrId.AES_CBC, bytes(16), IntegId.HMAC_SHA2_256_128, bytes(32), True)
result = {"probe": probe()}
try:
    dataplane.install_child("c", out, inb, ["10.1.0.0/24"], ["10.2.0.0/24"], ("198.51.100.1", 4500), True, local="192.0.2.1")
except OSError as exc:
    result["error"] = str(exc)
result["children"] = list(dataplane.children)
result["states"] = subprocess.run(["ip", "xfrm", "state"], capture_output=True, text=True).stdout
result["policies"] = subprocess.run(["ip", "xfrm", "policy"], capture_output=True, text=True).stdout
dataplane.close()
print(json.dumps(result))
"""


@pytest.mark.root
def test_the_kernels_refusal_names_the_request_and_reason():
    result = run_in_new_netns(SCRIPT)
    if result["probe"][0]:
        pytest.skip("this kernel has ESP: the VM tests prove installs (tests/vm/test_kernel_*.py)")
    assert (
        result["error"] == "XFRM_MSG_NEWSA esp SPI c0ffee02 to 192.0.2.1: Requested type not found (errno 93)"
    )
    assert result["children"] == [] and result["states"] == "" and result["policies"] == ""


# --- bookkeeping against a recording XFRM table (kernel_fakes.py) -----------------------------------
LOCAL_TS, REMOTE_TS = ["10.1.0.0/24", "fd01::/64"], ["10.2.0.0/24", "fd02::/64"]
PEER = ("198.51.100.1", 4500)


def pair(spi_in, spi_out, esn=False, life_time=3960.0, limits=None):
    event = SimpleNamespace(spi_in=spi_in, spi_out=spi_out, encr_id=EncrId.AES_GCM_16, integ_id=None, esn=esn,
                            encr_key_in=b"\x01" * 36, encr_key_out=b"\x02" * 36, integ_key_in=b"", integ_key_out=b"",
                            life_time=life_time, limits=limits)  # fmt: skip
    return kernel_sa_pair(event)


def kernel(xfrm):
    return KernelDataplane([], nat_t_port=4500, xfrm=xfrm, routes=FakeRoutes())


def install(dataplane, out, inb, **kw):
    dataplane.install_child("c", out, inb, LOCAL_TS, REMOTE_TS, ("198.51.100.1", 4500), True, local="192.0.2.1",
                            route_source=("10.1.0.1", "fd01::1"), **kw)  # fmt: skip


def test_an_install_refused_at_any_step_leaves_nothing_installed():
    total = FakeXfrm()
    install(kernel(total), *pair(0x1001, 0x2001))
    assert len(total.states) == 2 and len(total.policies) == 6  # 2 families x out/in/fwd
    for step in range(1, total.requests + 1):
        xfrm = FakeXfrm(fail_at=step)
        dataplane = kernel(xfrm)
        with pytest.raises(XfrmError):
            install(dataplane, *pair(0x1001, 0x2001))
        assert (xfrm.states, xfrm.policies, dataplane.children, dataplane.routes.routes) == (
            {},
            {},
            (),
            [],
        ), step


def test_states_carry_the_volume_limits_a_time_backstop_and_the_keys_leave_python_after_install():
    xfrm = FakeXfrm()
    dataplane = kernel(xfrm)
    out, inb = pair(
        0x1001, 0x2001, limits=VolumeLimits(soft_bytes=900, hard_bytes=1000, soft_seq=SEQ_MAX - 5)
    )
    install(dataplane, out, inb)
    sent, received = xfrm.states[0x2001], xfrm.states[0x1001]
    assert sent.hard_seconds == received.hard_seconds == 3960 + LIFETIME_MARGIN
    assert sent.soft_seconds == received.soft_seconds == 0  # the engine rekeys by time itself
    assert (sent.soft_bytes, sent.hard_bytes) == (received.soft_bytes, received.hard_bytes) == (900, 1000)
    assert (sent.soft_packets, sent.hard_packets) == (SEQ_MAX - 5, SEQ_MAX)  # only the sender numbers
    assert (received.soft_packets, received.hard_packets) == (XFRM_INF, XFRM_INF)
    assert (out.encr_key, inb.encr_key) == (b"", b"")
    assert dataplane.routes.routes == [("10.2.0.0/24", "10.1.0.1", "198.51.100.1"),
                                       ("fd02::/64", "fd01::1", "198.51.100.1")]  # fmt: skip


def test_sequence_numbers_and_volumes_fire_from_the_kernels_counters():
    xfrm = FakeXfrm()
    dataplane = kernel(xfrm)
    fired = []
    dataplane.limits.on_limit = lambda key, hard, what: fired.append((key, hard, what))
    limits = VolumeLimits(soft_seq=SEQ_MAX - 5)
    out, inb = pair(0x1001, 0x2001, limits=limits)
    install(dataplane, out, inb)
    dataplane.watch(inb, 0x1001, limits)
    dataplane.watch(out, 0x1001, limits)
    assert dataplane.limits.check(everything=True) == 0
    xfrm.packets_by_spi[0x2001] = SEQ_MAX - 5
    assert dataplane.limits.check(everything=True) == 1
    xfrm.packets_by_spi[0x2001] = SEQ_MAX
    assert dataplane.limits.check(everything=True) == 1
    assert fired == [(0x1001, False, "sequence numbers"), (0x1001, True, "sequence numbers")]
    xfrm.fail_at, xfrm.fail_errno = (
        xfrm.requests + 1,
        errno.ETIMEDOUT,
    )  # one unanswered GETSA: logged, no raise
    assert dataplane.limits.check(everything=True) == 0
    assert "error" not in dataplane.stats()["children"]["c"]


def test_the_kernels_expires_reach_the_engine_once_and_only_for_our_states():
    xfrm = FakeXfrm()
    dataplane = kernel(xfrm)
    fired = []
    dataplane.limits.on_limit = lambda key, hard, what: fired.append((key, hard, what))
    limits = VolumeLimits(soft_bytes=900, hard_bytes=1000, soft_packets=50)
    out, inb = pair(0x1001, 0x2001, limits=limits)
    install(dataplane, out, inb)
    dataplane.watch(inb, 0x1001, limits)
    dataplane.watch(out, 0x1001, limits)

    def expire(spi, dst, hard, nbytes, packets=1):
        dataplane._expired(ExpireInfo(spi, "x", dst, 0, hard, nbytes, packets))

    expire(0x2001, "198.51.100.1", False, 950)  # outbound, soft, by bytes: rekey under the inbound SPI
    expire(0x2001, "198.51.100.1", False, 960)  # a second soft one: already reported
    expire(0x1001, "192.0.2.1", False, 10, packets=50)
    expire(0x2001, "192.0.2.1", True, 1000)  # the SPI, but not our destination for it
    expire(0x7777, "198.51.100.1", True, 1000)  # not ours
    expire(0x1001, "192.0.2.1", True, 10, packets=3)  # the time backstop: the kernel deleted the state
    assert fired == [(0x1001, False, "bytes"), (0x1001, False, "packets"), (0x1001, True, "seconds")]
    xfrm.packets_by_spi[0x2001] = 9  # 900 octets: the soft byte limit the expire reported already
    assert dataplane.limits.check(everything=True) == 0  # the poll reports nothing twice
    assert out.traffic.bytes == 900 and inb.traffic.packets == 3  # a hard expire's counters are the last


def test_a_state_the_kernel_deleted_without_an_expire_event_counts_as_a_hard_expiry():
    """A lost XFRM_MSG_EXPIRE: the poll finds the state gone (ESRCH) or a larval state with its SPI
    (counters back at 0), reports a hard expiry once, and reads it no more."""
    xfrm = FakeXfrm()
    dataplane = kernel(xfrm)
    fired = []
    dataplane.limits.on_limit = lambda key, hard, what: fired.append((key, hard, what))
    limits = VolumeLimits(soft_bytes=90000, hard_bytes=100000)
    out, inb = pair(0x1001, 0x2001, limits=limits)
    install(dataplane, out, inb)
    dataplane.watch(inb, 0x1001, limits)
    dataplane.watch(out, 0x1001, limits)
    xfrm.packets_by_spi.update({0x1001: 50, 0x2001: 50})
    assert dataplane.limits.check(everything=True) == 0 and out.traffic.packets == 50
    del xfrm.states[0x1001]  # deleted by the kernel at its hard limit
    xfrm.packets_by_spi[0x2001] = 0  # a larval state that took the outbound SPI
    dataplane.limits.check(everything=True)
    assert sorted(fired) == [(0x1001, True, "lifetime (the kernel deleted the state)")] * 2
    requests = xfrm.requests
    dataplane.limits.check(everything=True)
    assert len(fired) == 2 and xfrm.requests == requests  # gone: not read again, not reported again


def mid_rekey():
    """A child installed with SA pair 1 and the inbound SA of pair 2 added (a rekey before its switch)."""
    xfrm = FakeXfrm()
    dataplane = kernel(xfrm)
    out1, in1 = pair(0x1001, 0x2001)
    out2, in2 = pair(0x1002, 0x2002)
    install(dataplane, out1, in1)
    dataplane.add_inbound("c", in2)
    return xfrm, dataplane, out1, out2


def test_rekey_keeps_the_old_outbound_state_until_its_inbound_partner_goes():
    xfrm, dataplane, out1, out2 = mid_rekey()
    assert dataplane.switch_outbound("c", out2) is out1
    assert xfrm.out_spis() == {0x2002} and 0x2001 in xfrm.states  # the old one still numbers on
    assert dataplane.switch_outbound("c", out1) is out2  # back to a kept one: no second NEWSA
    assert xfrm.out_spis() == {0x2001} and set(xfrm.states) == {0x1001, 0x1002, 0x2001, 0x2002}
    dataplane.switch_outbound("c", out2)
    dataplane.remove_inbound("c", 0x1001)
    assert set(xfrm.states) == {0x1002, 0x2002}
    with pytest.raises(DataplaneError, match="was removed from the kernel; it needs a rekey"):
        dataplane.switch_outbound("c", out1)
    dataplane.remove_child("c")
    assert (xfrm.states, xfrm.policies, dataplane.routes.routes) == ({}, {}, [])


def test_a_refused_outbound_switch_leaves_the_policies_and_states_as_they_were():
    xfrm, dataplane, out1, out2 = mid_rekey()
    xfrm.fail_at = xfrm.requests + 3  # NEWSA, the first UPDPOLICY, then the second is refused
    with pytest.raises(XfrmError):
        dataplane.switch_outbound("c", out2)
    assert xfrm.out_spis() == {0x2001} and set(xfrm.states) == {0x1001, 0x1002, 0x2001}
    assert dataplane.outbound_of("c") is out1
    assert {s.spi for s in dataplane._children["c"].policies if s.direction == "out"} == {0x2001}


def test_icmp_selectors_put_type_and_code_where_the_kernel_reads_them():
    icmp = TrafficSelector(4, int.from_bytes(bytes([10, 1, 0, 0]), "big"), int.from_bytes(bytes([10, 1, 0, 255]), "big"),
                           1, 8 << 8, 8 << 8)  # echo request, code 0 (RFC 7296 §3.13.1)  # fmt: skip
    anything = TrafficSelector(4, int.from_bytes(bytes([10, 2, 0, 0]), "big"),
                               int.from_bytes(bytes([10, 2, 0, 255]), "big"), 1, 0, 65535)  # fmt: skip
    ((out_sel, in_sel),) = _pair_selectors(icmp, anything)
    assert (out_sel.sport, out_sel.sport_mask, out_sel.dport, out_sel.dport_mask) == (8, 0xFFFF, 0, 0xFFFF)
    assert (in_sel.sport, in_sel.sport_mask, in_sel.dport, in_sel.dport_mask) == (8, 0xFFFF, 0, 0xFFFF)
    ((out_sel, _in),) = _pair_selectors(anything, anything)
    assert (out_sel.sport_mask & 0xFF, out_sel.dport_mask) == (0, 0)  # any type, any code


class Installer(ChildSaInstaller):
    """The daemon's Child SA bookkeeping over a kernel dataplane, without the daemon."""

    def __init__(self, dataplane):
        self.dataplane = dataplane
        self._children, self._outbound, self._lingering = {}, {}, []


def test_a_hard_expired_outbound_awaiting_the_peers_delete_gives_way_to_the_new_pair():
    """A rekey we answered: the new pair waits for the peer's DELETE while the old outbound SA sends.
    Should the kernel delete that SA at its hard limit meanwhile, the new pair carries the traffic now;
    and the deleted SA is never switched back to."""
    xfrm, dataplane, out1, out2 = mid_rekey()
    installer = Installer(dataplane)
    installer._children.update({0x1001: "c", 0x1002: "c"})
    installer._outbound.update({0x1001: ("c", out1, PEER), 0x1002: ("c", out2, PEER)})
    installer._outbound_gone(0x1002)  # not the one sending: nothing to do
    assert xfrm.out_spis() == {0x2001}
    installer._outbound_gone(0x1001)
    assert xfrm.out_spis() == {0x2002}
    out1.gone = True
    with pytest.raises(DataplaneError, match="deleted by the kernel at its hard lifetime"):
        dataplane.switch_outbound("c", out1)
    assert xfrm.out_spis() == {0x2002}
