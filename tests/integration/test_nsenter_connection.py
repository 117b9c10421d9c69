"""The pyike.ipsec.nsenter connection plugin against real lab hosts, through ansible-playbook."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from conftest import TWO_SITES, run_playbook, task_results

pytestmark = pytest.mark.root
PLAYBOOK = Path(__file__).parent / "playbooks" / "connection.yml"


def _inventory(tmp_path, lab_name, hosts):
    inventory = {
        "lab": {
            "vars": {
                "pyike_lab_name": lab_name,
                "ansible_connection": "pyike.ipsec.nsenter",
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "hosts": {name: {} for name in hosts},
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


@pytest.mark.parametrize("pipelining", ["1", "0"])
def test_exec_put_fetch_and_failing_command(tmp_path, make_lab, lab_name, pipelining, monkeypatch):
    make_lab(TWO_SITES)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 64 + os.urandom(100_000) + b"\0\xff" * 10)
    fetch_dir = tmp_path / "fetched"
    monkeypatch.setenv("ANSIBLE_PIPELINING", pipelining)
    rc, result, output = run_playbook(
        PLAYBOOK,
        _inventory(tmp_path, lab_name, ["gw1", "c2"]),
        "-e",
        "payload=%s fetch_dir=%s" % (payload, fetch_dir),
    )
    assert rc == 0, output
    hostnames = task_results(result, "Run a command")
    assert {host: r["stdout"] for host, r in hostnames.items()} == {"gw1": "gw1", "c2": "c2"}
    for host, failing in task_results(result, "Run a failing command").items():
        assert failing["rc"] == 3, host
        assert failing["stderr"] == "to stderr"
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    for host, stat in task_results(result, "Checksum it inside the host").items():
        assert stat["stat"]["checksum"] == digest, host
    for host in ("gw1", "c2"):
        assert (fetch_dir / ("%s.bin" % host)).read_bytes() == payload.read_bytes()
    # The file went into each host's copy-on-write /etc, not the machine's.
    assert not os.path.exists("/etc/pyike-payload.bin")


def test_a_dead_holder_is_reported_clearly(tmp_path, make_lab, lab_name):
    lab = make_lab(TWO_SITES)
    pid = lab.pid_of("c1")
    os.kill(pid, signal.SIGKILL)
    while os.path.exists("/proc/%d" % pid):
        time.sleep(0.02)
    rc, result, _output = run_playbook(
        PLAYBOOK, _inventory(tmp_path, lab_name, ["c1"]), "-e", "payload=/dev/null fetch_dir=/tmp"
    )
    assert rc != 0
    message = task_results(result, "Run a command")["c1"]["msg"]
    assert "lab host c1: its holder process %d" % pid in message
    assert "is not running" in message


def test_a_lab_that_was_never_built_is_reported_clearly(tmp_path, lab_name):
    rc, result, _output = run_playbook(
        PLAYBOOK, _inventory(tmp_path, lab_name, ["gw1"]), "-e", "payload=/dev/null fetch_dir=/tmp"
    )
    assert rc != 0
    message = task_results(result, "Run a command")["gw1"]["msg"]
    assert (
        "lab host gw1: pid file /run/pyike-lab/%s/gw1.pid does not exist; is the lab up?" % lab_name
        in message
    )
