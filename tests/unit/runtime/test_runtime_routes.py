"""Routes along the path to a peer (the kernel dataplane's table 220), in a throw-away network namespace:
the gateway's own packets to the remote LAN get our LAN address as source, an IPv6 LAN behind an IPv4
peer gets a device route, and a restart removes what a killed run left (our protocol only)."""

from __future__ import annotations

import pytest
from netns import run_in_new_netns

SCRIPT = r"""
import json, subprocess
from pyike.runtime.routes import RouteManager
def ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout
ip("link", "set", "lo", "up")
for name in ("wan", "lan"):  # veth pairs: this kernel may have no dummy interfaces
    ip("link", "add", name + "0", "type", "veth", "peer", "name", name + "1")
    ip("link", "set", name + "0", "up"); ip("link", "set", name + "1", "up")
ip("addr", "add", "192.0.2.1/24", "dev", "wan0")
ip("addr", "add", "10.1.0.1/24", "dev", "lan0")
ip("-6", "addr", "add", "fd00:0:1::1/64", "dev", "lan0", "nodad")
ip("route", "add", "default", "via", "192.0.2.254")
ip("route", "add", "10.9.0.0/24", "dev", "wan0", "table", "220")  # someone else's route in the table
first = RouteManager(None, protocol=0x70)
first.add("10.2.0.0/24", "10.1.0.1", via="198.51.100.1", via_source="192.0.2.1")
first.add("fd00:0:2::/64", "fd00:0:1::1", via="198.51.100.1")
result = {
    "v4": ip("route", "show", "table", "220"),
    "v6": ip("-6", "route", "show", "table", "220"),
    "get": ip("route", "get", "10.2.0.5"),
}
# a killed run: its manager is gone without cleanup; the next one removes its routes, not the other
result["flushed"] = RouteManager(None, protocol=0x70).flush_protocol()
result["after"] = ip("route", "show", "table", "220") + ip("-6", "route", "show", "table", "220")
print(json.dumps(result))
"""


@pytest.mark.root
def test_routes_follow_the_path_to_the_peer_with_our_source_and_a_restart_flushes_only_ours():
    result = run_in_new_netns(SCRIPT)
    assert "10.2.0.0/24 via 192.0.2.254 dev wan0 proto 112 src 10.1.0.1" in result["v4"], result["v4"]
    assert "fd00:0:2::/64 dev wan0 proto 112 src fd00:0:1::1" in result["v6"], result["v6"]
    assert "src 10.1.0.1" in result["get"] and "via 192.0.2.254" in result["get"], result["get"]
    assert result["flushed"] == 2
    assert result["after"].strip() == "10.9.0.0/24 dev wan0 scope link", result["after"]
