"""What re-applies the gateway's nftables rules at boot (pyike_host.boot), and reading firewall-cmd's listings."""

from __future__ import annotations

import json
import os

import modules_support  # noqa: F401  (makes ansible_collections.pyike.ipsec importable)
import pytest
import systemd_harness
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host import boot, firewalld

SPEC = {"tun": "pyike0", "ike_ports": [500, 4500], "peers": {"any": True, "4": [], "6": []}, "tunnels": [],
        "open": True, "mss": None}  # fmt: skip


class RecordingUnit:
    """Stands in for systemctl (systemd is not PID 1 where the unit tests run); records the calls."""

    def __init__(self, enabled=False):
        self.enabled = enabled
        self.calls = []

    def is_enabled(self):
        return self.enabled

    def is_active(self):
        return self.enabled

    def daemon_reload(self):
        self.calls.append("daemon-reload")

    def enable(self):
        self.calls.append("enable --now")
        self.enabled = True

    def disable(self):
        self.calls.append("disable --now")
        self.enabled = False


def files(tmp_path, unit=None):
    return boot.BootFiles(
        str(tmp_path / "etc"), str(tmp_path / "sbin"), "/usr/bin/python3", b"print('applied')\n", unit,
        unit_path=str(tmp_path / "pyike-nftables.service"),
    )  # fmt: skip


def test_spec_command_and_unit_are_written_once_and_removed(tmp_path):
    unit = RecordingUnit()
    planned = files(tmp_path, unit)
    changes = planned.plan(SPEC)
    assert changes == [
        "wrote the nftables spec %s/etc/nftables.json" % tmp_path,
        "wrote the command %s/sbin/pyike-nftables" % tmp_path,
        "wrote the systemd unit %s/pyike-nftables.service" % tmp_path,
        "enabled and started pyike-nftables.service",
    ]
    before, after = planned.diff()
    assert "(absent)" in before and '"any": true' in after
    planned.apply()
    assert unit.calls == ["daemon-reload", "enable --now"]
    script = (tmp_path / "sbin" / "pyike-nftables").read_text()
    assert script.startswith("#!/usr/bin/python3\n# Installed by pyike.ipsec.host_network")
    assert os.stat(tmp_path / "sbin" / "pyike-nftables").st_mode & 0o777 == 0o755
    assert json.loads((tmp_path / "etc" / "nftables.json").read_text())["peers"]["any"] is True
    assert files(tmp_path, unit).plan(SPEC) == []
    planned = files(tmp_path, unit)
    assert len(planned.plan(None)) == 4
    planned.apply()
    assert not list((tmp_path / "etc").iterdir()) and unit.calls[-1] == "daemon-reload"
    assert unit.calls[-2] == "disable --now"


def test_a_file_we_did_not_write_is_never_replaced(tmp_path):
    (tmp_path / "sbin").mkdir()
    (tmp_path / "sbin" / "pyike-nftables").write_text("#!/bin/sh\necho mine\n")
    with pytest.raises(boot.BootError, match=r"was not installed by pyike\.ipsec\.host_network"):
        files(tmp_path).plan(SPEC)
    files(tmp_path).plan(None)  # nor removed
    assert (tmp_path / "sbin" / "pyike-nftables").exists()


def test_the_unit_is_one_systemd_accepts(tmp_path):
    text = boot.unit_text("/usr/local/sbin", "/etc/pyike/nftables.json").decode()
    assert "ExecStart=/usr/local/sbin/pyike-nftables apply /etc/pyike/nftables.json" in text
    assert "PartOf=nftables.service" in text and "ReloadPropagatedFrom=nftables.service" in text
    spaced = boot.unit_text("/usr/local/sbin", "/etc/py ike/nftables.json").decode()
    assert 'apply "/etc/py ike/nftables.json"' in spaced
    with pytest.raises(boot.BootError, match="systemd refuses"):
        boot.unit_text('/opt/"x"', "/etc/pyike/nftables.json")
    if systemd_harness.SYSTEMD_ANALYZE:
        # systemd's own parser: no complaint about this unit's syntax (missing programs are fine here)
        path = tmp_path / "pyike-nftables.service"
        path.write_text(text)
        said = systemd_harness.verify(path)
        assert "Unknown" not in said and "bad" not in said.lower() and "Invalid" not in said, said


LISTING = """\
public (active, default)
  target: default
  icmp-block-inversion: no
  interfaces: wan0 lan0
  sources:
  services: dhcpv6-client ssh
  ports:
  protocols:
  forward: yes
  masquerade: no
  forward-ports:
  source-ports:
  icmp-blocks:
  rich rules:
\trule family="ipv4" source ipset="pyike-ipsec-peers4" port port="500" protocol="udp" accept
\trule family="ipv4" source address="192.0.2.99" accept

pyike-ipsec
  target: default
  icmp-block-inversion: no
  interfaces: pyike0
  sources:
  services:
  forward-ports:
  rich rules:
"""


def test_firewall_cmd_listings_are_read_and_only_our_rules_are_ours():
    zones = firewalld.parse_listing(LISTING)
    assert zones["public"]["interfaces"] == ["wan0", "lan0"] and zones["public"]["sources"] == []
    assert len(zones["public"]["rich rules"]) == 2 and zones["pyike-ipsec"]["rich rules"] == []
    assert [firewalld.is_ours(rule) for rule in zones["public"]["rich rules"]] == [True, False]
    model = firewalld._as_model({"zones": zones, "policies": {}, "ipsets": {}})
    assert model["zone_interfaces"] == ["pyike0"]
    assert model["rich"][("zone", "public")] == [zones["public"]["rich rules"][0]]
