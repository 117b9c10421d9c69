"""pyike.ipsec.host_network's whole run (pyike_host.task) on a stock host: a throwaway network
namespace with its own kernel forwarding values and a real nft ruleset (netns_harness).

The task runs in a child process entered into the namespace, as the module would on the host; only the
paths of the sysctl file and of the boot files point into the test's directory.
"""

from __future__ import annotations

from pathlib import Path

import modules_support  # noqa: F401 (makes ansible_collections.pyike.ipsec importable)  # pylint: disable=unused-import
import netns_harness
import pytest

netns = netns_harness.netns

PSK = "host-network-psk-never-read-7e1b"
CONFIG = {
    "settings": {"listen": ["192.0.2.1"]},
    "connections": {
        "star-spoke1": {
            "remote": {"address": "198.51.100.1"},
            "psk": PSK,
            "children": {"lan": {"local_ts": ["10.1.0.0/24"], "remote_ts": ["10.2.0.0/24"]}},
        },
    },
}
SITE = netns_harness.DROPPING_SITE
# Runs in the namespace: one module run with data["params"]; prints its result (or its error) and warnings.
TASK_RUN = """
import subprocess
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host.task import HostNetworkError, HostNetworkTask

def run(argv):
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr

warnings = []
try:
    result = HostNetworkTask(data["params"], data["check"], run, warnings.append).execute()
except HostNetworkError as exc:
    result = {"failed": True, "msg": str(exc), **exc.details}
result["warnings"] = warnings
print(json.dumps(result))
"""


def module_run(netns, tmp_path, check=False, **params):
    host = tmp_path / "host"  # the module's files; tmp_path also holds the namespace's nft wrapper
    full = {
        "state": "present",
        "config": CONFIG,
        "forwarding": True,
        "sysctl_file": str(host / "sysctl.d" / "60-pyike-ipsec.conf"),
        "firewall": "auto",
        "firewalld_zone": None,
        "mss_clamping": True,
        "state_dir": str(host / "etc-pyike"),
        "bin_dir": str(host / "sbin"),
    }
    full.update(params)
    result = netns.python(TASK_RUN, {"params": full, "check": check})
    assert PSK not in repr(result)
    return result


def forwarding_value(netns):
    return netns.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).strip()


def test_a_stock_host_behind_a_dropping_ruleset(netns, tmp_path):
    netns.load(SITE)
    site = netns.listing()
    planned = module_run(netns, tmp_path, check=True)
    assert planned["changed"] and planned["firewall"] == "nftables" and planned["forwarding"] == ["ipv4"]
    assert "inserted a jump to pyike_ipsec_forward at the top of inet filter forward" in planned["changes"]
    assert [diff["before_header"] for diff in planned["diff"]] == ["sysctl", "nftables", "boot"]
    # check mode: nothing changed
    assert netns.listing() == site and forwarding_value(netns) == "0" and not (tmp_path / "host").exists()

    done = module_run(netns, tmp_path)
    assert done["changes"] == planned["changes"] and done["peers"] == ["198.51.100.1"]
    assert done["nftables"] == {"opened": ["inet filter forward", "inet filter input"], "not_changed": []}
    assert done["boot"] == {
        "command": str(tmp_path / "host" / "sbin" / "pyike-nftables"),
        "spec": str(tmp_path / "host" / "etc-pyike" / "nftables.json"),
        "systemd_unit": None,  # systemd is not PID 1 here
    }
    assert forwarding_value(netns) == "1" and done["mss_clamping"]
    listing = netns.listing()
    assert "ip saddr 198.51.100.1 udp dport { 500, 4500 } accept" in listing
    assert "tcp option maxseg size set 1360" in listing
    assert PSK not in (tmp_path / "host" / "etc-pyike" / "nftables.json").read_text()

    again = module_run(netns, tmp_path)
    assert not again["changed"] and again["changes"] == [] and again["diff"] == []
    assert again["msg"] == "the host is set up as this gateway needs"

    gone = module_run(netns, tmp_path, state="absent", config=None)
    assert gone["changed"] and netns.listing() == site
    assert not Path(done["boot"]["command"]).exists() and not Path(done["boot"]["spec"]).exists()
    assert not (tmp_path / "host" / "sysctl.d" / "60-pyike-ipsec.conf").exists()
    assert not module_run(netns, tmp_path, state="absent", config=None)["changed"]


