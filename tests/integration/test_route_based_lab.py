"""Route-based connections (mode route) with the userspace dataplane (issue 13): a TUN device per
connection, named and addressed as its interface says, carrying what the operator routes into it.

The kernel dataplane's XFRM interfaces are proven in the VM lab (tests/vm/test_kernel_dataplane.py);
here the daemons run the userspace dataplane under the hosts' interpreter (/usr/bin/python3).
"""

from __future__ import annotations

import json
import time

import pytest
from pyike_lab.capture import Capture
from pyike_lab.lab import LabError
from pyike_lab.pyike import PyikeDaemon, site_to_site

pytestmark = pytest.mark.root
PSK = "route-based-psk-5b9e13c7d2"
LEFT = dict(host="gw1", addr="192.0.2.1", id="gw1.example", link="169.254.10.1/30")
RIGHT = dict(host="gw2", addr="198.51.100.1", id="gw2.example", link="169.254.10.2/30")
ANYTHING = ["0.0.0.0/0"]


def route_based(me, peer, start_action="none", name="ipsec0", **settings):
    conf = site_to_site("s2s", me["addr"], peer["addr"], me["id"], peer["id"], PSK, ANYTHING, ANYTHING,
                        start_action=start_action, dataplane="userspace", **settings)  # fmt: skip
    conf["connections"]["s2s"].update(
        mode="route", interface={"name": name, "addresses": [me["link"]], "mtu": 1380}
    )
    return conf


def ping(lab, host, target, source=None, count=3):
    command = ["ping", "-c", str(count), "-i", "0.2", "-w", "20", target] + (["-I", source] if source else [])
    out = lab.run_in(host, command, timeout=40)
    assert "%d packets transmitted, %d received" % (count, count) in out, out
    return out


def test_route_based_tunnels_carry_what_is_routed_into_their_tun_devices(lab, daemons):
    """Each gateway gets a TUN device ipsec0 with the configured address and MTU; nothing is routed
    into it by the daemon. A start_action trap on it initiates on the first packet the operator's route
    sends there; then LAN to LAN and interface address to interface address (a BGP session's path)
    cross only as ESP, and a stop removes the device."""
    left, right = PyikeDaemon(lab, "gw1"), PyikeDaemon(lab, "gw2")
    daemons.extend([left, right])
    right.start(route_based(RIGHT, LEFT))
    left.start(route_based(LEFT, RIGHT, start_action="trap"))
    link = lab.run_in("gw1", ["ip", "-d", "address", "show", "ipsec0"])
    assert "mtu 1380" in link and "tun" in link and ",UP" in link and "inet 169.254.10.1/30" in link, link
    routes = lab.run_in("gw1", ["ip", "route", "show", "table", "all"])
    assert "10.2.0.0/24" not in routes and "0.0.0.0/0" not in routes, routes  # the operator routes
    lab.run_in("gw1", ["ip", "route", "add", "10.2.0.0/24", "dev", "ipsec0"])
    lab.run_in("gw2", ["ip", "route", "add", "10.1.0.0/24", "dev", "ipsec0"])
    with Capture(lab, "internet", "inet0", "ip") as wire:
        ping(lab, "c1", "10.2.0.10", count=5)  # the first packet meets the trap and is held meanwhile
        ping(lab, "c2", "10.1.0.10")
        ping(lab, "gw1", "169.254.10.2", source="169.254.10.1")
    assert wire.count("10.1.0.10 >") + wire.count("10.2.0.10 >") + wire.count("169.254.10.1 >") == 0, (
        wire.lines
    )
    assert wire.count("ESP") >= 22, wire.lines
    traps = json.loads(left.ctl("list-traps", "--json"))
    assert [(t["conn"], t["acquires"], t["sent_held"]) for t in traps] == [("s2s", 1, 1)], traps
    dataplane = json.loads(left.ctl("stats", "--json"))["dataplane"]
    assert dataplane["interfaces"]["ipsec0"]["policies"] == 2, dataplane  # the trap's and the Child SA's
    (child,) = dataplane["children"].values()
    assert child["interface"] == "ipsec0" and child["packets_in"] >= 9 and child["packets_out"] >= 9, child
    left.stop()
    assert "ipsec0" not in lab.run_in("gw1", ["ip", "link", "show"])


def test_a_renamed_interface_takes_new_sas_and_one_deleted_from_outside_comes_back(lab, daemons):
    """A reload that renames the interface deletes the SAs bound to the old one (the engine alone would
    keep them: its policy knows nothing of interfaces). A device deleted with `ip link del` stops its
    traffic without the daemon spinning on the dead descriptor, and the next reload makes it again with
    the Child SA still bound to it."""
    left, right = PyikeDaemon(lab, "gw1"), PyikeDaemon(lab, "gw2")
    daemons.extend([left, right])
    left.launch(route_based(LEFT, RIGHT))
    right.start(route_based(RIGHT, LEFT))
    left.wait_ready()
    lab.run_in("gw2", ["ip", "route", "add", "10.1.0.0/24", "dev", "ipsec0"])
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    old_spis = {child["spi_in"] for sa in left.sas() for child in sa["children"]}
    left.write_config(route_based(LEFT, RIGHT, name="ipsec1"))
    assert "reloaded" in left.ctl("reload")
    assert "s2s: its mode or interface changed: deleting its SAs" in left.log()
    links = lab.run_in("gw1", ["ip", "link", "show"])
    assert "ipsec1" in links and "ipsec0" not in links, links
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    assert not old_spis & {child["spi_in"] for sa in left.sas() for child in sa["children"]}
    lab.run_in("gw1", ["ip", "route", "add", "10.2.0.0/24", "dev", "ipsec1"])
    ping(lab, "c1", "10.2.0.10")
    lab.run_in("gw1", ["ip", "link", "del", "ipsec1"])
    before = left.process()["cpu_seconds"]
    time.sleep(2.0)
    assert left.process()["cpu_seconds"] - before < 0.5  # no busy loop on the dead descriptor
    assert left.log().count("interface ipsec1: cannot read from its TUN device") == 1, left.log()
    assert left.stats()["dataplane"]["interfaces"]["ipsec1"]["broken"]
    assert "reloaded" in left.ctl("reload")
    assert "interface ipsec1 is gone" in left.log()
    lab.run_in("gw1", ["ip", "route", "add", "10.2.0.0/24", "dev", "ipsec1"])  # went with the device
    ping(lab, "c1", "10.2.0.10")
    assert left.stats()["dataplane"]["interfaces"]["ipsec1"]["broken"] == ""


def test_an_interface_name_taken_by_another_link_is_refused_and_nothing_is_left(lab, daemons):
    daemon = PyikeDaemon(lab, "gw1")
    daemons.append(daemon)
    with pytest.raises(LabError):
        daemon.start(route_based(LEFT, RIGHT, name="lo"), timeout=10.0)
    assert (
        "pyike: cannot start: TUN devices of the route-based connections: interface lo exists already and is not "
        "this daemon's: remove it or give the connection another interface name"
    ) in daemon.log(), daemon.log()
    assert "Traceback" not in daemon.log()
    assert "pyike" not in lab.run_in("gw1", ["ip", "link", "show"])  # no main TUN device left either
