"""Routes that steer traffic for the remote traffic selectors into the TUN device, or with kernel ESP
along the path to the peer (pyroute2).

Like strongSwan's, the routes live in their own table (220 by default) that a policy rule consults
before ``main``; each route names the TUN device (userspace ESP) or the peer's next hop (kernel ESP,
as strongSwan's kernel-netlink installs them) and, as preferred source, the gateway's own LAN address,
so packets the gateway itself originates towards the remote network carry a source inside the local
traffic selector and match the IPsec policy instead of leaving in the clear.

Everything is idempotent: ``add`` replaces an equal route, ``remove`` ignores a missing one, and
:meth:`RouteManager.cleanup` removes exactly what this manager added (the rule too, if it added
it and no route is left in the table).

The kernel keeps one route per destination in the table, while several users (a trap, the Child
SAs of its connection) may want one with different preferred sources: the manager counts users per
destination and source, and the route carries a source as long as some user asked for one.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Dict, List, Optional, Tuple, Union

from .netlink import Netlink

ROUTE_TABLE = 220
RULE_PRIORITY = 220
RT_TABLE_MAIN = 254

IpNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Network = Union[str, IpNetwork]


class RouteError(OSError):
    """A route or rule could not be set; the message names the destination and device."""


def networks_of_range(start: int, end: int, version: int) -> List[str]:
    """The CIDR prefixes covering an address range (a traffic selector) exactly."""
    factory = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return [str(net) for net in ipaddress.summarize_address_range(factory(start), factory(end))]


Nexthop = Tuple[int, Optional[str]]  # (output interface index, gateway or None on a direct link)


class RouteManager:
    """Routes to remote selectors over one device (``ifname``), or each along the path to an address
    (``ifname`` None, see :meth:`add`); reference-counted per destination."""

    def __init__(
        self,
        ifname: Optional[str],
        *,
        table: int = ROUTE_TABLE,
        rule_priority: Optional[int] = RULE_PRIORITY,
        netlink: Optional[Netlink] = None,
        protocol: Optional[int] = None,
    ):
        self.ifname = ifname
        self.protocol = protocol  # rtm_protocol marking our routes, so a restart finds a dead run's
        self.table = table
        self.rule_priority = rule_priority if table != RT_TABLE_MAIN else None
        self._netlink = netlink or Netlink()
        self._own_netlink = netlink is None
        self._routes: Dict[str, Dict[Optional[str], int]] = {}  # destination -> source -> users
        self._installed: Dict[str, Optional[str]] = {}  # destination -> the source its kernel route has
        self._nexthops: Dict[str, Nexthop] = {}  # destination -> where its route points (no ifname)
        self._rules_added: List[int] = []

    def close(self) -> None:
        if self._own_netlink:
            self._netlink.close()

    @property
    def routes(self) -> List[Tuple[str, Optional[str]]]:
        return sorted(((net, src) for net, users in self._routes.items() for src in users), key=str)

    # --- netlink requests (run on the netlink thread) ------------------------------------------
    def _ensure_rule(self, family: int) -> None:
        if self.rule_priority is None or family in self._rules_added:
            return
        priority, table = self.rule_priority, self.table

        def ensure(ipr) -> bool:
            for rule in ipr.get_rules(family=family):
                found = rule.get_attr("FRA_TABLE")
                if rule.get_attr("FRA_PRIORITY") == priority and (found or rule["table"]) == table:
                    return False
            ipr.rule("add", family=family, table=table, priority=priority)
            return True

        try:
            if self._netlink.call(ensure):
                self._rules_added.append(family)
        except Exception as exc:  # pyroute2's NetlinkError
            if getattr(exc, "code", None) != errno.EEXIST:
                raise RouteError(
                    getattr(exc, "code", errno.EIO),
                    "cannot add rule 'priority %d lookup %d': %s" % (priority, table, exc),
                ) from None

    def _request(self, command: str, network: IpNetwork, source: Optional[str]) -> bool:
        """Send one route request; False when the device does not exist."""
        spec = dict(
            family=socket.AF_INET6 if network.version == 6 else socket.AF_INET,
            dst=str(network.network_address),
            dst_len=network.prefixlen,
            table=self.table,
        )
        if source and command != "del":
            spec["prefsrc"] = source
        if self.protocol is not None:
            spec["proto"] = self.protocol
        ifname = self.ifname
        nexthop = self._nexthops.get(str(network))
        if (
            nexthop is not None
            and nexthop[1]
            and (":" in nexthop[1]) == (network.version == 6)
            and command != "del"
        ):
            # a gateway of the other family (IPv6 inside IPv4) cannot be one: the device alone serves, as
            # the IPsec policy decides where the packet really goes
            spec["gateway"] = nexthop[1]

        def request(ipr) -> bool:
            if nexthop is not None:
                index = nexthop[0]
            else:
                # an ioctl, where pyroute2 0.7's link_lookup dumps and parses every link: this runs for
                # each Child SA, on the path from IKE_AUTH to "installed"
                try:
                    index = socket.if_nametoindex(ifname) if ifname else 0
                except (OSError, ValueError):  # no such device; ValueError: a name no device can have
                    return False
                if not index:
                    return False
            ipr.route(command, oif=index, **spec)
            return True

        return self._netlink.call(request)

    # --- API ---------------------------------------------------------------------------------
    def path_to(self, address: str, source: Optional[str] = None) -> Nexthop:
        """Where packets from ``source`` (our IKE address) to ``address`` (a peer) go: interface and gateway."""

        def get(ipr) -> Nexthop:
            (route,) = ipr.route("get", dst=address, **({"src": source} if source else {}))[:1]
            return route.get_attr("RTA_OIF"), route.get_attr("RTA_GATEWAY")

        try:
            return self._netlink.call(get)
        except Exception as exc:  # pyroute2's NetlinkError, e.g. ENETUNREACH
            raise RouteError(
                getattr(exc, "code", errno.EIO), "no route to the peer %s: %s" % (address, exc)
            ) from None

    def add(
        self,
        destination: Network,
        source: Optional[str] = None,
        via: Optional[str] = None,
        via_source: Optional[str] = None,
    ) -> None:
        """Route ``destination`` (CIDR) into the device, or (``via``, with no device) along the path to
        that address from ``via_source``, preferring ``source`` as our address."""
        network = ipaddress.ip_network(destination, strict=False)
        users = self._routes.get(str(network), {})
        if via is not None and not users:
            self._nexthops[str(network)] = self.path_to(via, via_source)
        if users:
            if source is not None and self._installed[str(network)] is None:
                self._install(network, source)  # a source beats none; two different sources: the first stays
            users[source] = users.get(source, 0) + 1
            return
        try:
            self._ensure_rule(socket.AF_INET6 if network.version == 6 else socket.AF_INET)
            self._install(network, source)
        except RouteError:
            self._nexthops.pop(str(network), None)
            raise
        self._routes[str(network)] = {source: 1}

    def remove(self, destination: Network, source: Optional[str] = None) -> None:
        """Drop one user; the route goes when the last user removes it, and loses a source no user
        wants any more."""
        network = ipaddress.ip_network(destination, strict=False)
        users = self._routes.get(str(network), {})
        if users.get(source, 0) > 1:
            users[source] -= 1
            return
        users.pop(source, None)
        if not users:
            self._routes.pop(str(network), None)
            self._installed.pop(str(network), None)
            self._delete(network, source)
            self._nexthops.pop(str(network), None)
        elif self._installed[str(network)] == source:
            self._install(network, next((s for s in users if s is not None), None))

    def _install(self, network: IpNetwork, source: Optional[str]) -> None:
        nexthop = self._nexthops.get(str(network))
        device = (
            self.ifname if nexthop is None else "interface %d gateway %s" % (nexthop[0], nexthop[1] or "none")
        )
        what = "route %s via %s (source %s, table %d)" % (network, device, source or "any", self.table)
        try:
            present = self._request("replace", network, source)
        except Exception as exc:
            raise RouteError(getattr(exc, "code", errno.EIO), "cannot add %s: %s" % (what, exc)) from None
        if not present:
            raise RouteError(errno.ENODEV, "cannot add %s: the device does not exist" % what)
        self._installed[str(network)] = source

    def _delete(self, network: IpNetwork, source: Optional[str]) -> None:
        try:
            self._request("del", network, source)  # False: the device went, its routes with it
        except Exception as exc:  # pyroute2's NetlinkError; ESRCH: the route is already gone
            code = getattr(exc, "code", errno.EIO)
            if code not in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
                raise RouteError(
                    code, "cannot remove route %s via %s: %s" % (network, self.ifname, exc)
                ) from None

    def flush_protocol(self) -> int:
        """Delete every route of our table marked with our protocol (what a killed run left behind);
        returns how many."""
        table, protocol = self.table, self.protocol
        if protocol is None:
            return 0

        def flush(ipr) -> int:
            count = 0
            for family in (socket.AF_INET, socket.AF_INET6):
                for route in ipr.get_routes(family=family, table=table):
                    if route["proto"] == protocol:
                        ipr.route("del", family=family, table=table, dst=route.get_attr("RTA_DST"),
                                  dst_len=route["dst_len"], proto=protocol)  # fmt: skip
                        count += 1
            return count

        try:
            return self._netlink.call(flush)
        except Exception as exc:  # pyroute2's NetlinkError
            raise RouteError(getattr(exc, "code", errno.EIO), "cannot flush the routes of table %d: %s"
                             % (table, exc)) from None  # fmt: skip

    def cleanup(self) -> None:
        """Remove every route (and the rule) this manager added; tolerant of a vanished device."""
        for network in list(self._routes):
            self._routes.pop(network, None)
            try:
                self._delete(ipaddress.ip_network(network), self._installed.pop(network, None))
            except RouteError:
                pass
            self._nexthops.pop(network, None)
        priority, table = self.rule_priority, self.table

        def drop_rule(ipr, family: int) -> None:
            if not any(True for _route in ipr.get_routes(family=family, table=table)):
                ipr.rule("del", family=family, table=table, priority=priority)

        for family in self._rules_added:
            try:
                self._netlink.call(drop_rule, family)
            except Exception:  # noqa: S110 - best effort on shutdown
                pass
        self._rules_added = []
