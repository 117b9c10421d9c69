# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Route-based tunnels: the ``interface`` of an ``ipsec_tunnels`` entry, the selectors its children
default to, and interfaces that two tunnels of one host would share.

A route-based tunnel becomes the engine's ``mode: route`` on each managed end: an interface of the
tunnel's interface name, with that end's addresses, whose if_id binds the Child SAs' states and
policies (an XFRM interface in kernel mode, a TUN device with its own SPD in userspace mode).  What
crosses is decided by routes into the interface, so the default child carries everything
(0.0.0.0/0, and ::/0 when the tunnel has IPv6 around it) on both sides.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Set

from ._engine import DEFAULT_TUN_NAME, default_if_id, format_path
from .model import End, Interface, Path, Tunnel
from .networks import families, interface_address_problem

if TYPE_CHECKING:  # pragma: no cover
    from .resolve import Inventory

ANY_SELECTORS = {4: "0.0.0.0/0", 6: "::/0"}


def any_selectors(versions: Iterable[int]) -> List[str]:
    """Selectors for every address of the IP families ``versions``."""
    return [ANY_SELECTORS[version] for version in sorted(set(versions))]


def resolve(
    inv: Inventory, path: Path, raw: Dict[str, Any], left: Optional[End], right: Optional[End]
) -> Optional[Interface]:
    """The interface of the tunnel at ``path``, or None for a policy-based tunnel.

    A tunnel whose interface has problems is still route-based (its children default to every
    address), so that no policy-based check adds messages about what is really a typo in the
    interface; its name is empty when the name is not usable."""
    spec = raw.get("interface")
    if not isinstance(spec, dict):
        return None
    where = (*path, "interface")
    name = _name(inv, where, spec.get("name"))
    if_id = spec.get("if_id")
    given = isinstance(if_id, int) and not isinstance(if_id, bool) and not inv.flagged((*where, "if_id"))
    mtu = spec.get("mtu")
    interface = Interface(
        name=name,
        if_id=if_id if given else (default_if_id(name) if name else 0),
        if_id_given=given,
        path=where,
        mtu=mtu if isinstance(mtu, int) and not isinstance(mtu, bool) else None,
    )
    for side, end in (("left", left), ("right", right)):
        interface.addresses[side] = _addresses(inv, where, side, end, spec.get(side + "_addresses"))
    _check_distinct_addresses(inv, where, interface)
    return interface


def _name(inv: Inventory, where: Path, name: Any) -> str:
    """The interface name when it is usable, else '' (the schema reports a malformed one)."""
    if not isinstance(name, str) or inv.flagged((*where, "name")):
        return ""
    if name == DEFAULT_TUN_NAME:
        inv.add(
            (*where, "name"),
            "%r is the engine's own TUN device (settings.tun_name), which carries the policy-based tunnels in "
            "userspace mode; choose another name" % name,
        )
        return ""
    return name


def _addresses(inv: Inventory, where: Path, side: str, end: Optional[End], items: Any) -> List[str]:
    """The valid addresses of one side, normalized as the engine writes them (169.254.10.1/30)."""
    key = side + "_addresses"
    if not isinstance(items, list) or inv.flagged((*where, key)):
        return []
    if items and end is not None and not end.managed:
        inv.add(
            (*where, key),
            "the %s end is an unmanaged peer: the interface is made only on managed ends, so these addresses "
            "would go unused; configure them on the peer itself and remove %s" % (side, key),
        )
        return []
    good = []
    for index, text in enumerate(items):
        if not isinstance(text, str):
            continue
        problem = interface_address_problem(text)
        if problem:
            inv.add((*where, key, index), problem)
        else:
            good.append(str(ipaddress.ip_interface(text.strip())))
    return good


def _check_distinct_addresses(inv: Inventory, where: Path, interface: Interface) -> None:
    """The two ends' interfaces cannot have one address (a copied line, most likely)."""
    left = {ipaddress.ip_interface(text).ip: index for index, text in enumerate(interface.addresses["left"])}
    for index, text in enumerate(interface.addresses["right"]):
        address = ipaddress.ip_interface(text).ip
        if address in left:
            inv.add(
                (*where, "right_addresses", index),
                "%s is also the left end's address (left_addresses[%d]): the two ends need different "
                "addresses" % (address, left[address]),
            )


# -- default selectors ------------------------------------------------------------------------------------


def tunnel_families(interface: Interface, left: Optional[End], right: Optional[End]) -> Set[int]:
    """IPv4 always; IPv6 too when an interface address or either end's subnets are IPv6."""
    texts = [*interface.addresses["left"], *interface.addresses["right"]]
    versions = {ipaddress.ip_interface(text).version for text in texts}
    for end in (left, right):
        if end is not None:
            versions |= families(end.subnets)
    return versions | {4}


def side_default(given_other: Optional[List[str]], tunnel_selectors: List[str]) -> List[str]:
    """What a side that a child of a route-based tunnel leaves out carries: every address, in the IP
    families the child's other side gives (so the two sides match), else in the tunnel's."""
    if given_other:
        return any_selectors(families(given_other)) or list(tunnel_selectors)
    return list(tunnel_selectors)


# -- across tunnels ---------------------------------------------------------------------------------------


def check_shared(inv: Inventory) -> None:
    """Per managed host: two route-based tunnels with one interface name or one if_id (the engine
    would refuse the second, naming only connections)."""
    for host in inv.gateways:
        by_name: Dict[str, Tunnel] = {}
        by_if_id: Dict[int, Tunnel] = {}
        for tunnel, _side in inv.host_tunnels(host):
            interface = tunnel.interface
            if interface is None or not interface.name:
                continue
            first = by_name.setdefault(interface.name, tunnel)
            if first is not tunnel:
                inv.add(
                    (*interface.path, "name"),
                    "on %s, interface %r is already that of tunnel %r (%s): each route-based tunnel of a "
                    "host needs an interface of its own" % (host, interface.name, first.name, _where(first)),
                )
                continue  # its if_id (the same by default) is part of the same mistake
            first = by_if_id.setdefault(interface.if_id, tunnel)
            if first is not tunnel:
                inv.add(
                    (*interface.path, "if_id") if interface.if_id_given else interface.path,
                    "on %s, %s is already that of interface %r of tunnel %r (%s): each route-based tunnel of a "
                    "host needs an if_id of its own; set if_id on one"
                    % (host, _if_id_text(interface), _name_of(first), first.name, _where(first)),
                )


def _where(tunnel: Tunnel) -> str:
    return format_path(tunnel.interface.path if tunnel.interface else tunnel.path)


def _name_of(tunnel: Tunnel) -> str:
    return tunnel.interface.name if tunnel.interface else ""


def _if_id_text(interface: Interface) -> str:
    if interface.if_id_given:
        return "if_id %d" % interface.if_id
    return "if_id %d (the engine's default for the name %r)" % (interface.if_id, interface.name)
