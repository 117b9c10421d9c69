"""Lab hosts: real namespaces, links and routes; destroy leaves nothing behind."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import TWO_SITES
from pyike_lab.lab import Lab, LabError, nsenter_argv, run
from pyike_lab.plan import build_plan

pytestmark = pytest.mark.root


def _holders_of(lab_name):
    marker = ("pyike-lab-holder:%s/" % lab_name).encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    if marker in handle.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def _mounts_mentioning(text):
    with open("/proc/self/mounts") as handle:
        return [line for line in handle if text in line]


def test_two_sites_route_through_the_internet_host(make_lab):
    lab = make_lab(TWO_SITES)
    assert lab.run_in("gw1", ["hostname"]).strip() == "gw1"
    # Gateway to gateway across the routed internet host; LAN client to its own gateway's WAN side.
    assert "1 received" in lab.run_in("gw1", ["ping", "-c", "1", "-W", "2", "198.51.100.1"])
    assert "1 received" in lab.run_in("c1", ["ping", "-c", "1", "-W", "2", "192.0.2.1"])
    trace = lab.run_in("gw1", ["ip", "route", "get", "198.51.100.1"])
    assert "via 192.0.2.254 dev wan0" in trace
    # Each host sees its own interfaces in /sys, its own /run, and a private copy of /etc.
    assert sorted(lab.run_in("c1", ["ls", "/sys/class/net"]).split()) == ["eth0", "lo"]
    lab.run_in("gw1", ["sh", "-c", "echo gw1-only > /etc/pyike-lab-probe && touch /run/probe"])
    assert not os.path.exists("/etc/pyike-lab-probe")
    assert (
        lab.run_in("gw2", ["sh", "-c", "ls /etc/pyike-lab-probe /run/probe 2>&1 || true"]).count(
            "No such file"
        )
        == 2
    )
    # LAN clients at two sites cannot reach each other without a tunnel: the internet has no route to 10.x.
    with pytest.raises(LabError):
        lab.run_in("c1", ["ping", "-c", "1", "-W", "1", "10.2.0.10"])


def test_up_is_idempotent_and_down_removes_everything(lab_name):
    lab = Lab(lab_name)
    plan = build_plan(lab_name, TWO_SITES)
    try:
        assert lab.up(plan) is True
        pids = dict(lab.recorded_plan()["pids"])
        assert Lab(lab_name).up(plan) is False  # a second run changes nothing
        assert lab.recorded_plan()["pids"] == pids
    finally:
        assert lab.down() is True
    assert _holders_of(lab_name) == []
    assert not os.path.exists(lab.state_dir)
    assert _mounts_mentioning(lab.state_dir) == []
    assert lab.down() is False  # already removed: still fine


def test_changed_inventory_rebuilds_the_lab(lab_name, make_lab):
    lab = make_lab(TWO_SITES)
    plan = build_plan(lab_name, [*TWO_SITES, {"name": "c3", "site": 2, "role": "client"}])
    assert lab.up(plan) is True
    assert "10.2.0.11/24" in lab.run_in("c3", ["ip", "-o", "address", "show", "eth0"])


def test_failed_create_leaves_nothing_and_destroy_still_works(lab_name):
    plan = build_plan(lab_name, TWO_SITES)
    plan.host("c2").addresses["eth0"] = ["10.2.0.300/24"]  # `ip address add` rejects this mid-build
    lab = Lab(lab_name)
    with pytest.raises(LabError, match=r"lab host c2: ip .*address add 10\.2\.0\.300/24 dev eth0.*failed"):
        lab.up(plan)
    assert _holders_of(lab_name) == []
    assert not os.path.exists(lab.state_dir)
    assert Lab(lab_name).down() is False


def test_destroy_of_a_half_built_lab(lab_name):
    lab = Lab(lab_name)
    lab.up(build_plan(lab_name, TWO_SITES))
    # Simulate a crash halfway: one holder already dead, the plan file lost.
    os.kill(lab.pid_of("gw2"), signal.SIGKILL)
    os.unlink(os.path.join(lab.state_dir, "lab.json"))
    time.sleep(0.1)
    assert Lab(lab_name).down() is True
    assert _holders_of(lab_name) == []
    assert not os.path.exists(lab.state_dir)


def test_a_dead_host_gives_a_clear_error(make_lab):
    lab = make_lab(TWO_SITES)
    pid = lab.pid_of("c1")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(LabError, match="holder process %d .* is not running" % pid):
        lab.run_in("c1", ["true"])


def test_killing_a_holder_kills_the_processes_inside(make_lab):
    lab = make_lab(TWO_SITES)
    pid = lab.pid_of("gw1")
    run(nsenter_argv(pid, ["sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 &"]), "start sleeper")
    inner = [p for p in _children_in_namespace(pid) if p != pid]
    assert inner, "the sleeper should run inside gw1"
    lab.down()
    for child in inner:
        assert not os.path.exists("/proc/%d" % child)


def _children_in_namespace(holder_pid):
    target = os.readlink("/proc/%d/ns/pid" % holder_pid)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink("/proc/%s/ns/pid" % entry) == target:
                    found.append(int(entry))
            except OSError:
                pass
    return found
