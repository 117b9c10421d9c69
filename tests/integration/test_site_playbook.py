"""playbooks/site.yml on the hub-and-spoke demo inventory: tunnels up, idempotent, check mode,
a wrong PSK named by the failing task, an invalid inventory stopped before any host, no PSK leaks."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml
from conftest import REPO, run_playbook, task_results
from pings import assert_replies
from pyike_lab.lab import Lab

pytestmark = pytest.mark.root
DEMO = REPO / "playbooks" / "inventory" / "demo.yml"
SITE = REPO / "playbooks" / "site.yml"
PSK = "site-test-psk-6b0e2f9d41"


@pytest.fixture
def inventory(tmp_path, lab_name):
    data = yaml.safe_load(DEMO.read_text())
    data["all"]["vars"]["pyike_lab_name"] = lab_name
    data["all"]["vars"]["vault_psk_star"] = PSK
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    rc, _result, output = run_playbook(REPO / "playbooks" / "lab_up.yml", path)
    assert rc == 0, output
    yield path
    run_playbook(REPO / "playbooks" / "lab_down.yml", path)


def changed_count(result):
    return sum(stats["changed"] for stats in result["stats"].values())


def test_site_builds_hub_and_spoke_and_is_idempotent(inventory, lab_name):
    lab = Lab(lab_name)
    rc, result, output = run_playbook(SITE, inventory, "--check")
    assert rc == 0, output
    assert (
        lab.run_in("hub", ["sh", "-c", "ls /etc/pyike 2>&1 || true"])
        .strip()
        .endswith("No such file or directory")
    )

    rc, result, output = run_playbook(SITE, inventory, "-vvv")
    assert rc == 0, output
    assert changed_count(result) > 0
    assert PSK not in output
    ping = lab.run_in(
        "c2", ["ping", "-c", "3", "-i", "0.2", "-w", "10", "10.3.0.10"]
    )  # spoke to spoke via the hub
    assert_replies(ping, 3)

    rc, result, output = run_playbook(SITE, inventory)
    assert rc == 0, output
    assert changed_count(result) == 0, [
        (task["task"]["name"], host) for play in result["plays"] for task in play["tasks"]
        for host, r in task["hosts"].items() if r.get("changed")
    ]  # fmt: skip

    # The key is only in each gateway's 0600 configuration file: among everything the host wrote (its
    # copy-on-write layers, /tmp included, seen from outside) and its private /run.
    for host in ("hub", "spoke1", "spoke2"):
        layers = os.path.join(lab.state_dir, host)
        written = subprocess.run(
            ["grep", "-rlF", PSK, layers], capture_output=True, text=True, timeout=60, check=False
        ).stdout
        assert written.split() == [os.path.join(layers, "etc.upper", "pyike", "pyike.yml")], (host, written)
        private = lab.run_in(host, ["sh", "-c", "grep -rlF %s /run 2>/dev/null || true" % PSK])
        assert private.strip() == "", (host, private)
        assert lab.run_in(host, ["stat", "-c", "%a", "/etc/pyike/pyike.yml"]).strip() == "600"


def test_wrong_psk_fails_the_task_that_names_the_tunnel(inventory):
    rc, _result, output = run_playbook(SITE, inventory)
    assert rc == 0, output
    rc, result, output = run_playbook(
        SITE, inventory, "--limit", "spoke1", "-e", "vault_psk_star=not-the-hub-key-of-the-star"
    )
    assert rc != 0
    failure = task_results(
        result, "pyike.ipsec.gateway : Wait until the tunnels this gateway initiates are up"
    )["spoke1"]
    assert "star-spoke1" in failure["msg"] and "AUTHENTICATION_FAILED" in failure["msg"]
    assert "not-the-hub-key" not in output and PSK not in output


def test_invalid_inventory_fails_before_any_host_is_contacted(tmp_path, lab_name):
    data = yaml.safe_load(DEMO.read_text())
    data["all"]["vars"]["pyike_lab_name"] = (
        lab_name  # no lab is built: contacting a host would fail differently
    )
    data["all"]["vars"]["ipsec_topologies"][0]["esp_group"] = "missing"
    data["all"]["children"]["lab"]["children"]["gateways"]["children"]["spokes"]["hosts"]["spoke1"][
        "ipsec_lan_subnets"
    ] = ["10.2.0.0/33"]
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(data))
    rc, result, _output = run_playbook(SITE, path)
    assert rc != 0
    (validation,) = task_results(
        result, "pyike.ipsec.gateway : Validate the VPN inventory and compute every gateway's connections"
    ).values()
    problems = "\n".join(validation["problems"])
    assert "ipsec_topologies[0].esp_group" in problems
    assert "10.0.0.0/33" in problems or "10.2.0.0/33" in problems
    executed = [task["task"]["name"] for play in result["plays"] for task in play["tasks"] if task["hosts"]]
    assert not [name for name in executed if "Install" in name or "Write" in name], executed
    assert not os.path.exists("/run/pyike-lab/%s" % lab_name)


def test_trapped_spokes_come_up_on_their_first_packet(tmp_path, lab_name):
    """start_action: trap from the inventory: site.yml leaves the spokes without SAs (and does not wait
    for them), and the first ping from spoke1's LAN brings its tunnel up."""
    data = yaml.safe_load(DEMO.read_text())
    data["all"]["vars"]["pyike_lab_name"] = lab_name
    data["all"]["vars"]["vault_psk_star"] = PSK
    data["all"]["vars"]["ipsec_topologies"][0]["start_action"] = "trap"
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    rc, _result, output = run_playbook(REPO / "playbooks" / "lab_up.yml", path)
    assert rc == 0, output
    lab = Lab(lab_name)
    ctl = "/usr/local/sbin/pyikectl"
    try:
        rc, _result, output = run_playbook(SITE, path)
        assert rc == 0, output
        assert json.loads(lab.run_in("spoke1", [ctl, "list-sas", "--json"])) == []
        traps = json.loads(lab.run_in("spoke1", [ctl, "list-traps", "--json"]))
        assert [trap["conn"] for trap in traps] == ["star-spoke1"], traps
        ping = lab.run_in("c2", ["ping", "-c", "3", "-i", "0.2", "-w", "10", "10.1.0.10"])
        assert "3 received" in ping, ping  # held while the tunnel comes up, then let through
        (sa,) = json.loads(lab.run_in("spoke1", [ctl, "list-sas", "--json"]))
        assert sa["state"] == "ESTABLISHED" and sa["children"], sa
    finally:
        run_playbook(REPO / "playbooks" / "lab_down.yml", path)
