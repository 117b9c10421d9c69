# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The gateway variables of each host: addresses (public, local behind NAT, %any), identity, LAN,
listen addresses and engine settings, with the checks that need only the hosts themselves."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

from ._engine import IdentityError, parse_identity
from .model import Gateway, Path
from .networks import address_problem, network_problem
from .schema import SETTINGS_VARIABLES

if TYPE_CHECKING:  # pragma: no cover
    from .resolve import Inventory

HOSTVARS = "hostvars"


def resolve(inv: Inventory) -> None:
    for name, values in inv.raw_hosts.items():
        inv.gateways[name] = _gateway(inv, name, values)
    _check_duplicate_addresses(inv)
    _check_local_addresses(inv)
    _check_duplicate_ids(inv)


def _gateway(inv: Inventory, name: str, values: Dict[str, Any]) -> Gateway:
    prefix: Path = (HOSTVARS, name)
    gateway = Gateway(name)
    address = values.get("ipsec_public_address")
    gateway.address_given = address is not None
    if isinstance(address, str):
        problem = None if address.strip() == "%any" else address_problem(address)
        if problem:
            inv.add((*prefix, "ipsec_public_address"), problem)
        else:
            gateway.address = address.strip()
    local = values.get("ipsec_local_address")
    if isinstance(local, str):
        problem = address_problem(local)
        if problem:
            inv.add((*prefix, "ipsec_local_address"), problem)
        elif gateway.address and not gateway.dynamic and _version(local) != _version(gateway.address):
            inv.add(
                (*prefix, "ipsec_local_address"),
                "%s is IPv%d but ipsec_public_address %s is IPv%d: a 1:1 NAT keeps the IP family"
                % (local.strip(), _version(local), gateway.address, _version(gateway.address)),
            )
        elif local.strip() != gateway.address:
            gateway.local_address = local.strip()
    identity = values.get("ipsec_id")
    if isinstance(identity, str):
        try:
            parse_identity(identity)
            gateway.id = identity
        except IdentityError as error:
            inv.add((*prefix, "ipsec_id"), str(error))
    subnets = values.get("ipsec_lan_subnets")
    if isinstance(subnets, list):
        gateway.subnets_given = bool(subnets)
        gateway.subnets = networks(inv, (*prefix, "ipsec_lan_subnets"), subnets)
    for variable, setting in SETTINGS_VARIABLES.items():
        value = values.get(variable)
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and not inv.flagged((*prefix, variable))
        ):
            gateway.settings[setting] = value
    _check_dynamic(inv, prefix, gateway, values)
    _check_address_outside_lan(inv, prefix, gateway)
    listen = values.get("ipsec_listen")
    if isinstance(listen, list):
        _listen(inv, prefix, gateway, listen)
    return gateway


def _version(text: str) -> int:
    return ipaddress.ip_address(text.strip()).version


def networks(inv: Inventory, path: Path, items: Sequence[Any]) -> List[str]:
    """The valid CIDR networks of a list; each invalid one is a problem at its index."""
    good = []
    for index, text in enumerate(items):
        if not isinstance(text, str):
            continue
        problem = network_problem(text)
        if problem:
            inv.add((*path, index), problem)
        else:
            good.append(text.strip())
    return good


def _check_dynamic(inv: Inventory, prefix: Path, gateway: Gateway, values: Dict[str, Any]) -> None:
    """A gateway whose public address is %any binds a local address and is recognized by its id."""
    if not gateway.dynamic:
        return
    missing = [
        name
        for name, have in (("ipsec_local_address", "ipsec_local_address" in values), ("ipsec_id", gateway.id))
        if not have
    ]
    if missing:
        inv.add(
            (*prefix, "ipsec_public_address"),
            "is %%any (a dynamic address), so %s %s required: the engine binds the local address, and its "
            "peers, which accept it from any address, recognize it by its identity"
            % (" and ".join(missing), "is" if len(missing) == 1 else "are"),
        )


