# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The resolved inventory: problems, gateways, tunnel ends, tunnels and their children."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from ._engine import format_path

PathElement = Union[str, int]
Path = Tuple[PathElement, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inventory: the data path (``ipsec_tunnels[2].left``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return "%s: %s" % (self.path, self.message) if self.path else self.message


class InventoryError(ValueError):
    """The inventory cannot be turned into engine configurations; ``problems`` lists every reason."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: Tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid inventory")


@dataclass
class Gateway:
    """The ``ipsec_*`` host variables of one inventory host, as far as they are valid."""

    name: str
    address: Optional[str] = None
    id: Optional[str] = None
    subnets: List[str] = field(default_factory=list)
    subnets_given: bool = False  # ipsec_lan_subnets is set (possibly with invalid entries)
    listen: Optional[List[str]] = None
    address_given: bool = False  # ipsec_public_address is set (possibly invalid)
    local_address: Optional[str] = None  # ipsec_local_address: the address it binds, behind 1:1 NAT
    settings: Dict[str, Any] = field(default_factory=dict)  # engine settings (tun_mtu, retransmit_*)

    @property
    def dynamic(self) -> bool:
        """Its public address is not known (``%any``): peers accept it from anywhere, by its id."""
        return self.address == "%any"

    @property
    def bind_address(self) -> Optional[str]:
        """The address its engine binds and sends from: ipsec_local_address, else the public one."""
        return self.local_address or (None if self.dynamic else self.address)


@dataclass
class End:
    """One end of a tunnel: an inventory host (``host`` set) or an unmanaged peer."""

    path: Path
    host: Optional[str] = None
    address: Optional[str] = None
    id: Optional[str] = None
    subnets: List[str] = field(default_factory=list)
    subnets_given: bool = False
    port: Optional[int] = None
    known: bool = True  # False: a host name that is not in the inventory
    local_address: Optional[str] = None  # a managed end behind 1:1 NAT: the address it binds

    @property
    def managed(self) -> bool:
        return self.host is not None

    @property
    def named(self) -> bool:
        """Its address is a DNS name, resolved by the engine whenever it initiates."""
        if self.address is None or self.address == "%any":
            return False
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            return True
        return False

    @property
    def reachable(self) -> bool:
        """Whether the other end can send to it: a known address that is not %any."""
        return self.address is not None and self.address != "%any"

    def own_addresses(self) -> List[str]:
        """Its public address and, behind NAT, the local one (where it receives IKE and ESP)."""
        return [a for a in (self.address, self.local_address) if a is not None and a != "%any"]

    def label(self) -> str:
        if self.host is not None:
            return self.host
        return "the unmanaged peer"

    def describe(self) -> str:
        """``hub (192.0.2.1)`` or ``unmanaged 192.0.2.2 (moon.example.com)``, for one-line summaries."""
        if self.host is not None:
            return "%s (%s)" % (self.host, self.address) if self.address else self.host
        text = "unmanaged %s" % (self.address or "?")
        return "%s (%s)" % (text, self.id) if self.id else text


@dataclass
class Child:
    name: str
    left_ts: List[str]
    right_ts: List[str]
    path: Path
    esp_group: Optional[str] = None  # its own ESP group, else the tunnel's
    default_route: bool = False  # deliberately captures everything: own addresses are left out


@dataclass
class Interface:
    """The interface of a route-based tunnel (``ipsec_tunnels[].interface``): one of this name on each
    managed end, with that end's addresses."""

    name: str
    if_id: int  # the given one, else the engine's default for the name
    if_id_given: bool
    path: Path
    mtu: Optional[int] = None
    addresses: Dict[str, List[str]] = field(default_factory=dict)  # side (left/right) -> its addresses

    def engine_form(self, side: str) -> Dict[str, Any]:
        """The engine's ``interface`` of the connection on the ``side`` end."""
        out: Dict[str, Any] = {"name": self.name}
        if self.if_id_given:
            out["if_id"] = self.if_id
        out["addresses"] = list(self.addresses.get(side, []))
        if self.mtu is not None:
            out["mtu"] = self.mtu
        return out


@dataclass(frozen=True)
class Redundancy:
    """Tunnels of one spoke to the hubs of one topology: meant to overlap (a hub and its backups)."""

    topology: Path
    spoke: str


@dataclass
class Tunnel:
    """A tunnel from ``ipsec_tunnels`` or generated by a topology (``path`` says which)."""

    name: str
    path: Path
    left: End
    right: End
    ike_group: Optional[str]
    esp_group: Optional[str]
    children: List[Child]
    start_action: str = "start"
    close_action: str = "none"
    encap: Optional[bool] = None
    auth: str = "psk"  # or "pubkey": certificates
    psk: Optional[str] = field(default=None, repr=False)
    psk_file: Optional[str] = None
    psk_path: Path = ()  # where the pre-shared key is defined (for psk_ref)
    allow_weak_psk: bool = False
    hosts: Tuple[str, ...] = ()  # a generated tunnel: the hosts its name was made from
    redundancy: Optional[Redundancy] = None
    interface: Optional[Interface] = None  # set: route-based (the engine's mode: route)

    @property
    def route_based(self) -> bool:
        return self.interface is not None

    def ends(self) -> Tuple[Tuple[str, End, End], ...]:
        """``(side, this end, the other end)`` for both sides."""
        return (("left", self.left, self.right), ("right", self.right, self.left))

    def summary(self) -> Dict[str, Any]:
        """A secret-free description of the tunnel (returned by the validate action)."""

        def end(value: End) -> Dict[str, Any]:
            out: Dict[str, Any] = {"host": value.host, "address": value.address}
            if value.id is not None:
                out["id"] = value.id
            out["label"] = value.describe()
            return out

        out: Dict[str, Any] = {
            "name": self.name,
            "defined_at": format_path(self.path),
            "left": end(self.left),
            "right": end(self.right),
            "ike_group": self.ike_group,
            "esp_group": self.esp_group,
            "start_action": self.start_action,
            "close_action": self.close_action,
            "children": [
                {"name": c.name, "left_ts": list(c.left_ts), "right_ts": list(c.right_ts)}
                for c in self.children
            ],
            "line": "%s: %s <-> %s" % (self.name, self.left.describe(), self.right.describe()),
        }
        if self.interface is not None:
            out["interface"] = {"name": self.interface.name, "if_id": self.interface.if_id}
        out["auth"] = self.auth
        if self.auth == "pubkey":
            return out
        if self.psk_file is not None:
            out["psk_file"] = self.psk_file
        else:
            out["psk_ref"] = format_path(self.psk_path)
        return out
