# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a gateway's engine configuration asks of its host: the peers to let IKE and ESP in from, the
traffic each Child SA carries through the TUN device, and the address families to forward.

Reads only ``settings`` (TUN device, MTU, IKE ports) and, per connection, ``remote.address``, ``mode`` and
``interface`` (a route-based connection's traffic crosses its own interface) and each child's
``local_ts`` / ``remote_ts``; nothing else of the configuration (no secret) is looked at.
Selectors are parsed by the engine's own parser; their protocol and ports are ignored here (the
firewall admits the address ranges, the engine's SPD narrows further).
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike.selectors import (
    SelectorError,
    parse_traffic_selector,
)

# The engine's defaults (pyike.config.schema; tests/unit/host keeps them equal).
DEFAULT_TUN_NAME = "pyike0"
DEFAULT_TUN_MTU = 1400
DEFAULT_IKE_PORT = 500
DEFAULT_NAT_T_PORT = 4500
ANY_ADDRESSES = ("%any", "%any4", "%any6")
INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# IP header (20 or 40 octets) and TCP header (20): the largest segment that fits the TUN MTU.
MSS_OVERHEAD = {4: 40, 6: 60}


class TrafficError(ValueError):
    """The configuration cannot be turned into host settings; the message names the field."""


def _mapping(value, where):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TrafficError("%s must be a mapping, not %s" % (where, type(value).__name__))
    return value


def _networks(selectors, where):
    """{4: [networks], 6: [networks]} covering the address ranges of `selectors`."""
    if not isinstance(selectors, list) or not selectors:
        raise TrafficError("%s must be a non-empty list of traffic selectors" % where)
    found = {4: [], 6: []}
    for index, text in enumerate(selectors):
        try:
            selector = parse_traffic_selector(text)
        except SelectorError as exc:
            raise TrafficError("%s[%d]: %s" % (where, index, exc)) from None
        found[selector.version] += selector.networks()
    return {version: collapsed(networks) for version, networks in found.items()}


def collapsed(networks):
    return [str(net) for net in ipaddress.collapse_addresses(sorted(set(networks)))]


def _peer_addresses(address, where, named):
    """The peer's address; None for %any and for a DNS name (noted in `named`): the engine resolves a
    name at each initiation, so the address it has now may not be the one it has when the tunnel starts."""
    if not isinstance(address, str) or not address.strip():
        raise TrafficError("%s must be an address, a DNS name or %%any" % where)
    text = address.strip()
    if text.lower() in ANY_ADDRESSES:
        return None
    try:
        return [ipaddress.ip_address(text)]
    except ValueError:
        named.append(text)
        return None


def _port(settings, key, default):
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise TrafficError("settings.%s must be a port number (1-65535), got %r" % (key, value))
    return value


def host_traffic(config):
    """The host's share of an engine configuration, as the plain data nftables.py and firewalld.py use:
    {tun, tun_mtu, ike_ports, peers: {any, "4": [..], "6": [..]}, tunnels: [{version, local, remote}],
    versions: [4, 6], named: [peers given by DNS name], mss: {"4": n, "6": n},
    interfaces: [{name, mss}]}. A route-based connection's tunnels carry ``interface`` (its interface's
    name, instead of the TUN device), and ``interfaces`` lists those interfaces with their MSS."""
    config = _mapping(config, "the configuration")
    settings = _mapping(config.get("settings"), "settings")
    tun = settings.get("tun_name", DEFAULT_TUN_NAME)
    mtu = settings.get("tun_mtu", DEFAULT_TUN_MTU)
    if not isinstance(tun, str) or not INTERFACE_NAME.fullmatch(tun):
        raise TrafficError(
            "settings.tun_name must be an interface name (1-15 letters, digits, '_', '.', '-'), got %r"
            % (tun,)
        )
    if isinstance(mtu, bool) or not isinstance(mtu, int) or mtu < 576:
        raise TrafficError("settings.tun_mtu must be an MTU of at least 576, got %r" % (mtu,))
    ports = sorted(
        {_port(settings, "ike_port", DEFAULT_IKE_PORT), _port(settings, "nat_t_port", DEFAULT_NAT_T_PORT)}
    )
    peers = {4: [], 6: []}
    any_peer = False
    tunnels = []
    named = []
    interfaces = []
    connections = _mapping(config.get("connections"), "connections")
    for name in sorted(connections):
        where = "connections.%s" % name
        connection = _mapping(connections[name], where)
        remote = _mapping(connection.get("remote"), where + ".remote")
        addresses = _peer_addresses(remote.get("address"), where + ".remote.address", named)
        if addresses is None:
            any_peer = True
        for address in addresses or []:
            peers[address.version].append(ipaddress.ip_network(address))
        interface = _route_interface(connection, where, mtu)
        children = _mapping(connection.get("children"), where + ".children")
        for child_name in sorted(children):
            child_where = "%s.children.%s" % (where, child_name)
            child = _mapping(children[child_name], child_where)
            local = _networks(child.get("local_ts"), child_where + ".local_ts")
            remote_nets = _networks(child.get("remote_ts"), child_where + ".remote_ts")
            for version in (4, 6):
                if local[version] and remote_nets[version]:
                    entry = {"version": version, "local": local[version], "remote": remote_nets[version]}
                    if interface is not None:
                        entry["interface"] = interface["name"]
                        interface["versions"].add(version)
                    if entry not in tunnels:
                        tunnels.append(entry)
        if interface is not None:
            interfaces.append(interface)
    versions = sorted({tunnel["version"] for tunnel in tunnels})
    return {
        "tun": tun,
        "tun_mtu": mtu,
        "ike_ports": ports,
        "peers": {
            "any": any_peer,
            "4": [bare(net) for net in collapsed(peers[4])],
            "6": [bare(net) for net in collapsed(peers[6])],
        },
        "tunnels": tunnels,
        "versions": versions,
        "named": sorted(set(named)),
        "mss": {str(version): mtu - MSS_OVERHEAD[version] for version in versions},
        "interfaces": [
            {"name": i["name"], "mss": {str(v): i["mtu"] - MSS_OVERHEAD[v] for v in sorted(i["versions"])}}
            for i in interfaces
        ],
    }


def _route_interface(connection, where, default_mtu):
    """A route-based connection's interface as {name, mtu, versions}; None for a policy-based one."""
    if connection.get("mode", "policy") != "route":
        return None
    interface = _mapping(connection.get("interface"), where + ".interface")
    name = interface.get("name")
    if not isinstance(name, str) or not INTERFACE_NAME.fullmatch(name):
        raise TrafficError("%s.interface.name must be an interface name, got %r" % (where, name))
    mtu = interface.get("mtu") or default_mtu
    if isinstance(mtu, bool) or not isinstance(mtu, int) or mtu < 576:
        raise TrafficError("%s.interface.mtu must be an MTU of at least 576, got %r" % (where, mtu))
    return {"name": name, "mtu": mtu, "versions": set()}


def bare(network):
    """A host prefix as its address (as nft lists it)."""
    net = ipaddress.ip_network(network)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
