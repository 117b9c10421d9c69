"""Turn an inventory's lab hosts into a concrete lab plan: addresses, links and routes.

Pure and deterministic, so it is unit-tested without root. The lab has one "internet" host with a
bridge that routes between the documentation ranges (RFC 5737); each site has a gateway whose WAN
sits in one of those ranges and a LAN 10.<site>.0.0/24 with optional client hosts behind it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

WAN_SUBNETS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
INTERNET_HOST = "internet"
ROUTER_HOST_NUMBER = 254
FIRST_CLIENT_NUMBER = 10
ROLES = ("gateway", "client")
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
LAB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")


class LabPlanError(ValueError):
    """An inventory that cannot be turned into a lab; the message names the host and field."""


@dataclass
class Link:
    """One veth pair: end `a` in host `a_host`, end `b` in host `b_host`."""

    a_host: str
    a_name: str
    b_host: str
    b_name: str
    b_bridge: Optional[str] = None  # enslave end b to this bridge in b_host


@dataclass
class HostPlan:
    name: str
    role: str  # gateway, client or internet
    site: Optional[int]
    addresses: Dict[str, List[str]] = field(default_factory=dict)  # ifname -> CIDRs
    bridges: List[str] = field(default_factory=list)
    default_gateway: Optional[str] = None
    default_gateway6: Optional[str] = None
    forwarding: bool = False
    sysctls: Dict[str, str] = field(default_factory=dict)
    nftables: Optional[str] = None  # a ruleset loaded with nft -f once the host's links are up


@dataclass
class LabPlan:
    name: str
    hosts: List[HostPlan]
    links: List[Link]

    def host(self, name: str) -> HostPlan:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _site_number(host: Dict[str, Any]) -> int:
    site = host.get("site")
    if isinstance(site, bool) or not isinstance(site, int) or not 1 <= site <= 250:
        raise LabPlanError(
            "lab host %r: pyike_lab_site must be an integer from 1 to 250 (it numbers the LAN "
            "10.<site>.0.0/24), got %r" % (host.get("name"), site)
        )
    return site


def _cidr(host_name: str, field_name: str, value: Any) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.IPv4Interface(str(value))
    except ValueError as exc:
        raise LabPlanError(
            "lab host %r: %s %r is not an IPv4 address/prefix: %s" % (host_name, field_name, value, exc)
        ) from None
    if "/" not in str(value):
        raise LabPlanError(
            "lab host %r: %s %r needs a prefix length, e.g. 192.0.2.1/24" % (host_name, field_name, value)
        )
    return iface


def default_wan_address(site: int) -> ipaddress.IPv4Interface:
    """Site 1 -> 192.0.2.1/24, site 2 -> 198.51.100.1/24, site 3 -> 203.0.113.1/24, site 4 -> 192.0.2.2/24..."""
    subnet = ipaddress.IPv4Network(WAN_SUBNETS[(site - 1) % len(WAN_SUBNETS)])
    return ipaddress.IPv4Interface(
        "%s/%d" % (subnet.network_address + (site - 1) // len(WAN_SUBNETS) + 1, subnet.prefixlen)
    )


def _router_address(wan: ipaddress.IPv4Interface) -> ipaddress.IPv4Address:
    return wan.network.network_address + ROUTER_HOST_NUMBER


def _forwarding(host: Dict[str, Any]) -> bool:
    value = host.get("forwarding")
    if value is None:
        return True  # gateways route between their LAN and WAN, as the lab has always set up
    if not isinstance(value, bool):
        raise LabPlanError(
            "lab host %r: pyike_lab_forwarding must be true or false, got %r" % (host["name"], value)
        )
    return value


def _nftables(host: Dict[str, Any]) -> Optional[str]:
    value = host.get("nftables")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise LabPlanError(
            "lab host %r: pyike_lab_nftables must be an nftables ruleset (text for nft -f), got %r"
            % (host["name"], value)
        )
    return value or None


def build_plan(lab_name: str, hosts: List[Dict[str, Any]]) -> LabPlan:
    """`hosts`: [{name, role: gateway|client, site: int, wan_address?: CIDR, lan_address?: CIDR,
    forwarding?: bool (gateways; default true), nftables?: ruleset text}]."""
    if not LAB_NAME_RE.match(str(lab_name)):
        raise LabPlanError(
            "lab name %r: use lowercase letters, digits, '-' or '_' (at most 31)" % (lab_name,)
        )
    if not hosts:
        raise LabPlanError(
            "lab %r has no hosts: put hosts with pyike_lab_site and pyike_lab_role in its group" % lab_name
        )
    seen = set()
    for host in hosts:
        name = host.get("name")
        if not isinstance(name, str) or not HOSTNAME_RE.match(name):
            raise LabPlanError(
                "lab host %r: names must be lowercase letters, digits and '-' (at most 32)" % (name,)
            )
        if name in seen or name == INTERNET_HOST:
            raise LabPlanError(
                "lab host %r: name is used twice (or is the reserved %r)" % (name, INTERNET_HOST)
            )
        seen.add(name)
        if host.get("role", "gateway") not in ROLES:
            raise LabPlanError(
                "lab host %r: pyike_lab_role must be one of %s, got %r"
                % (name, ", ".join(ROLES), host.get("role"))
            )

    gateways = sorted((h for h in hosts if h.get("role", "gateway") == "gateway"), key=_site_number)
    clients = sorted(
        (h for h in hosts if h.get("role") == "client"), key=lambda h: (_site_number(h), h["name"])
    )
    gateway_by_site: Dict[int, Dict[str, Any]] = {}
    for gw in gateways:
        site = _site_number(gw)
        if site in gateway_by_site:
            raise LabPlanError(
                "lab hosts %r and %r: both are the gateway of site %d"
                % (gateway_by_site[site]["name"], gw["name"], site)
            )
        gateway_by_site[site] = gw

    internet = HostPlan(
        name=INTERNET_HOST,
        role="internet",
        site=None,
        forwarding=True,
        bridges=["inet0"],
        # All WAN subnets share one bridge: redirects would teach gateways to bypass the router.
        sysctls={"net.ipv4.conf.all.send_redirects": "0", "net.ipv4.conf.inet0.send_redirects": "0"},
    )
    plan_hosts: List[HostPlan] = [internet]
    links: List[Link] = []
    router_addresses = set()
    used_wan = {}
    for index, gw in enumerate(gateways, start=1):
        site = _site_number(gw)
        wan = (
            _cidr(gw["name"], "pyike_lab_wan_address", gw["wan_address"])
            if gw.get("wan_address")
            else default_wan_address(site)
        )
        if wan.ip in used_wan:
            raise LabPlanError(
                "lab host %r: WAN address %s is already used by %r" % (gw["name"], wan.ip, used_wan[wan.ip])
            )
        used_wan[wan.ip] = gw["name"]
        router = _router_address(wan)
        if wan.ip == router:
            raise LabPlanError(
                "lab host %r: WAN address %s is the internet router's address" % (gw["name"], wan)
            )
        router_addresses.add("%s/%d" % (router, wan.network.prefixlen))
        router_addresses.add("2001:db8:%x::fe/64" % site)
        lan = ipaddress.IPv4Interface("10.%d.0.1/24" % site)
        plan_hosts.append(
            HostPlan(
                name=gw["name"],
                role="gateway",
                site=site,
                # Dual stack: 2001:db8:<site>::1/64 on the WAN, fd00:0:<site>::1/64 on the LAN.
                addresses={
                    "wan0": [str(wan), "2001:db8:%x::1/64" % site],
                    "lan0": [str(lan), "fd00:0:%x::1/64" % site],
                },
                bridges=["lan0"],
                default_gateway=str(router),
                default_gateway6="2001:db8:%x::fe" % site,
                forwarding=_forwarding(gw),
                nftables=_nftables(gw),
            )
        )
        links.append(
            Link(
                a_host=gw["name"],
                a_name="wan0",
                b_host=INTERNET_HOST,
                b_name="wan%d" % index,
                b_bridge="inet0",
            )
        )
    internet.addresses["inet0"] = sorted(router_addresses)

    client_count: Dict[int, int] = {}
    for client in clients:
        site = _site_number(client)
        gw = gateway_by_site.get(site)
        if gw is None:
            raise LabPlanError(
                "lab host %r: site %d has no gateway (a host with pyike_lab_role: gateway)"
                % (client["name"], site)
            )
        number = client_count.get(site, 0)
        client_count[site] = number + 1
        if client.get("lan_address"):
            address = _cidr(client["name"], "pyike_lab_lan_address", client["lan_address"])
            if address.network != ipaddress.IPv4Network("10.%d.0.0/24" % site):
                raise LabPlanError(
                    "lab host %r: LAN address %s is outside its site's LAN 10.%d.0.0/24"
                    % (client["name"], address, site)
                )
        else:
            address = ipaddress.IPv4Interface("10.%d.0.%d/24" % (site, FIRST_CLIENT_NUMBER + number))
        plan_hosts.append(
            HostPlan(
                name=client["name"],
                role="client",
                site=site,
                addresses={"eth0": [str(address), "fd00:0:%x::%x/64" % (site, int(address.ip) & 0xFF)]},
                default_gateway="10.%d.0.1" % site,
                default_gateway6="fd00:0:%x::1" % site,
                nftables=_nftables(client),
            )
        )
        links.append(
            Link(
                a_host=client["name"],
                a_name="eth0",
                b_host=gw["name"],
                b_name="lan%d" % (number + 1),
                b_bridge="lan0",
            )
        )
    return LabPlan(name=lab_name, hosts=plan_hosts, links=links)
