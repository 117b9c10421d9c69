"""The gateway role on stock hosts: forwarding off and an nftables ruleset that drops by default.

playbooks/site.yml builds the hub and two spokes of the demo inventory on gateways that start with
net.ipv4.ip_forward=0 and input/forward policy drop; the role must switch forwarding on, open IKE and
ESP for the peers only, let the tunnelled traffic through and clamp the MSS, idempotently, and the
nftables rules must come back after the distribution's ruleset is reloaded (as at boot).
"""

from __future__ import annotations

import subprocess
import time

import pytest
import yaml
from conftest import REPO, run_playbook, task_results
from pings import unanswered
from pyike_lab.lab import Lab

pytestmark = pytest.mark.root
DEMO = REPO / "playbooks" / "inventory" / "demo.yml"
SITE = REPO / "playbooks" / "site.yml"
PSK = "gateway-host-psk-3c9d0e7a51"
GATEWAYS = ("hub", "spoke1", "spoke2")
HOST_TASK = (
    "pyike.ipsec.gateway : Set up forwarding, the firewall and MSS clamping for this gateway's tunnels"
)
# Spoke LAN to spoke LAN through the hub, both ways, and spoke LAN to the hub's LAN, both ways.
LAN_PINGS = (("c2", "10.3.0.10"), ("c3", "10.2.0.10"), ("c2", "10.1.0.10"), ("c1", "10.3.0.10"))
# A site's own firewall: nothing in but replies, nothing forwarded but LAN to WAN. The counter shows
# what IKE reached these rules, i.e. was not accepted by the role's rules first.
DROP_BY_DEFAULT = """\
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iif "lo" accept
    udp dport { 500, 4500 } counter comment "IKE that reached the site's rules"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan0" oifname "wan0" accept
  }
}
"""


def build_inventory(tmp_path, lab_name, dpd_delay=None):
    data = yaml.safe_load(DEMO.read_text())
    data["all"]["vars"]["pyike_lab_name"] = lab_name
    data["all"]["vars"]["vault_psk_star"] = PSK
    if dpd_delay is not None:
        data["all"]["vars"]["ipsec_ike_groups"]["modern"]["dpd_delay"] = dpd_delay
    gateways = data["all"]["children"]["lab"]["children"]["gateways"]["children"]
    for group in gateways.values():
        for host in group["hosts"].values():
            host["pyike_lab_forwarding"] = False
            host["pyike_lab_nftables"] = DROP_BY_DEFAULT
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def stock_lab(tmp_path, lab_name):
    path = build_inventory(tmp_path, lab_name)
    rc, _result, output = run_playbook(REPO / "playbooks" / "lab_up.yml", path)
    assert rc == 0, output
    yield path, Lab(lab_name)
    run_playbook(REPO / "playbooks" / "lab_down.yml", path)


def changed_tasks(result):
    return [
        (task["task"]["name"], host) for play in result["plays"] for task in play["tasks"]
        for host, r in task["hosts"].items() if r.get("changed")
    ]  # fmt: skip