def _check_address_outside_lan(inv: Inventory, prefix: Path, gateway: Gateway) -> None:
    """Peers route the gateway's LAN into their tunnels: its public address must not be in it."""
    if gateway.address is None or gateway.dynamic:
        return
    address = ipaddress.ip_address(gateway.address)
    for index, text in enumerate(gateway.subnets):
        network = ipaddress.ip_network(text)
        if address.version == network.version and address in network:
            inv.add(
                (*prefix, "ipsec_public_address"),
                "%s is inside the gateway's own LAN %s (ipsec_lan_subnets[%d]): its peers route that LAN "
                "into the tunnel, so their IKE and ESP packets to %s would go into the tunnel itself; the "
                "public address must lie outside the LAN" % (address, network, index, address),
            )
            return


def _listen(inv: Inventory, prefix: Path, gateway: Gateway, listen: List[Any]) -> None:
    good = []
    for index, text in enumerate(listen):
        if not isinstance(text, str):
            continue
        problem = address_problem(text) if text.strip() not in ("0.0.0.0", "::") else None  # noqa: S104
        if problem:
            inv.add((*prefix, "ipsec_listen", index), problem)
        else:
            good.append(text.strip())
    gateway.listen = good
    for wildcard in [a for a in good if ipaddress.ip_address(a).is_unspecified]:
        version = ipaddress.ip_address(wildcard).version
        also = [a for a in good if a != wildcard and ipaddress.ip_address(a).version == version]
        if also:
            inv.add(
                (*prefix, "ipsec_listen"),
                "%s already covers every IPv%d address; binding %s as well would fail"
                % (wildcard, version, ", ".join(also)),
            )
    bind = gateway.bind_address
    if bind is None or len(good) != len(listen):
        return
    address = ipaddress.ip_address(bind)
    wildcard = ipaddress.ip_address("0.0.0.0" if address.version == 4 else "::")  # noqa: S104
    if not any(ipaddress.ip_address(a) in (address, wildcard) for a in good):
        variable = "ipsec_local_address" if gateway.local_address else "ipsec_public_address"
        inv.add(
            (*prefix, "ipsec_listen"),
            "does not include %s %s (or %s): the engine could not use it for IKE"
            % (variable, address, wildcard),
        )


def _check_duplicate_addresses(inv: Inventory) -> None:
    """Two gateways with one public address: almost always a copy-pasted host entry."""
    _check_unique(
        inv,
        "ipsec_public_address",
        lambda g: str(ipaddress.ip_address(g.address)) if g.address and not g.dynamic else None,
        "%s is also the ipsec_public_address of %s: a copy-pasted address? Each gateway needs its own public "
        "address: peers could not tell the two apart, and a tunnel between them would join a host to itself",
    )


def _check_local_addresses(inv: Inventory) -> None:
    """A gateway's ipsec_local_address that is another gateway's public address: it would bind its
    peer's address.  Two gateways behind different NATs may share one private local address."""
    public = {}
    for name, gateway in sorted(inv.gateways.items()):
        if gateway.address and not gateway.dynamic:
            public.setdefault(str(ipaddress.ip_address(gateway.address)), name)
    for name, gateway in inv.gateways.items():
        if not gateway.local_address:
            continue
        owner = public.get(str(ipaddress.ip_address(gateway.local_address)))
        if owner is not None and owner != name:
            inv.add(
                (HOSTVARS, name, "ipsec_local_address"),
                "%s is the ipsec_public_address of %s: a copy-pasted address? %s would bind and send from "
                "another gateway's address" % (gateway.local_address, owner, name),
            )


def _check_duplicate_ids(inv: Inventory) -> None:
    """Two gateways with one ipsec_id: a copy-pasted host entry again; a peer picks the connection
    and the key by the identity it is shown, so it would take one gateway for the other."""
    _check_unique(
        inv,
        "ipsec_id",
        lambda g: repr(g.id) if g.id else None,
        "%s is also the ipsec_id of %s: a copy-pasted identity? Each gateway needs its own: a peer finds the "
        "connection and its key by the identity it is shown, so it would take one gateway for the other",
    )


def _check_unique(
    inv: Inventory, variable: str, value_of: Callable[[Gateway], Optional[str]], message: str
) -> None:
    """Every gateway after the first (in name order) that shares a value is reported, naming the first."""
    owners: Dict[str, List[str]] = {}
    for name, gateway in inv.gateways.items():
        value = value_of(gateway)
        if value is not None:
            owners.setdefault(value, []).append(name)
    for value, names in owners.items():
        first, *others = sorted(names)
        for name in others:
            inv.add((HOSTVARS, name, variable), message % (value, first))
