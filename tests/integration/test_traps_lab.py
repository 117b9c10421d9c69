"""Traps in the lab: start_action trap, close_action trap and start, against strongSwan and pyike.

A LAN client's ping brings the tunnel up with no initiate command; the pings lost on the way are counted
(the trap holds the first packets while the Child SA comes up); the trap outlives the peer's deletes; a
reload removes it with its routes.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from pyike_lab.lab import wait_for
from test_pyike_tunnels import LEFT, RIGHT, pyike_config, start_pyike, start_strongswan, strongswan_config

pytestmark = pytest.mark.root


def child_conf(config, **values):
    config["connections"]["s2s"]["children"]["net"].update(values)
    return config


def traps(daemon):
    return json.loads(daemon.ctl("list-traps", "--json"))


def ping(lab, count, interval="0.2"):
    """c1 pings c2 `count` times; returns how many answers came back."""
    command = "ping -c %d -i %s -W 2 10.2.0.10; true" % (count, interval)  # none received: rc 1
    out = lab.run_in("c1", ["/bin/sh", "-c", command], timeout=120)
    found = re.search(r"(\d+) received", out)
    assert found, out
    return int(found.group(1))


def installed_children(daemon):
    return [c for sa in daemon.sas() if sa["state"] == "ESTABLISHED" for c in sa["children"]]


def trap_routes(lab, host="gw1"):
    return lab.run_in(host, ["ip", "route", "show", "table", "220"])


def test_a_ping_brings_a_trapped_child_up_and_the_trap_outlives_strongswans_deletes(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT, start_action="trap"))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    (trap,) = traps(left)
    assert (trap["conn"], trap["child"], trap["origin"], trap["state"]) == (
        "s2s",
        "net",
        "start_action",
        "idle",
    )
    assert "10.2.0.0/24 dev pyike0" in trap_routes(lab)
    assert left.sas() == [] and "s2s" not in right.list_sas()

    # No initiate: c1's first ping is the acquire. The trap holds it while the Child SA comes up.
    received = ping(lab, 10)
    assert received == 10, "lost %d of 10 pings while the trap brought the tunnel up" % (10 - received)
    (trap,) = traps(left)
    assert trap["acquires"] == 1 and trap["sent_held"] >= 1 and trap["state"] == "idle", trap
    assert len(installed_children(left)) == 1 and "INSTALLED" in right.list_sas()
    assert "acquire: 10.1.0.10 -> 10.2.0.10 matches the trap" in left.log()

    # strongSwan deletes the IKE SA: the trap stays, the next ping brings the tunnel back.
    right.swanctl("--terminate", "--ike", "s2s")
    assert wait_for(lambda: left.sas() == [], 10), left.sas()
    assert "10.2.0.0/24 dev pyike0" in trap_routes(lab)
    received = ping(lab, 10)
    assert received == 10, "lost %d of 10 pings after strongSwan deleted the IKE SA" % (10 - received)
    # ... and again when it deletes only the Child SA (the IKE SA stays: CREATE_CHILD_SA brings it back)
    right.swanctl("--terminate", "--child", "net")
    assert wait_for(lambda: installed_children(left) == [], 10), left.sas()
    received = ping(lab, 10)
    assert received == 10, "lost %d of 10 pings after strongSwan deleted the Child SA" % (10 - received)
    (trap,) = traps(left)
    assert trap["acquires"] == 3 and trap["failed_acquires"] == 0, trap
    assert "trap s2s/net (start_action): 10.1.0.0/24 === 10.2.0.0/24, idle; 3 acquire(s)" in left.ctl(
        "list-sas"
    )


def test_a_reload_removes_and_changes_traps(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT, start_action="trap"))
    start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT))
    assert "10.2.0.0/24 dev pyike0" in trap_routes(lab)
    # narrower selectors: the trap is replaced by one for them
    left.write_config(child_conf(pyike_config(LEFT, RIGHT, start_action="trap"), remote_ts=["10.2.0.0/25"]))
    left.ctl("reload")
    (trap,) = traps(left)
    assert trap["remote_ts"] == ["10.2.0.0/25"], trap
    routes = trap_routes(lab)
    assert "10.2.0.0/25 dev pyike0" in routes and "10.2.0.0/24" not in routes, routes
    assert ping(lab, 3) == 3
    # start_action none: the trap and its route go (the Child SA it brought up goes with the change too)
    left.write_config(pyike_config(LEFT, RIGHT, start_action="none"))
    left.ctl("reload")
    assert traps(left) == []
    assert wait_for(lambda: "10.2.0.0" not in trap_routes(lab), 5), trap_routes(lab)
    assert ping(lab, 2, interval="0.5") == 0
    assert left.sas() == []


def test_close_action_start_brings_the_child_back_after_strongswan_deletes_it(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", child_conf(pyike_config(LEFT, RIGHT), close_action="start"))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    first = installed_children(left)[0]["spi_in"]
    right.swanctl("--terminate", "--child", "net")
    assert wait_for(lambda: [c["spi_in"] for c in installed_children(left)] not in ([], [first]), 15)
    right.swanctl("--terminate", "--ike", "s2s")
    assert wait_for(lambda: len(installed_children(left)) == 1, 15), left.sas()
    assert ping(lab, 3) == 3
    log = left.log()
    assert "CHILD_SA net closed by the peer; close_action start initiates it again in 2s" in log, log
    assert "CHILD_SA net closed by the peer; close_action start initiates it again in 4s" in log, log
    # our own terminate is no close: nothing comes back
    left.ctl("terminate", "s2s")
    time.sleep(3)
    assert left.sas() == [], left.sas()


def test_close_action_trap_between_pyikes(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", child_conf(pyike_config(LEFT, RIGHT), close_action="trap"))
    right = start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT))
    assert traps(left) == []
    left.ctl("initiate", "s2s")
    right.ctl("terminate", "s2s")  # the peer deletes the IKE SA
    assert wait_for(lambda: traps(left) != [], 10)
    (trap,) = traps(left)
    assert trap["origin"] == "close_action" and left.sas() == []
    assert ping(lab, 5) == 5
    # our own terminate removes a trap that close_action installed
    left.ctl("terminate", "s2s")
    assert traps(left) == []
    assert wait_for(lambda: "10.2.0.0" not in trap_routes(lab), 5)


ROUTE_SHARING = """
import subprocess, sys
from pyike.runtime.routes import RouteManager

