"""XfrmInterfaces' bookkeeping against a recording stand-in for pyroute2's IPRoute: what it creates,
takes over, refuses and removes (this kernel has no XFRM interfaces; tests/vm proves them)."""

from __future__ import annotations

import pytest
from pyike.config.model import RouteInterface
from pyike.runtime.children import DataplaneError
from pyike.runtime.xfrm_interfaces import XfrmInterfaces


class Attrs(dict):
    def get_attr(self, name):
        return self.get(name)


class FakeIPRoute:
    def __init__(self):
        self.links = {}  # name -> {"index", "kind", "if_id", "mtu", "up", "addresses": set()}
        self.closed = False

    def link_lookup(self, ifname):
        return [self.links[ifname]["index"]] if ifname in self.links else []

    def _by_index(self, index):
        return next(link for link in self.links.values() if link["index"] == index)

    def get_links(self, index):
        link = self._by_index(index)
        data = Attrs(IFLA_XFRM_IF_ID=link["if_id"]) if link["kind"] == "xfrm" else None
        return [Attrs(IFLA_LINKINFO=Attrs(IFLA_INFO_KIND=link["kind"], IFLA_INFO_DATA=data))]

    def link(self, command, **kw):
        if command == "add":
            assert kw["kind"] == "xfrm" and kw["xfrm_if_id"]
            self.links[kw["ifname"]] = dict(index=len(self.links) + 10, kind="xfrm", if_id=kw["xfrm_if_id"],
                                            mtu=1500, up=False, addresses={("fe80::1", 64)})  # fmt: skip
        elif command == "set":
            link = self._by_index(kw["index"])
            link["mtu"] = kw.get("mtu", link["mtu"])
            link["up"] = link["up"] or kw.get("state") == "up"
        elif command == "del":
            name = next(n for n, link in self.links.items() if link["index"] == kw["index"])
            del self.links[name]

    def get_addr(self, index):
        return [Attrs({"IFA_ADDRESS": a, "prefixlen": p}) for a, p in self._by_index(index)["addresses"]]

    def addr(self, command, index, address, prefixlen):
        addresses = self._by_index(index)["addresses"]
        (addresses.add if command == "add" else addresses.remove)((address, prefixlen))

    def __getitem__(self, key):  # an address message's prefixlen
        raise KeyError(key)

    def close(self):
        self.closed = True


def interfaces():
    ipr = FakeIPRoute()
    return ipr, XfrmInterfaces(lambda: ipr)


def test_interfaces_are_created_configured_changed_and_removed():
    ipr, made = interfaces()
    made.sync({"ipsec0": RouteInterface("ipsec0", 7, ("169.254.10.1/30",), 1400)})
    link = ipr.links["ipsec0"]
    assert (link["if_id"], link["mtu"], link["up"]) == (7, 1400, True)
    assert link["addresses"] == {("169.254.10.1", 30), ("fe80::1", 64)}  # the kernel's link-local stays
    made.sync(
        {"ipsec0": RouteInterface("ipsec0", 7, ("169.254.20.1/30",)), "ipsec1": RouteInterface("ipsec1", 8)}
    )
    assert ipr.links["ipsec0"]["addresses"] == {("169.254.20.1", 30), ("fe80::1", 64)}
    made.sync({"ipsec1": RouteInterface("ipsec1", 8)})  # a reload without ipsec0's connection
    assert set(ipr.links) == {"ipsec1"}
    made.close()
    assert ipr.links == {} and ipr.closed


def test_an_earlier_runs_interface_is_taken_over_and_a_foreign_one_is_refused_and_kept():
    ipr, made = interfaces()
    ipr.links["ipsec0"] = dict(index=3, kind="xfrm", if_id=7, mtu=1500, up=False, addresses=set())
    ipr.links["eth9"] = dict(index=4, kind="veth", if_id=None, mtu=1500, up=True, addresses=set())
    ipr.links["ipsec2"] = dict(index=5, kind="xfrm", if_id=99, mtu=1500, up=True, addresses=set())
    made.ensure(RouteInterface("ipsec0", 7, ("169.254.10.1/30",)))
    assert ipr.links["ipsec0"]["up"] and made.ours == {"ipsec0": 7}
    with pytest.raises(DataplaneError, match="interface eth9 exists and is not an XFRM interface with if_id 8 "
                                             r"\(it is veth\)"):  # fmt: skip
        made.ensure(RouteInterface("eth9", 8))
    with pytest.raises(DataplaneError, match=r"interface ipsec2 exists .* \(it is xfrm if_id 99\)"):
        made.ensure(RouteInterface("ipsec2", 8))
    made.close()
    assert set(ipr.links) == {"eth9", "ipsec2"}  # never deletes what it did not make or take over


def test_a_refused_sync_changes_nothing_and_a_renamed_interface_keeps_its_if_id():
    ipr, made = interfaces()
    made.sync({"ipsec0": RouteInterface("ipsec0", 7, ("169.254.10.1/30",))})
    ipr.links["eth9"] = dict(index=4, kind="veth", if_id=None, mtu=1500, up=True, addresses=set())
    with pytest.raises(DataplaneError, match="interface eth9 exists and is not an XFRM interface"):
        made.sync({"ipsec1": RouteInterface("ipsec1", 8), "eth9": RouteInterface("eth9", 9)})
    assert set(ipr.links) == {"ipsec0", "eth9"} and made.ours == {"ipsec0": 7}  # ipsec0 kept, ipsec1 not made
    made.sync({"vti0": RouteInterface("vti0", 7)})  # renamed: the old one goes before the new takes if_id 7
    assert set(ipr.links) == {"vti0", "eth9"} and made.ours == {"vti0": 7}
