"""pyike's daemon in lab gateways: against itself and against strongSwan, in both roles.

Every test brings up real namespaces, UDP sockets and TUN devices; LAN clients ping across the
tunnel and a capture on the internet bridge shows ESP and never the inner packets.
"""

from __future__ import annotations

import sys

import pytest
from pings import assert_replies, assert_swan_counted
from pyike_lab.capture import Capture
from pyike_lab.lab import LabError
from pyike_lab.pyike import PyikeDaemon, site_to_site
from pyike_lab.strongswan import SiteToSite, StrongSwan

pytestmark = pytest.mark.root
PSK = "interop-psk-7c1d2e9f"
LEFT = dict(addr="192.0.2.1", id="gw1.example", net="10.1.0.0/24")
RIGHT = dict(addr="198.51.100.1", id="gw2.example", net="10.2.0.0/24")


def pyike_config(me, peer, psk=PSK, **kw):
    return site_to_site(
        "s2s", me["addr"], peer["addr"], me["id"], peer["id"], psk, [me["net"]], [peer["net"]], **kw
    )


def strongswan_config(
    me, peer, psk=PSK, proposals="aes256gcm16-prfsha256-x25519", esp="aes256gcm16", remote_ts=None
):
    return SiteToSite(
        "s2s",
        me["addr"],
        peer["addr"],
        me["id"],
        peer["id"],
        psk,
        [me["net"]],
        [remote_ts or peer["net"]],
        proposals=proposals,
        esp_proposals=esp,
    ).swanctl_conf()


def start_pyike(lab, daemons, host, config, python=None):
    daemon = PyikeDaemon(lab, host, python) if python else PyikeDaemon(lab, host)
    daemons.append(daemon)
    daemon.start(config)
    return daemon


def start_strongswan(lab, daemons, host, conf):
    daemon = StrongSwan(lab, host)
    daemons.append(daemon)
    daemon.configure(conf)
    daemon.start()
    return daemon


def ping_across(lab, count=5):
    # -w, not -W: once one reply has come, -W waits only two round trips for the rest, so a reply
    # delayed on a loaded machine counted as lost. -w waits for all `count` replies, sending on at the
    # interval meanwhile: "N transmitted, N received" still means not one packet was lost.
    with Capture(lab, "internet", "inet0", "ip") as wire:
        out = lab.run_in("c1", ["ping", "-c", str(count), "-i", "0.1", "-w", "10", "10.2.0.10"])
    assert_replies(out, count)
    assert wire.count("10.1.0.10 >") + wire.count("10.2.0.10 >") == 0, wire.lines
    return wire


def child_of(daemon):
    (ike,) = [sa for sa in daemon.sas() if sa["state"] == "ESTABLISHED"]
    (child,) = ike["children"]
    return ike, child


@pytest.mark.parametrize("python", ["/usr/bin/python3", sys.executable], ids=["debian-python3", "venv"])
def test_pyike_to_pyike(lab, daemons, python):
    """Under the hosts' interpreter (distro cryptography 38, pyroute2 0.7) and current PyPI versions."""
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT), python)
    right = start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT), python)
    assert "initiate completed successfully" in left.ctl("initiate", "s2s/net")
    wire = ping_across(lab)
    assert wire.count("ESP(spi=") >= 10, wire.lines  # raw ESP: no NAT between the gateways
    ike, child = child_of(left)
    assert ike["proposal"] == "aes256gcm16/prfsha256/x25519"
    assert child["packets_out"] >= 5 and child["packets_in"] >= 5
    assert child["local_ts"] == ["10.1.0.0/24"] and child["remote_ts"] == ["10.2.0.0/24"]
    _ike, peer_child = child_of(right)
    assert (peer_child["spi_in"], peer_child["spi_out"]) == (child["spi_out"], child["spi_in"])
    assert PSK not in left.log() + right.log()


def test_pyike_initiates_to_strongswan(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    wire = ping_across(lab)
    assert wire.count("UDP-encap: ESP") >= 10, wire.lines  # kernel-libipsec forces UDP encapsulation
    assert "INSTALLED" in right.list_sas()
    assert_swan_counted(right.list_sas(), 5)
    _ike, child = child_of(left)
    assert child["encap"] is True


@pytest.mark.parametrize(
    ("ike", "esp"),
    [
        ("aes256gcm16-prfsha256-x25519", "aes256gcm16"),
        ("aes256-sha256-modp2048", "aes256-sha256"),
        ("chacha20poly1305-prfsha256-ecp256", "chacha20poly1305"),
    ],
)
def test_strongswan_initiates_to_pyike(lab, daemons, ike, esp):
    start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT, ike_proposals=[ike], esp_proposals=[esp]))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT, proposals=ike, esp=esp))
    assert "initiate completed successfully" in right.initiate("net")
    ping_across(lab)
    assert_swan_counted(right.list_sas(), 5)


def test_a_restarted_strongswan_replaces_its_lost_sas_on_pyike_at_once(lab, daemons):
    """charon killed and started again initiates with INITIAL_CONTACT (RFC 7296 §2.4): pyike drops the
    IKE and Child SAs charon lost at once, not after its own DPD gives up, and traffic flows again."""
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    assert "initiate completed successfully" in right.initiate("net")
    ping_across(lab, count=2)
    (before,) = left.sas()
    right.kill()
    right.start()
    assert "initiate completed successfully" in right.initiate("net")
    ping_across(lab, count=2)
    (after,) = left.sas()  # the stale IKE SA is gone, not waiting for DPD
    assert after["ike_sa"] != before["ike_sa"], (before, after)
    assert "INITIAL_CONTACT from %s" % RIGHT["addr"] in left.log()