def show(step):
    out = subprocess.run(["ip", "route", "show", "table", "220", "dev", "trapt0"], capture_output=True, text=True)
    sys.stdout.write("%s: %s %s\\n" % (step, routes.routes, out.stdout.strip() or "no route"))

routes = RouteManager("trapt0")
routes.add("10.9.0.0/24", "10.1.0.1")  # the trap's route, our LAN address as source
routes.add("10.9.0.0/24", None)  # a narrowed Child SA's: no address of ours in its selectors
show("both")
routes.remove("10.9.0.0/24", None)  # that Child SA goes
show("trap")
routes.add("10.9.0.0/24", None)
routes.remove("10.9.0.0/24", "10.1.0.1")  # the trap goes first: the route stays, without the source
show("child")
routes.add("10.9.0.0/24", "10.1.0.1")  # a source beats none
show("again")
routes.cleanup()
show("cleanup")
"""


def test_a_trap_route_survives_a_child_sa_route_with_another_source(lab):
    """The kernel keeps one route per destination in table 220; RouteManager counts users per
    destination and source. When one user goes, the route stays for the others, with a source while
    one of them wants it."""
    from pyike_lab.pyike import MODULE_UTILS

    lab.run_in("gw1", ["ip", "tuntap", "add", "mode", "tun", "name", "trapt0"])
    lab.run_in("gw1", ["ip", "link", "set", "trapt0", "up"])
    out = lab.run_in("gw1", ["env", "PYTHONPATH=" + MODULE_UTILS, "/usr/bin/python3", "-c", ROUTE_SHARING])
    steps = dict(line.split(": ", 1) for line in out.splitlines())
    both = "[('10.9.0.0/24', '10.1.0.1'), ('10.9.0.0/24', None)] 10.9.0.0/24 proto static src 10.1.0.1"
    assert steps["both"].startswith(both), out  # then "linkdown": nothing reads the TUN device
    assert steps["trap"].startswith("[('10.9.0.0/24', '10.1.0.1')] 10.9.0.0/24 proto static src 10.1.0.1"), (
        out
    )
    assert steps["child"].startswith("[('10.9.0.0/24', None)] 10.9.0.0/24 proto static"), out
    assert "src" not in steps["child"], out
    assert steps["again"].startswith(both), out
    assert steps["cleanup"] == "[] no route", out
