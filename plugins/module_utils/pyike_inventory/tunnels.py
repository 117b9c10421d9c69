# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tunnel ends, children and selectors, and the explicit tunnels of ``ipsec_tunnels``.

Topologies (:mod:`.topologies`) build their tunnels from the same pieces: :func:`host_end`,
:func:`check_group`, :func:`psk` and :func:`auth`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from . import interfaces
from ._engine import IdentityError, parse_identity
from .gateways import networks
from .model import Child, End, Path, Tunnel
from .networks import families, peer_address_problem, selector_problem
from .schema_defs import CLOSE_ACTIONS, START_ACTIONS
from .secrets import psk_problem

if TYPE_CHECKING:  # pragma: no cover
    from .resolve import Inventory


def listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


# -- groups and keys ----------------------------------------------------------------------------------


def check_group(inv: Inventory, path: Path, kind: str, name: Any) -> Optional[str]:
    """``name`` if it names a known IKE or ESP group, else None (and a problem)."""
    if not isinstance(name, str):
        return None
    known = inv.ike_groups if kind == "ike" else inv.esp_groups
    if name not in known:
        inv.add(
            path,
            "unknown %s group %r (ipsec_%s_groups defines: %s)"
            % (kind.upper(), name, kind, listing(sorted(known))),
        )
        return None
    return name


def psk(inv: Inventory, path: Path, text: Any, allow_weak: bool) -> Optional[str]:
    """The pre-shared key at ``path`` if it can be used, else None (and a problem without the key)."""
    if not isinstance(text, str) or not text:
        return None
    problem = psk_problem(text, allow_weak)
    if problem:
        inv.add(path, problem)
        return None
    return text


def auth(inv: Inventory, path: Path, raw: Dict[str, Any], key_fields: Sequence[str]) -> str:
    """The tunnel's or topology's auth method, after checking that its key fields fit it.

    These are structural problems (the schema's job before auth: pubkey existed), so like a
    schema problem they silence later messages about the same tunnel."""
    method = raw.get("auth", "psk")
    given = [key for key in key_fields if key in raw]
    if method == "pubkey":
        for key in given:
            inv.add(
                (*path, key), "a pre-shared key is not used with auth: pubkey (remove it or set auth: psk)"
            )
        return method
    problem = None
    if not given:
        problem = "one of %s or %s is required" % (", ".join(key_fields[:-1]), key_fields[-1])
    elif len(key_fields) == 2 and len(given) == 2:
        problem = "give only one of psk or psk_file, not psk and psk_file"
    elif "psk_file" in given and len(given) > 1:
        problem = "give psk_file or psk/psks, not both"
    if problem:
        inv.flag(path, problem)
    return "psk"


def allow_weak(raw: Dict[str, Any]) -> bool:
    return raw.get("allow_weak_psk") is True


# -- ends ---------------------------------------------------------------------------------------------


def host_end(inv: Inventory, path: Path, name: str) -> End:
    end = End(path, host=name)
    gateway = inv.gateways.get(name)
    if gateway is None:
        inv.add(path, "unknown host %r: it is not in the inventory" % name)
        end.known = False
        return end
    if not gateway.address_given:
        inv.add(
            path,
            "host %r has no ipsec_public_address; every inventory host that is a tunnel end needs one" % name,
        )
    end.address = gateway.address
    end.local_address = gateway.local_address
    end.id = gateway.id
    end.subnets = list(gateway.subnets)
    end.subnets_given = gateway.subnets_given
    return end


def _peer_end(inv: Inventory, path: Path, raw: Dict[str, Any]) -> End:
    end = End(path)
    address = raw.get("address")
    if isinstance(address, str):
        problem = peer_address_problem(address)
        if problem:
            inv.add((*path, "address"), problem)
        else:
            end.address = address.strip()
            if end.named:  # the engine compares names in lower case, without the root's dot
                end.address = end.address.rstrip(".").lower()
    identity = raw.get("id")
    if isinstance(identity, str):
        try:
            parse_identity(identity, allow_any=True)
            end.id = identity
        except IdentityError as error:
            inv.add((*path, "id"), str(error))
    if end.named and identity is None:
        inv.add(
            (*path, "id"),
            "is required when address is a DNS name (%s): the peer is known by its id, as the address "
            "the name resolves to may change" % end.address,
        )
    subnets = raw.get("subnets")
    if isinstance(subnets, list):
        end.subnets_given = bool(subnets)
        end.subnets = networks(inv, (*path, "subnets"), subnets)
    port = raw.get("port")
    if isinstance(port, int) and not isinstance(port, bool):
        end.port = port
    return end