def test_wrong_psk_fails_on_both_sides(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    right = start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT, psk="not-the-same-psk-as-gw1"))
    with pytest.raises(LabError, match="AUTHENTICATION_FAILED"):
        left.ctl("initiate", "s2s")
    reasons = [f["reason"] for f in right.stats()["recent_failures"]]
    assert any("AUTHENTICATION_FAILED" in reason for reason in reasons), reasons
    assert left.sas() == [] and right.sas() == []
    assert PSK not in left.log() + right.log() and "not-the-same-psk-as-gw1" not in left.log() + right.log()


def test_wrong_psk_against_strongswan(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    right = start_strongswan(
        lab, daemons, "gw2", strongswan_config(RIGHT, LEFT, psk="not-the-same-psk-as-gw1")
    )
    with pytest.raises(LabError, match="AUTHENTICATION_FAILED"):
        left.ctl("initiate", "s2s")
    assert "N(AUTH_FAILED)" in right.log()
    assert left.sas() == []


def test_disjoint_selectors_give_ts_unacceptable(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT, remote_ts="10.99.0.0/24"))
    with pytest.raises(LabError, match="TS_UNACCEPTABLE"):
        left.ctl("initiate", "s2s")
    assert "N(TS_UNACCEPT)" in right.log()


@pytest.mark.parametrize("initiator", ["pyike", "strongswan"])
def test_opaque_port_selectors_against_strongswan(lab, daemons, initiator):
    """Regression: the engine narrowed OPAQUE ports (RFC 4301 §4.4.1) to an empty range, so it answered
    TS_UNACCEPTABLE or refused strongSwan's narrowed answer, although the configuration was accepted."""
    mine = pyike_config(LEFT, RIGHT)
    mine["connections"]["s2s"]["children"]["net"].update(
        local_ts=["10.1.0.0/24[udp/opaque]"], remote_ts=["10.2.0.0/24[udp]"]
    )
    left = start_pyike(lab, daemons, "gw1", mine)
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    if initiator == "pyike":
        assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    else:
        assert "initiate completed successfully" in right.initiate("net")
    _ike, child = child_of(left)
    assert (child["local_ts"], child["remote_ts"]) == (["10.1.0.0/24[udp/opaque]"], ["10.2.0.0/24[udp]"])
    assert "INSTALLED" in right.list_sas()


def test_no_common_proposal(lab, daemons):
    left = start_pyike(
        lab, daemons, "gw1", pyike_config(LEFT, RIGHT, ike_proposals=["aes128-sha256-modp2048"])
    )
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    with pytest.raises(LabError, match="NO_PROPOSAL_CHOSEN"):
        left.ctl("initiate", "s2s")
    assert "N(NO_PROP)" in right.log()


def test_strongswan_with_no_common_proposal_is_refused_by_pyike(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    right = start_strongswan(
        lab, daemons, "gw2", strongswan_config(RIGHT, LEFT, proposals="aes128-sha256-modp3072")
    )
    with pytest.raises(LabError, match="establishing CHILD_SA 'net' failed"):
        right.initiate("net", timeout=5)
    assert "received NO_PROPOSAL_CHOSEN notify error" in right.log()
    reasons = [f["reason"] for f in left.stats()["recent_failures"]]
    assert any("NO_PROPOSAL_CHOSEN" in reason for reason in reasons), reasons


def test_a_broken_reload_keeps_the_tunnel(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT))
    left.ctl("initiate", "s2s")
    ping_across(lab, count=2)
    broken = pyike_config(LEFT, RIGHT)
    broken["connections"]["s2s"]["children"]["net"]["local_ts"] = ["10.1.0.0/33"]
    left.write_config(broken)
    with pytest.raises(LabError) as refused:
        left.ctl("reload")
    assert "reload refused, the running configuration stays" in str(refused.value)
    assert "local_ts[0]" in str(refused.value)
    ping_across(lab, count=2)
    assert child_of(left)[1]["packets_out"] >= 4


LEFT6 = dict(addr="2001:db8:1::1", id="gw1.example", net="fd00:0:1::/64")
RIGHT6 = dict(addr="2001:db8:2::1", id="gw2.example", net="fd00:0:2::/64")


def ping6_across(lab, count=5):
    with Capture(lab, "internet", "inet0", "ip6 and not icmp6") as wire:
        out = lab.run_in("c1", ["ping", "-6", "-c", str(count), "-i", "0.1", "-w", "10", "fd00:0:2::a"])
    assert_replies(out, count)
    assert wire.count("fd00:0:1::a >") + wire.count("fd00:0:2::a >") == 0, wire.lines
    return wire


def test_ipv6_outer_and_inner_pyike_to_pyike(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT6, RIGHT6))
    start_pyike(lab, daemons, "gw2", pyike_config(RIGHT6, LEFT6))
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    wire = ping6_across(lab)
    assert wire.count("ESP(spi=") >= 10, wire.lines
    assert child_of(left)[1]["local_ts"] == ["fd00:0:1::/64"]


def test_ipv6_pyike_initiates_to_strongswan(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT6, RIGHT6))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT6, LEFT6))
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    ping6_across(lab)
    assert_swan_counted(right.list_sas(), 5)
