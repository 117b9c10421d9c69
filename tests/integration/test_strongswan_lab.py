"""The lab's reference tunnel: two strongSwan gateways, LAN client to LAN client across the internet host.

This is the interop reference the project's own engine is measured against in later tests.
"""

from __future__ import annotations

import pytest
from conftest import TWO_SITES
from pings import assert_replies, assert_swan_counted
from pyike_lab.capture import Capture
from pyike_lab.strongswan import SiteToSite, StrongSwan

pytestmark = pytest.mark.root
PSK = "lab-only-psk-3f9c1e7a"


def _site(local, remote, local_addr, remote_addr, local_net, remote_net):
    return SiteToSite(
        name="s2s",
        local_addr=local_addr,
        remote_addr=remote_addr,
        local_id="%s.example" % local,
        remote_id="%s.example" % remote,
        psk=PSK,
        local_ts=[local_net],
        remote_ts=[remote_net],
    )


@pytest.fixture
def strongswan_pair(make_lab):
    lab = make_lab(TWO_SITES)
    left, right = StrongSwan(lab, "gw1"), StrongSwan(lab, "gw2")
    left.configure(
        _site("gw1", "gw2", "192.0.2.1", "198.51.100.1", "10.1.0.0/24", "10.2.0.0/24").swanctl_conf()
    )
    right.configure(
        _site("gw2", "gw1", "198.51.100.1", "192.0.2.1", "10.2.0.0/24", "10.1.0.0/24").swanctl_conf()
    )
    try:
        left.start()
        right.start()
        yield lab, left, right
    finally:
        left.stop()
        right.stop()


def test_lan_clients_ping_through_a_strongswan_tunnel(strongswan_pair):
    lab, left, right = strongswan_pair
    assert "initiate completed successfully" in left.initiate("net")
    with Capture(lab, "internet", "inet0", "ip") as wire:
        out = lab.run_in("c1", ["ping", "-c", "5", "-i", "0.1", "-w", "10", "10.2.0.10"])
    assert_replies(out, 5)
    # On the internet: ESP in UDP 4500 (kernel-libipsec always encapsulates), never the inner ICMP.
    assert wire.count("UDP-encap") + wire.count(".4500:") >= 10, wire.lines
    assert wire.count("10.1.0.10 >") + wire.count("10.2.0.10 >") == 0, wire.lines
    sas = right.list_sas()
    assert "ESTABLISHED" in sas and "INSTALLED" in sas
    assert_swan_counted(sas, 5)


def test_the_psk_does_not_leak_outside_the_hosts(strongswan_pair):
    lab, left, _right = strongswan_pair
    mode = lab.run_in("gw1", ["stat", "-c", "%a", "/etc/swanctl/swanctl.conf"]).strip()
    assert mode == "600"
    assert PSK not in left.log()


def test_a_restarted_charon_is_ready_only_when_it_answers(strongswan_pair):
    """charon leaves its VICI socket behind when it stops: a start that waited for the file alone
    sent swanctl to a stale socket (refused; the interop tests failed that way under load 6.5)."""
    lab, left, _right = strongswan_pair
    left.stop()
    assert (
        lab.run_in("gw1", ["/bin/sh", "-c", "test -e /run/charon.vici && echo stale || echo gone"]).strip()
        == "gone"
    )
    for _round in range(3):
        left.start()
        assert "IKE_SAs: 0 total" in left.swanctl("--stats")
        left.stop()
    left.start()
    assert "initiate completed successfully" in left.initiate("net")