def _end(inv: Inventory, path: Path, raw: Any) -> Optional[End]:
    if isinstance(raw, str) and raw:
        return host_end(inv, path, raw)
    if isinstance(raw, dict):
        return _peer_end(inv, path, raw)
    return None


# -- selectors and children -------------------------------------------------------------------------------


def selectors(inv: Inventory, path: Path, items: Any) -> List[str]:
    """The valid selectors of a list; each invalid one is a problem at its index."""
    good = []
    for index, text in enumerate(items if isinstance(items, list) else []):
        if not isinstance(text, str):
            continue
        problem = selector_problem(text)
        if problem:
            inv.add((*path, index), problem)
        else:
            good.append(text.strip())
    return good


def default_selectors(inv: Inventory, path: Path, side: str, end: End) -> List[str]:
    if not end.subnets and not end.subnets_given and end.known:
        if end.managed:
            where = "host %r has no ipsec_lan_subnets" % end.host
        else:
            where = "the unmanaged peer has no subnets"
        inv.add(
            path, "no traffic selectors for the %s side: %s; set them or give %s_ts" % (side, where, side)
        )
    return list(end.subnets)


def check_families(
    inv: Inventory, path: Path, left_ts: List[str], right_ts: List[str], names: Sequence[str]
) -> None:
    """Both sides of a child carry each IP family they use (else that traffic never matches)."""
    if not left_ts or not right_ts:
        return
    left, right = families(left_ts), families(right_ts)
    for side, mine, other_side, other in (
        (names[0], left, names[1], right),
        (names[1], right, names[0], left),
    ):
        for version in sorted(mine - other):
            inv.add(
                path,
                "%s has IPv%d selectors but %s has none, so that traffic could never match"
                % (side, version, other_side),
            )


def _children(
    inv: Inventory,
    path: Path,
    raw: Any,
    ends: Dict[str, Optional[End]],
    route_ts: Optional[List[str]] = None,
) -> List[Child]:
    """The tunnel's children; ``route_ts``: a route-based tunnel's selectors for every address, the
    default of both sides (else each side defaults to its end's subnets)."""
    if raw is None:
        if route_ts is not None:
            return [Child("lan", list(route_ts), list(route_ts), path)]
        left, right = ends["left"], ends["right"]
        left_ts = default_selectors(inv, path, "left", left) if left else []
        right_ts = default_selectors(inv, path, "right", right) if right else []
        check_families(inv, path, left_ts, right_ts, ("left_ts", "right_ts"))
        return [Child("lan", left_ts, right_ts, path)]
    children: List[Child] = []
    seen: Dict[str, int] = {}
    for index, child in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(child, dict):
            continue
        child_path = (*path, "children", index)
        name = child.get("name")
        if isinstance(name, str):
            if name in seen:
                inv.add(
                    (*child_path, "name"),
                    "child name %r is already used by children[%d] of this tunnel" % (name, seen[name]),
                )
            else:
                seen[name] = index
        sides = _child_sides(inv, child_path, child, ends, route_ts)
        check_families(inv, child_path, sides["left"], sides["right"], ("left_ts", "right_ts"))
        group = check_group(inv, (*child_path, "esp_group"), "esp", child.get("esp_group"))
        children.append(
            Child(
                name if isinstance(name, str) else "",
                sides["left"],
                sides["right"],
                child_path,
                esp_group=group,
                default_route=_default_route(inv, child_path, child, route_ts is not None),
            )
        )
    return children


def _child_sides(
    inv: Inventory,
    path: Path,
    child: Dict[str, Any],
    ends: Dict[str, Optional[End]],
    route_ts: Optional[List[str]],
) -> Dict[str, List[str]]:
    """A child's selectors by side: those it gives, else its end's subnets (route-based: everything)."""
    given = {
        side: selectors(inv, (*path, side + "_ts"), child[side + "_ts"])
        for side in ("left", "right")
        if side + "_ts" in child
    }
    sides = {}
    for side, other in (("left", "right"), ("right", "left")):
        end = ends[side]
        if side in given:
            sides[side] = given[side]
        elif route_ts is not None:
            sides[side] = interfaces.side_default(given.get(other), route_ts)
        elif end is not None:
            sides[side] = default_selectors(inv, path, side, end)
        else:
            sides[side] = []
    return sides


