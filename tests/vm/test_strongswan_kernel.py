"""Two strongSwan 5.9.8 peers with kernel-netlink: the tunnel's ESP is the VM kernel's XFRM, not libipsec.

The reference the XFRM backend of pyike is measured against: charon installs AES-GCM tunnel-mode states
and policies, the LAN clients ping across, the kernel's SA counters move, and the wire carries plain
ESP (no UDP encapsulation, which kernel-libipsec would force) and never the inner ICMP.
"""

from __future__ import annotations

import re

from pings import assert_replies
from pyike_lab.capture import Capture

PINGS = 5


def _spis(list_sas: str):
    """The inbound and outbound SPIs of the installed children in `swanctl --list-sas` output."""
    return {int(spi, 16) for spi in re.findall(r"\b(?:in|out) +([0-9a-f]{8}),", list_sas)}


def test_strongswan_kernel_netlink_tunnel_carries_pings_through_kernel_esp(vm_lab):
    left = vm_lab.strongswan("gw1")
    right = vm_lab.strongswan("gw2")
    assert "initiate completed successfully" in left.initiate("net", timeout=30)

    with Capture(vm_lab.lab, "internet", "inet0", "ip") as wire:
        out = vm_lab.ping("c1", "c2", count=PINGS)
    assert_replies(out, PINGS)

    # Plain ESP between the gateways in both directions, no ESP-in-UDP, no inner ICMP on the internet.
    assert wire.count("192.0.2.1 > 198.51.100.1: ESP") >= PINGS, wire.lines
    assert wire.count("198.51.100.1 > 192.0.2.1: ESP") >= PINGS, wire.lines
    assert wire.count(".4500") == 0, wire.lines
    assert wire.count("10.1.0.10 >") + wire.count("10.2.0.10 >") == 0, wire.lines

    for gateway, charon in (("gw1", left), ("gw2", right)):
        sas = charon.list_sas()
        assert "ESTABLISHED" in sas and "INSTALLED, TUNNEL" in sas, sas
        assert "UDP_ENCAP" not in sas, sas
        states = vm_lab.xfrm_states(gateway)
        assert len(states) == 2, states
        assert {state.spi for state in states} == _spis(sas)
        for state in states:
            assert (state.proto, state.mode, state.encap) == ("esp", "tunnel", None), state
            # aes256gcm16: a 256-bit key + 32-bit salt, 128-bit ICV.
            assert (state.aead, state.key_bits, state.icv_bits) == ("rfc4106(gcm(aes))", 288, 128), state
            assert state.packets >= PINGS and state.bytes >= PINGS * 84, state
        assert "proto esp" in vm_lab.xfrm_policies(gateway)
