"""Capture on a lab link (pyike_lab.capture) and the lab_capture module that Molecule verify uses."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from conftest import REPO, TWO_SITES, ansible_env
from pyike_lab.capture import Capture
from pyike_lab.lab import LabError

pytestmark = pytest.mark.root


def test_capture_sees_plaintext_between_gateways_and_survives_a_flood(make_lab):
    lab = make_lab(TWO_SITES)
    with Capture(lab, "internet", "inet0", "icmp") as wire:
        # Far more output than a pipe holds: tcpdump writes to a file, so it never stalls.
        lab.run_in("gw1", ["ping", "-f", "-c", "2000", "-W", "1", "198.51.100.1"], timeout=60)
    assert wire.count("192.0.2.1 > 198.51.100.1: ICMP echo request") >= 2000, wire.stderr
    assert "listening on inet0" in wire.stderr


def test_capture_on_a_missing_interface_says_what_tcpdump_said(make_lab):
    lab = make_lab(TWO_SITES)
    with pytest.raises(LabError, match=r"tcpdump on nosuch0 did not start: .*nosuch0"):
        Capture(lab, "internet", "nosuch0").start()


def _module(args):
    """Run the module ad hoc on the controller; returns (rc, its result)."""
    done = subprocess.run(
        ["ansible", "localhost", "-m", "pyike.ipsec.lab_capture", "-a", json.dumps(args), "-o"],
        capture_output=True,
        text=True,
        env={**ansible_env(), "ANSIBLE_STDOUT_CALLBACK": "oneline"},
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert "=>" in done.stdout, done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout.split("=>", 1)[1])


def test_module_returns_the_packets_and_the_command_results(make_lab, lab_name):
    make_lab(TWO_SITES)
    rc, result = _module(
        {
            "lab": lab_name,
            "commands": [{"host": "gw1", "argv": ["ping", "-c", "2", "-W", "2", "198.51.100.1"]}],
        }
    )
    assert rc == 0, result
    assert result["changed"] is False
    assert [c["rc"] for c in result["commands"]] == [0]
    assert "2 received" in result["commands"][0]["stdout"]
    requests = [p for p in result["packets"] if "192.0.2.1 > 198.51.100.1: ICMP echo request" in p]
    assert len(requests) >= 2, result["packets"]


def test_module_fails_naming_the_failed_command_and_runs_no_more(make_lab, lab_name):
    make_lab(TWO_SITES)
    rc, result = _module(
        {
            "lab": lab_name,
            "commands": [
                {"host": "c1", "argv": ["true"]},
                {"host": "gw2", "argv": ["ping", "-c", "1", "-W", "1", "203.0.113.99"]},
                {"host": "c1", "argv": ["true"]},
            ],
        }
    )
    assert rc != 0
    assert result["msg"].startswith("lab host gw2: ping -c 1 -W 1 203.0.113.99 exited with 1"), result["msg"]
    assert [c["rc"] for c in result["commands"]] == [0, 1]


def test_capture_on_this_machine_or_in_a_process_network_namespace(make_lab):
    """No lab: tcpdump runs on this machine's interface, or in a process's network namespace (a
    container's, in Molecule) with this machine's tcpdump."""
    with Capture(None, "this machine", "lo", "icmp") as wire:
        subprocess.run(
            ["ping", "-c", "2", "-i", "0.2", "-W", "2", "127.0.0.1"], check=True, capture_output=True
        )
    assert wire.count("127.0.0.1 > 127.0.0.1: ICMP echo request") >= 2, wire.lines
    with pytest.raises(LabError, match=r"^this machine: tcpdump on nosuch0 did not start"):
        Capture(None, "this machine", "nosuch0").start()
    lab = make_lab(TWO_SITES)
    with Capture(None, "gw2", "wan0", "icmp", net_pid=lab.pid_of("gw2")) as wire:
        lab.run_in("gw1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.51.100.1"], timeout=30)
    assert wire.count("192.0.2.1 > 198.51.100.1: ICMP echo request") >= 2, wire.lines


def test_module_needs_a_lab_or_a_container_engine_and_names_a_missing_container():
    rc, result = _module({"commands": [{"host": "c1", "argv": ["true"]}]})
    assert rc != 0
    assert "one of the following is required: lab, container_engine" in result["msg"], result["msg"]
    rc, result = _module(
        {
            "container_engine": "podman",
            "host": "pyike-nosuch",
            "commands": [{"host": "pyike-nosuch", "argv": ["true"]}],
        }
    )
    assert rc != 0
    # podman says there is no such container, or this machine has no podman at all
    assert re.match(
        r"podman: (pyike-nosuch is not a running container|cannot run podman inspect)", result["msg"]
    ), result

    assert result["commands"] == []
