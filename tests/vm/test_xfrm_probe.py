"""The VM's kernel takes AES-GCM tunnel-mode ESP states and policies (what this host's kernel refuses).

Each probe installs a state and a policy with `ip xfrm` inside a lab gateway, reads them back field by
field, deletes them and checks that they are gone; the VM's root namespace never sees them.
"""

from __future__ import annotations

import subprocess

import pytest

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
