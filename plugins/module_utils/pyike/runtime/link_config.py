"""The addresses, MTU and state of a route-based connection's interface (XFRM interface or TUN device)."""

from __future__ import annotations

import ipaddress
from typing import Any


def configure_link(ipr: Any, index: int, spec: Any) -> None:
    """Give link ``index`` the MTU (if set) and exactly the addresses of ``spec`` (a config.model.RouteInterface),
    then set it up. IPv6 link-local addresses are the kernel's own and stay; 169.254/16 ones are the operator's."""
    if spec.mtu:
        ipr.link("set", index=index, mtu=spec.mtu)
    current = {
        (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
        for a in ipr.get_addr(index=index)
        if not _ipv6_link_local(a.get_attr("IFA_ADDRESS"))
    }
    wanted = set()
    for text in spec.addresses:
        interface = ipaddress.ip_interface(text)
        wanted.add((str(interface.ip), interface.network.prefixlen))
    for address, prefixlen in sorted(wanted - current):
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
    for address, prefixlen in sorted(current - wanted):
        ipr.addr("del", index=index, address=address, prefixlen=prefixlen)
    ipr.link("set", index=index, state="up")


def _ipv6_link_local(text: str) -> bool:
    address = ipaddress.ip_address(text)
    return address.version == 6 and address.is_link_local
