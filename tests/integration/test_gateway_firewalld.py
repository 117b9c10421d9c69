"""The gateway role on firewalld hosts (RHEL's default): forwarding off, firewalld running on each gateway.

firewalld comes from the packages scripts/setup.sh unpacks; it runs inside each lab gateway only (see
firewalld_host.py). Its default zone rejects what it does not know and forwards nothing between zones,
so the tunnels only work when the role opened IKE/ESP for the peers and let the tunnelled traffic through.
"""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, run_playbook, task_results
from firewalld_host import restart_firewalld, start_firewalld, unavailable
from pyike_lab.lab import Lab
from test_gateway_host import GATEWAYS, HOST_TASK, LAN_PINGS, changed_tasks, pings

pytestmark = [pytest.mark.root, pytest.mark.skipif(bool(unavailable()), reason=unavailable() or "ok")]
DEMO = REPO / "playbooks" / "inventory" / "demo.yml"
SITE = REPO / "playbooks" / "site.yml"
OUR_IN_RULE = (
    'rule family="ipv4" source ipset="pyike-ipsec-remote4" destination ipset="pyike-ipsec-local4" accept'
)
# A UDP datagram to the hub's IKE port: "rejected" when firewalld answers with an ICMP error.
PROBE = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)\n"
    "s.connect(('192.0.2.1', 500)); s.send(b'probe')\n"
    "try:\n    s.recv(100); print('answered')\n"
    "except socket.timeout:\n    print('no answer')\n"
    "except OSError as exc:\n    print('rejected', exc.errno)\n"
)


@pytest.fixture
def firewalld_lab(tmp_path, lab_name):
    data = yaml.safe_load(DEMO.read_text())
    data["all"]["vars"]["pyike_lab_name"] = lab_name
    gateways = data["all"]["children"]["lab"]["children"]["gateways"]["children"]
    for group in gateways.values():
        for host in group["hosts"].values():
            host["pyike_lab_forwarding"] = False
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    rc, _result, output = run_playbook(REPO / "playbooks" / "lab_up.yml", path)
    assert rc == 0, output
    lab = Lab(lab_name)
    try:
        for host in GATEWAYS:
            start_firewalld(lab, host)
        yield path, lab
    finally:
        run_playbook(REPO / "playbooks" / "lab_down.yml", path)


def firewall_cmd(lab, host, *args):
    return lab.run_in(host, ["firewall-cmd", *args], timeout=60).strip()


def test_site_opens_firewalld_for_the_peers_and_the_tunnels(firewalld_lab):
    inventory, lab = firewalld_lab
    rc, result, output = run_playbook(SITE, inventory, "--diff", timeout=600)
    assert rc == 0, output
    hub = task_results(result, HOST_TASK)["hub"]
    assert hub["firewall"] == "firewalld" and hub["forwarding"] == ["ipv4"], hub
    for source, destination in LAN_PINGS:
        assert pings(lab, source, destination), (source, destination)
    assert lab.run_in("internet", ["python3", "-c", PROBE]).startswith("rejected")  # not a peer
    assert (
        lab.run_in("spoke1", ["python3", "-c", PROBE]).strip() == "no answer"
    )  # a peer: pyiked ignores junk

    rc, result, output = run_playbook(SITE, inventory, timeout=600)
    assert rc == 0, output
    assert changed_tasks(result) == []

    # Without our rule in the runtime configuration the hub forwards nothing from the tunnel to its LAN;
    # the permanent configuration brings it back on a reload, and after a restart (as at boot).
    firewall_cmd(lab, "hub", "--policy=pyike-ipsec-in", "--remove-rich-rule=" + OUR_IN_RULE)
    assert not pings(lab, "c2", "10.1.0.10", count=2)
    firewall_cmd(lab, "hub", "--reload")
    assert pings(lab, "c2", "10.1.0.10")
    restart_firewalld(lab, "hub")
    assert pings(lab, "c2", "10.1.0.10")
    assert OUR_IN_RULE in firewall_cmd(lab, "hub", "--policy=pyike-ipsec-in", "--list-rich-rules")
