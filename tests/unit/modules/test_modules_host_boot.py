"""What re-applies the gateway's nftables rules at boot (pyike_host.boot), and reading firewall-cmd's listings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import modules_support  # noqa: F401 (makes ansible_collections.pyike.ipsec importable)  # pylint: disable=unused-import
import netns_harness
import pytest
import systemd_harness
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import payload
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host import boot, firewalld, nftables

netns = netns_harness.netns

SPEC = {"tun": "pyike0", "ike_ports": [500, 4500], "peers": {"any": True, "4": [], "6": []}, "tunnels": [],
        "open": True, "mss": None}  # fmt: skip


class Systemctl:
    """Answers systemctl for boot.SystemdUnit (systemd is not PID 1 where the unit tests run) and
    records the commands it was given."""

    def __init__(self, enabled=False):
        self.enabled = enabled
        self.calls = []

    def __call__(self, argv):
        assert argv[0] == "systemctl", argv
        if argv[1] in ("is-enabled", "is-active"):
            return (
                0,
                ("enabled\n" if argv[1] == "is-enabled" else "active\n") if self.enabled else "disabled\n",
                "",
            )
        self.calls.append(" ".join(argv[1:]))
        if argv[1] in ("enable", "disable"):
            self.enabled = argv[1] == "enable"
        return 0, "", ""


def files(tmp_path, systemctl=None):
    unit = boot.SystemdUnit(systemctl) if systemctl is not None else None
    return boot.BootFiles(
        str(tmp_path / "etc"), str(tmp_path / "sbin"), sys.executable, payload.module_source(nftables), unit,
        unit_path=str(tmp_path / "pyike-nftables.service"),
    )  # fmt: skip


def test_spec_command_and_unit_are_written_once_and_removed(tmp_path):
    systemctl = Systemctl()
    planned = files(tmp_path, systemctl)
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
    assert systemctl.calls == ["daemon-reload", "enable --now pyike-nftables.service"]
    script = (tmp_path / "sbin" / "pyike-nftables").read_text()
    assert script.startswith("#!%s\n# Installed by pyike.ipsec.host_network" % sys.executable)
    assert os.stat(tmp_path / "sbin" / "pyike-nftables").st_mode & 0o777 == 0o755
    assert json.loads((tmp_path / "etc" / "nftables.json").read_text())["peers"]["any"] is True
    assert files(tmp_path, systemctl).plan(SPEC) == []
    planned = files(tmp_path, systemctl)
    assert len(planned.plan(None)) == 4
    planned.apply()
    assert not list((tmp_path / "etc").iterdir()) and not (tmp_path / "pyike-nftables.service").exists()
    assert systemctl.calls[-2:] == ["disable --now pyike-nftables.service", "daemon-reload"]


SITE = netns_harness.DROPPING_SITE
PEERS_SPEC = dict(
    SPEC,
    peers={"any": False, "4": ["198.51.100.1"], "6": []},
    tunnels=[{"version": 4, "local": ["10.1.0.0/24"], "remote": ["10.2.0.0/24"]}],
    mss={"4": 1360},
)


def test_the_installed_command_puts_the_rules_back_after_the_ruleset_is_reloaded(tmp_path, netns):
    planned = files(tmp_path)
    planned.plan(PEERS_SPEC)
    planned.apply()
    command = str(tmp_path / "sbin" / "pyike-nftables")
    spec = str(tmp_path / "etc" / "nftables.json")
    # As at boot: the distribution's ruleset is loaded (flush ruleset first), then our command runs,
    # alone: a clean environment, no collection on the path (the script is the standard library only).
    netns.load(SITE)
    clean = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    out = netns.run([*clean, command, "apply", spec])
    assert "inserted a jump to pyike_ipsec_input at the top of inet filter input" in out
    listing = netns.listing()
    assert "ip saddr 198.51.100.1 udp dport { 500, 4500 } accept" in listing
    assert 'iifname "pyike0" ip saddr 10.2.0.0/24 ip daddr 10.1.0.0/24 accept' in listing
    assert "tcp option maxseg size set 1360" in listing
    assert netns.run([*clean, command, "check", spec]) == ""  # exit 0: nothing left to do
    assert netns.run([*clean, command, "apply", spec]) == ""
    netns.load(SITE)
    checked = subprocess.run(
        [netns_harness.NSENTER, "--net=%s" % netns.path, *clean, command, "check", spec],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 1 and "to apply: wrote table inet pyike_ipsec" in checked.stdout


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
