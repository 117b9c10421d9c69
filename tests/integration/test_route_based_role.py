"""ipsec_tunnels[].interface through playbooks/site.yml: a route-based tunnel beside a policy-based one,
built by the gateway role on the userspace dataplane (this kernel has no ESP) with the newer cryptography
of gateway_cryptography_wheel, idempotent, and carrying what the operator routes into its interface."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import REPO, run_playbook
from pings import assert_replies
from pyike_lab.lab import Lab

pytestmark = pytest.mark.root
DEMO = REPO / "playbooks" / "inventory" / "demo.yml"
SITE = REPO / "playbooks" / "site.yml"
CTL = "/usr/local/sbin/pyikectl"


def test_site_builds_a_route_based_tunnel_from_the_inventory(tmp_path, lab_name):
    data = yaml.safe_load(DEMO.read_text())
    variables = data["all"]["vars"]
    variables["pyike_lab_name"] = lab_name
    del variables["ipsec_topologies"]
    common = {"ike_group": "modern", "esp_group": "modern", "psk": "{{ vault_psk_star }}"}
    variables["ipsec_tunnels"] = [
        dict(common, name="hub-spoke1", left="spoke1", right="hub",
             interface={"name": "vti-hub", "left_addresses": ["169.254.20.2/30"],
                        "right_addresses": ["169.254.20.1/30"], "mtu": 1380}),
        dict(common, name="hub-spoke2", left="spoke2", right="hub"),
    ]  # fmt: skip
    # the role copies the targets' newer cryptography (make setup fetched it) and the engine runs with it
    wheels = sorted(REPO.glob(".build/wheels/cryptography-*.whl"))
    assert wheels, "no cryptography wheel in .build/wheels: run `make setup`"
    variables["gateway_cryptography_wheel"] = str(wheels[0])
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    rc, _result, output = run_playbook(REPO / "playbooks" / "lab_up.yml", path)
    assert rc == 0, output
    lab = Lab(lab_name)
    try:
        rc, _result, output = run_playbook(SITE, path)
        assert rc == 0, output
        for host, address in (("hub", "169.254.20.1/30"), ("spoke1", "169.254.20.2/30")):
            link = lab.run_in(host, ["ip", "-d", "address", "show", "vti-hub"])
            assert "mtu 1380" in link and "tun" in link and "inet " + address in link, link
        version = wheels[0].name.split("-")[1]
        for host in ("hub", "spoke1"):
            log = lab.run_in(host, ["cat", "/var/log/pyike/pyiked.log"])
            assert "cryptography %s from /opt/pyike/" % version in log, log[-2000:]
        conns = {sa["name"] for sa in json.loads(lab.run_in("hub", [CTL, "list-sas", "--json"]))}
        assert conns == {"hub-spoke1", "hub-spoke2"}, conns
        # nothing routes into the interface but the operator (or a routing daemon)
        assert "10.2.0.0/24" not in lab.run_in("hub", ["ip", "route", "show", "table", "all"])
        lab.run_in("hub", ["ip", "route", "add", "10.2.0.0/24", "dev", "vti-hub"])
        lab.run_in("spoke1", ["ip", "route", "add", "10.1.0.0/24", "dev", "vti-hub"])
        assert_replies(lab.run_in("c2", ["ping", "-c", "3", "-i", "0.2", "-w", "10", "10.1.0.10"]), 3)
        assert_replies(lab.run_in("c3", ["ping", "-c", "3", "-i", "0.2", "-w", "10", "10.1.0.10"]), 3)
        assert_replies(lab.run_in("spoke1", ["ping", "-c", "3", "-i", "0.2", "-w", "10", "169.254.20.1"]), 3)
        rc, result, output = run_playbook(SITE, path)
        assert rc == 0, output
        changed = {host: stats["changed"] for host, stats in result["stats"].items() if stats["changed"]}
        assert changed == {}, changed
    finally:
        run_playbook(REPO / "playbooks" / "lab_down.yml", path)
