"""playbooks/lab_up.yml and lab_down.yml (role and module pyike.ipsec.lab) as a user runs them."""

from __future__ import annotations

import os

import pytest
import yaml
from conftest import REPO, run_playbook, task_results

pytestmark = pytest.mark.root
UP = REPO / "playbooks" / "lab_up.yml"
DOWN = REPO / "playbooks" / "lab_down.yml"
LAB_TASK = "pyike.ipsec.lab : Apply lab state {name}: {state}"


def _changed(result, name, state):
    return task_results(result, LAB_TASK.format(name=name, state=state))["localhost"]["changed"]


def test_lab_up_ping_down(tmp_path, lab_name):
    demo = yaml.safe_load((REPO / "tests" / "integration" / "inventories" / "two_sites.yml").read_text())
    demo["all"]["vars"]["pyike_lab_name"] = lab_name
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(demo))
    ping = tmp_path / "ping.yml"
    ping.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Ping",
                    "hosts": "lab",
                    "gather_facts": False,
                    "tasks": [{"name": "Ping", "ansible.builtin.ping": {}}],
                }
            ]
        )
    )
    try:
        rc, result, output = run_playbook(UP, inventory, "--check")
        assert rc == 0, output
        assert _changed(result, lab_name, "present") is True
        assert not os.path.exists("/run/pyike-lab/%s" % lab_name), "check mode must not build the lab"

        rc, result, output = run_playbook(UP, inventory)
        assert rc == 0, output
        assert _changed(result, lab_name, "present") is True
        lab_hosts = task_results(result, LAB_TASK.format(name=lab_name, state="present"))["localhost"][
            "hosts"
        ]
        assert lab_hosts["gw2"]["addresses"] == {
            "wan0": ["198.51.100.1/24", "2001:db8:2::1/64"],
            "lan0": ["10.2.0.1/24", "fd00:0:2::1/64"],
        }

        rc, result, output = run_playbook(UP, inventory)
        assert rc == 0, output
        assert _changed(result, lab_name, "present") is False

        rc, result, output = run_playbook(ping, inventory)
        assert rc == 0, output
        assert sorted(host for host, r in task_results(result, "Ping").items() if r["ping"] == "pong") == [
            "c1",
            "c2",
            "gw1",
            "gw2",
        ]
    finally:
        rc, result, output = run_playbook(DOWN, inventory)
    assert rc == 0, output
    assert _changed(result, lab_name, "absent") is True
    assert not os.path.exists("/run/pyike-lab/%s" % lab_name)
    rc, result, output = run_playbook(DOWN, inventory)
    assert rc == 0, output
    assert _changed(result, lab_name, "absent") is False


def test_a_bad_lab_inventory_fails_with_the_host_named(tmp_path, lab_name):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {"pyike_lab_name": lab_name},
                    "children": {
                        "lab": {
                            "hosts": {
                                "gw1": {"pyike_lab_site": 1},
                                "c1": {"pyike_lab_site": 4, "pyike_lab_role": "client"},
                            }
                        }
                    },
                }
            }
        )
    )
    rc, result, _output = run_playbook(UP, inventory)
    assert rc != 0
    failure = task_results(result, LAB_TASK.format(name=lab_name, state="present"))["localhost"]
    assert "lab host 'c1': site 4 has no gateway" in failure["msg"]
    assert not os.path.exists("/run/pyike-lab/%s" % lab_name)
