"""The VM's kernel takes AES-GCM tunnel-mode ESP states and policies (what this host's kernel refuses).

Each probe installs a state and a policy with `ip xfrm` inside a lab gateway, reads them back field by
field, deletes them and checks that they are gone; the VM's root namespace never sees them. Then pyike's
own probe (runtime/xfrm.py) must find every transform, both families and ESP in UDP there, and a state
pyike installs (XFRM_STATE_AF_UNSPEC) must carry IPv6 inner packets over an IPv4 outer pair.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "plugins" / "module_utils")

# 160 bits: a 128-bit AES key and rfc4106's 32-bit salt (fixed test material, never used elsewhere).
KEY = "0x" + "0123456789abcdef" * 2 + "a1b2c3d4"
SPI = 0x0C0FFEE1

PROBES = {
    "ipv4": ("192.0.2.1", "198.51.100.1", "10.1.0.0/24", "10.2.0.0/24"),
    "ipv6": ("2001:db8:1::1", "2001:db8:2::1", "fd00:0:1::/64", "fd00:0:2::/64"),
}


@pytest.mark.parametrize("family", sorted(PROBES))
def test_kernel_takes_an_aes_gcm_tunnel_state_and_policy(shared_vm_lab, family):
    vm_lab = shared_vm_lab
    src, dst, src_net, dst_net = PROBES[family]
    vm_lab.ip_xfrm(
        "gw1", "state", "add", "src", src, "dst", dst, "proto", "esp", "spi", hex(SPI), "reqid", "7",
        "mode", "tunnel", "aead", "rfc4106(gcm(aes))", KEY, "128",
    )  # fmt: skip
    vm_lab.ip_xfrm(
        "gw1", "policy", "add", "src", src_net, "dst", dst_net, "dir", "out",
        "tmpl", "src", src, "dst", dst, "proto", "esp", "reqid", "7", "mode", "tunnel",
    )  # fmt: skip

    [state] = vm_lab.xfrm_states("gw1")
    assert (state.src, state.dst, state.proto, state.spi) == (src, dst, "esp", SPI)
    assert (state.reqid, state.mode) == (7, "tunnel")
    assert (state.aead, state.key_bits, state.icv_bits) == ("rfc4106(gcm(aes))", 160, 128)
    assert KEY in vm_lab.ip_xfrm(
        "gw1", "state", "get", "src", src, "dst", dst, "proto", "esp", "spi", hex(SPI)
    )
    assert (state.bytes, state.packets, state.encap) == (0, 0, None)
    policies = vm_lab.xfrm_policies("gw1")
    assert "src %s dst %s" % (src_net, dst_net) in policies
    assert "dir out" in policies
    assert "tmpl src %s dst %s" % (src, dst) in policies
    assert "proto esp reqid 7 mode tunnel" in policies

    # Namespaced: neither the other gateway nor the VM's root namespace has it.
    assert vm_lab.xfrm_states("gw2") == []
    root_view = subprocess.run(["ip", "xfrm", "state"], capture_output=True, text=True, check=True).stdout
    assert hex(SPI)[2:] not in root_view

    vm_lab.ip_xfrm("gw1", "state", "delete", "src", src, "dst", dst, "proto", "esp", "spi", hex(SPI))
    vm_lab.ip_xfrm("gw1", "policy", "delete", "src", src_net, "dst", dst_net, "dir", "out")
    assert vm_lab.xfrm_states("gw1") == []
    assert vm_lab.xfrm_policies("gw1").strip() == ""


def _python_in(vm_lab, host: str, code: str) -> str:
    return vm_lab.lab.run_in(
        host, ["env", "PYTHONPATH=" + MODULE_UTILS, sys.executable, "-c", code], timeout=120
    )


def test_pyikes_probe_finds_every_transform_both_families_and_esp_in_udp(shared_vm_lab):
    code = "import json; from pyike.runtime.xfrm import probe; r = probe(); print(json.dumps([r[0], r[1], r.esp]))"
    ok, reason, esp = json.loads(_python_in(shared_vm_lab, "gw1", code).splitlines()[-1])
    assert ok and esp, reason
    assert reason.startswith("kernel ESP available: ") and "over IPv4 and IPv6" in reason, reason
    assert shared_vm_lab.xfrm_states("gw1") == []  # every throw-away state removed at once


# An IPv6 flow through an SA between IPv4 gateways: the out policy selects fd00:0:1::/64 -> fd00:0:2::/64,
# its template and the state are 192.0.2.1 -> 198.51.100.1. Without XFRM_STATE_AF_UNSPEC the kernel gives
# the state the outer family and xfrm_state_look_at() never picks it for IPv6 packets (review H1).
MIXED = """
import json, socket, subprocess
from pyike.ids import EncrId
from pyike.runtime.xfrm import REQID_MIN, PolicySpec, Selector, StateSpec, Xfrm
def ip(*args):
    subprocess.run(["ip", *args], check=True)
ip("-6", "addr", "add", "fd00:0:1::1/128", "dev", "lo", "nodad")
ip("-6", "route", "add", "fd00:0:2::/64", "dev", "lo")
sent = None
try:
    with Xfrm() as xfrm:
        xfrm.add_state(StateSpec("192.0.2.1", "198.51.100.1", 0x0C0FFEE2, REQID_MIN + 9, EncrId.AES_GCM_16, bytes(20)))
        xfrm.add_policy(PolicySpec(Selector("fd00:0:1::/64", "fd00:0:2::/64"), "out", "192.0.2.1", "198.51.100.1",
                                   REQID_MIN + 9, spi=0x0C0FFEE2))
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("fd00:0:1::1", 0))
            try:
                sock.sendto(b"af-unspec", ("fd00:0:2::1", 9))
                sent = "sent"
            except OSError as exc:
                sent = "%s (errno %s)" % (exc.strerror, exc.errno)
        info = xfrm.get_state("198.51.100.1", 0x0C0FFEE2, "192.0.2.1")
        counters = xfrm.counters("198.51.100.1", 0x0C0FFEE2, "192.0.2.1")  # GETAE: what the daemon polls
        print(json.dumps({"sent": sent, "packets": info.packets, "counters": [counters.packets, counters.oseq],
                          "bytes": counters.bytes == info.bytes > 0}))
        xfrm.flush_ours()
finally:
    ip("-6", "route", "del", "fd00:0:2::/64", "dev", "lo")
    ip("-6", "addr", "del", "fd00:0:1::1/128", "dev", "lo")
"""


def test_an_ipv6_flow_uses_a_state_between_ipv4_gateways(shared_vm_lab):
    result = json.loads(_python_in(shared_vm_lab, "gw1", MIXED).splitlines()[-1])
    assert result == {"sent": "sent", "packets": 1, "counters": [1, 1], "bytes": True}, result