def _default_route(inv: Inventory, path: Path, child: Dict[str, Any], route_based: bool) -> bool:
    if child.get("default_route") is not True:
        return False
    if route_based:
        inv.add(
            (*path, "default_route"),
            "is for policy-based tunnels: this tunnel has an interface, and its policies, bound to the "
            "interface, take only what is routed into it, never the gateway's own IKE and ESP packets or its "
            "LAN; remove default_route",
        )
        return False
    return True


# -- ipsec_tunnels ------------------------------------------------------------------------------------------


def resolve(inv: Inventory) -> None:
    tunnels = inv.data.get("ipsec_tunnels")
    for index, raw in enumerate(tunnels if isinstance(tunnels, list) else []):
        if isinstance(raw, dict):
            inv.tunnels.append(_tunnel(inv, ("ipsec_tunnels", index), raw))


def _tunnel(inv: Inventory, path: Path, raw: Dict[str, Any]) -> Tunnel:
    name = raw.get("name")
    left = _end(inv, (*path, "left"), raw.get("left"))
    right = _end(inv, (*path, "right"), raw.get("right"))
    if left is not None and right is not None:
        if not left.managed and not right.managed:
            inv.add(path, "has no managed end: left or right must be an inventory host")
        elif left.managed and left.host == right.host:
            inv.add((*path, "right"), "is the same host as left (%s)" % left.host)
    method = auth(inv, path, raw, ("psk", "psk_file"))
    start_action = raw.get("start_action", "start")
    close_action = raw.get("close_action", "none")
    if left is not None and right is not None:
        _check_reachable(inv, path, left, right, start_action, close_action)
    weak = allow_weak(raw)
    interface = interfaces.resolve(inv, path, raw, left, right)
    route_ts = (
        interfaces.any_selectors(interfaces.tunnel_families(interface, left, right)) if interface else None
    )
    return Tunnel(
        name=name if isinstance(name, str) else "",
        path=path,
        left=left or End((*path, "left")),
        right=right or End((*path, "right")),
        ike_group=check_group(inv, (*path, "ike_group"), "ike", raw.get("ike_group")),
        esp_group=check_group(inv, (*path, "esp_group"), "esp", raw.get("esp_group")),
        children=_children(inv, path, raw.get("children"), {"left": left, "right": right}, route_ts),
        start_action=start_action if start_action in START_ACTIONS else "start",
        close_action=close_action if close_action in CLOSE_ACTIONS else "none",
        encap=raw.get("encap") if isinstance(raw.get("encap"), bool) else None,
        auth=method,
        psk=psk(inv, (*path, "psk"), raw.get("psk"), weak) if method == "psk" else None,
        psk_file=raw.get("psk_file") if isinstance(raw.get("psk_file"), str) and method == "psk" else None,
        psk_path=(*path, "psk"),
        allow_weak_psk=weak,
        interface=interface,
    )


def _check_reachable(
    inv: Inventory, path: Path, left: End, right: End, start_action: Any, close_action: Any = "none"
) -> None:
    """Someone must be able to initiate: the left end, to a right end that has an address."""
    if left.managed and left.address == "%any" and right.managed and right.address == "%any":
        inv.add(
            path,
            "neither %s nor %s has a fixed public address (both are %%any), so neither can reach the other; "
            "one end needs an address" % (left.host, right.host),
        )
    elif right.managed and right.address == "%any":
        inv.add(
            (*path, "right"),
            "host %r has no fixed public address (%%any): the left end cannot reach it, and the right end "
            "never initiates; make %s the left end" % (right.host, right.host),
        )
    elif left.managed and right.address == "%any":
        for key, value in (("start_action", start_action), ("close_action", close_action)):
            if value in ("start", "trap"):
                inv.add(
                    (*path, key),
                    "cannot be %r while right.address is %%any: set %s: none, or give the peer's address"
                    % (value, key),
                )
