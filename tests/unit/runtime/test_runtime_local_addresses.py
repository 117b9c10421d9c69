"""The host's address list (runtime/local_addresses.py): dumped once, again only after the kernel announces
a change, in a throw-away network namespace (root)."""

from __future__ import annotations

import os

import pytest
from netns import run_in_new_netns

pytestmark = pytest.mark.root

SCRIPT = r"""
import json, subprocess
from pyike.runtime.local_addresses import LocalAddresses
from pyike.runtime.netlink import Netlink
from pyike.runtime.installer import _local_addresses_in
from pyike.selectors import parse_traffic_selector

class CountingNetlink(Netlink):
    dumps = 0
    def call(self, fn, *args, **kwargs):
        CountingNetlink.dumps += 1
        return super().call(fn, *args, **kwargs)

def ip(*args):
    subprocess.run(["ip", *args], check=True)

ip("link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
ip("link", "set", "lan0", "up")
ip("address", "add", "10.1.0.1/24", "dev", "lan0")
netlink = CountingNetlink()
addresses = LocalAddresses(netlink)
out = {"first": sorted(map(str, addresses.current()))}
for _i in range(5):
    addresses.current()
out["dumps after six look-ups"] = CountingNetlink.dumps
ip("address", "add", "fd01::1/64", "dev", "lan0", "nodad")
out["after an address came"] = sorted(map(str, addresses.current()))
ip("address", "del", "10.1.0.1/24", "dev", "lan0")
out["after one went"] = sorted(map(str, addresses.current()))
out["dumps"] = CountingNetlink.dumps
ip("address", "add", "10.1.0.1/24", "dev", "lan0")
lan = [parse_traffic_selector("10.1.0.0/24"), parse_traffic_selector("fd01::/64")]
out["sources"] = list(_local_addresses_in(lan, addresses))
addresses.close()
# where no notification socket opens (a kernel or seccomp policy refusing it), every look-up dumps
import pyike.runtime.local_addresses as module
module._open_watch = lambda: None
blind = LocalAddresses(netlink)
before = CountingNetlink.dumps
blind.current(); blind.current()
out["dumps without notifications"] = CountingNetlink.dumps - before
netlink.close()
print(json.dumps(out))
"""


def test_the_address_list_is_kept_until_the_kernel_reports_a_change():
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace)")
    out = run_in_new_netns(SCRIPT)
    assert "10.1.0.1" in out["first"] and "fd01::1" not in out["first"], out
    assert out["dumps after six look-ups"] == 1
    assert "fd01::1" in out["after an address came"] and "10.1.0.1" in out["after an address came"]
    assert "10.1.0.1" not in out["after one went"] and "fd01::1" in out["after one went"]
    assert out["dumps"] == 3
    assert out["sources"] == ["10.1.0.1", "fd01::1"]
    assert out["dumps without notifications"] == 2