def test_a_host_without_a_firewall_gets_none(netns, tmp_path):
    done = module_run(netns, tmp_path)
    assert done["firewall"] == "none" and done["nftables"]["opened"] == []
    assert netns.run(["nft", "list", "tables"]).split() == ["table", "inet", "pyike_ipsec"]  # MSS only
    module_run(netns, tmp_path, mss_clamping=False, forwarding=False)
    assert netns.listing() == ""
    assert not Path(done["boot"]["command"]).exists()  # nothing to re-apply at boot


def test_leaving_the_firewall_alone(netns, tmp_path):
    netns.load(SITE)
    site = netns.listing()
    done = module_run(netns, tmp_path, firewall="none", mss_clamping=False)
    assert done["firewall"] == "none" and netns.listing() == site
    assert done["changes"] == [
        "wrote %s" % (tmp_path / "host" / "sysctl.d" / "60-pyike-ipsec.conf"),
        "set net.ipv4.ip_forward = 1 (was 0)",
    ]


def test_any_peer_is_opened_to_everyone_with_a_warning(netns, tmp_path):
    netns.load(SITE)
    config = {"connections": {"road": {"remote": {"address": "%any"}, "children": CONFIG["connections"]["star-spoke1"]["children"]}}}  # fmt: skip
    done = module_run(netns, tmp_path, config=config)
    assert done["peers"] == "any"
    assert done["warnings"] == [
        "a connection's remote address is %any: UDP ports 500/4500 and ESP are opened to every address"
    ]
    assert "udp dport { 500, 4500 } accept" in netns.run(
        ["nft", "list", "chain", "inet", "filter", "pyike_ipsec_input"]
    )


def test_a_peer_given_by_name_is_opened_to_everyone_with_a_warning(netns, tmp_path):
    """The engine resolves the name at each initiation: a rule holding today's address would shut
    the peer out once the name moves, so a named peer is admitted like %any."""
    netns.load(SITE)
    remote = {"address": "vpn.example.com", "id": "vpn.example.com"}
    config = {"connections": {"dyn": {"remote": remote, "children": CONFIG["connections"]["star-spoke1"]["children"]}}}  # fmt: skip
    done = module_run(netns, tmp_path, config=config)
    assert done["peers"] == "any"
    assert done["warnings"] == [
        "peer vpn.example.com is given by DNS name (its address may change between runs): UDP ports 500/4500 "
        "and ESP are opened to every address"
    ]
    assert "udp dport { 500, 4500 } accept" in netns.run(
        ["nft", "list", "chain", "inet", "filter", "pyike_ipsec_input"]
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"firewall": "firewalld"}, "firewall=firewalld, but firewalld is not running on this host"),
        (
            {"config": {"settings": {"tun_name": "pyike0; flush ruleset"}}},
            "config: settings.tun_name must be an interface name",
        ),
        (
            {"config": {"connections": {"hq": {"remote": {"address": "198.51.100.1"},
                                               "children": {"lan": {"local_ts": ["10.1.0.0/24"],
                                                                    "remote_ts": ["10.2.0.300/24"]}}}}}},
            "config: connections.hq.children.lan.remote_ts[0]",
        ),
    ],
)  # fmt: skip
def test_mistakes_fail_before_anything_changes(netns, tmp_path, params, message):
    netns.load(SITE)
    site = netns.listing()
    failed = module_run(netns, tmp_path, **params)
    assert failed.get("failed") and failed["msg"].startswith(message), failed
    assert netns.listing() == site and forwarding_value(netns) == "0" and not (tmp_path / "host").exists()