def pings(lab, source, destination, count=3):
    done = subprocess.run(
        ["nsenter", "--target", str(lab.pid_of(source)), "--net", "ping", "-c", str(count), "-i", "0.2",
         "-W", "2", destination],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return not unanswered(done.stdout, count)


def site_counter(lab, host):
    """Packets counted by the site's own IKE rule (they were not accepted by the role's rules)."""
    listing = lab.run_in(host, ["nft", "list", "chain", "inet", "filter", "input"])
    for line in listing.splitlines():
        if "IKE that reached" in line:
            return int(line.split("packets")[1].split()[0])
    raise AssertionError(listing)


def syn_mss_seen_by(lab, server, server_address, client):
    """The MSS a TCP server on `server` ends up with for a connection from `client` (TCP_MAXSEG)."""
    script = (
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', 5001)); s.listen(1); s.settimeout(20); print('ready', flush=True)\n"
        "c, _ = s.accept(); print(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG), flush=True)\n"
    )
    listener = subprocess.Popen(
        ["nsenter", "--target", str(lab.pid_of(server)), "--net", "python3", "-c", script],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listener.stdout.readline().strip() == "ready"
        lab.run_in(
            client,
            ["python3", "-c", "import socket; socket.create_connection((%r, 5001), timeout=10).close()"
             % server_address],
        )  # fmt: skip
        return int(listener.stdout.readline())
    finally:
        listener.kill()
        listener.wait()


def test_site_on_stock_hosts_forwards_through_a_dropping_firewall(stock_lab):
    inventory, lab = stock_lab
    for host in GATEWAYS:
        assert lab.run_in(host, ["cat", "/proc/sys/net/ipv4/ip_forward"]).strip() == "0"
    ruleset_before = {host: lab.run_in(host, ["nft", "list", "ruleset"]) for host in GATEWAYS}
    assert all("policy drop" in text for text in ruleset_before.values())

    rc, result, output = run_playbook(SITE, inventory, "--check", "--diff")
    assert rc == 0, output
    planned = task_results(result, HOST_TASK)["hub"]
    assert planned["changed"] and "inserted a jump to pyike_ipsec_forward" in " ".join(planned["changes"])
    for host in GATEWAYS:  # check mode touched nothing
        assert lab.run_in(host, ["cat", "/proc/sys/net/ipv4/ip_forward"]).strip() == "0"
        assert lab.run_in(host, ["nft", "list", "ruleset"]) == ruleset_before[host]
        assert lab.run_in(host, ["sh", "-c", "ls /etc/sysctl.d/60-pyike-ipsec.conf 2>&1 || true"]).count(
            "No such file"
        )

    rc, result, output = run_playbook(SITE, inventory, "--diff")
    assert rc == 0, output
    assert PSK not in output
    hub = task_results(result, HOST_TASK)["hub"]
    assert hub["firewall"] == "nftables" and hub["forwarding"] == ["ipv4"]
    assert sorted(hub["peers"]) == ["198.51.100.1", "203.0.113.1"]
    assert sorted(hub["nftables"]["opened"]) == ["inet filter forward", "inet filter input"]
    for host in GATEWAYS:
        assert lab.run_in(host, ["cat", "/proc/sys/net/ipv4/ip_forward"]).strip() == "1"
        conf = lab.run_in(host, ["cat", "/etc/sysctl.d/60-pyike-ipsec.conf"])
        assert "net.ipv4.ip_forward = 1" in conf and "ipv6" not in conf

    for source, destination in LAN_PINGS:
        assert pings(lab, source, destination), (source, destination)

    # IKE from the peers never reached the site's own rules; from anyone else it does (and is dropped).
    assert site_counter(lab, "hub") == 0
    lab.run_in("internet", ["bash", "-c", "echo probe > /dev/udp/192.0.2.1/500"])
    lab.run_in("c1", ["bash", "-c", "echo probe > /dev/udp/10.1.0.1/4500"])
    assert site_counter(lab, "hub") == 2

    # TCP through the tunnel: the SYN's MSS (1460 from the client's LAN) fits the TUN MTU 1400.
    assert syn_mss_seen_by(lab, "c3", "10.3.0.10", "c2") <= 1400 - 40

    rc, result, output = run_playbook(SITE, inventory, "--diff")
    assert rc == 0, output
    assert changed_tasks(result) == []

    # As at boot: the distribution's ruleset is loaded again (flush ruleset first); the hub drops
    # the tunnelled traffic until pyike-nftables applies the spec the role left.
    lab.run_in("hub", ["nft", "-f", "-"], input_data=("flush ruleset\n" + DROP_BY_DEFAULT).encode())
    assert not pings(lab, "c2", "10.3.0.10", count=2)
    out = lab.run_in("hub", ["/usr/local/sbin/pyike-nftables", "apply", "/etc/pyike/nftables.json"])
    assert "inserted a jump to pyike_ipsec_forward at the top of inet filter forward" in out
    assert pings(lab, "c2", "10.3.0.10")
    rc, result, output = run_playbook(SITE, inventory, "--limit", "hub")
    assert rc == 0 and changed_tasks(result) == [], output


def test_a_killed_spoke_daemon_is_back_within_two_dpd_delays(tmp_path, lab_name):
    dpd_delay = 10
    inventory = build_inventory(tmp_path, lab_name, dpd_delay=dpd_delay)
    rc, _result, output = run_playbook(REPO / "playbooks" / "lab_up.yml", inventory)
    assert rc == 0, output
    lab = Lab(lab_name)
    try:
        rc, _result, output = run_playbook(SITE, inventory)
        assert rc == 0, output
        assert pings(lab, "c2", "10.1.0.10")
        supervisor = lab.run_in("spoke1", ["cat", "/run/pyike/pyiked.pid"]).strip()
        daemon = lab.run_in("spoke1", ["pgrep", "-P", supervisor]).strip()
        lab.run_in("spoke1", ["kill", "-9", daemon])
        deadline = time.monotonic() + 30
        restarted = None
        while time.monotonic() < deadline and restarted is None:
            children = lab.run_in("spoke1", ["sh", "-c", "pgrep -P %s || true" % supervisor]).split()
            restarted = next((pid for pid in children if pid != daemon), None)
            time.sleep(0.1)
        assert restarted, "the supervisor did not restart pyiked"
        restarted_at = time.monotonic()
        back = None
        while back is None and time.monotonic() < restarted_at + 2 * dpd_delay + 60:  # on, to say how late
            if pings(lab, "c2", "10.1.0.10", count=1):
                back = time.monotonic() - restarted_at
        print("tunnel back %s s after the restart of the spoke daemon" % back)
        assert back is not None and back <= 2 * dpd_delay, "tunnel back %s s after the restart" % back
    finally:
        run_playbook(REPO / "playbooks" / "lab_down.yml", inventory)
