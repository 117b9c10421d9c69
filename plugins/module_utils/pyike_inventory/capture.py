# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Remote selectors that would capture a gateway's own traffic, and deliberate default routes.

The engine routes every remote selector of an installed Child SA into its TUN device, in a routing
table consulted before ``main`` (runtime/routes.py, like strongSwan's table 220).  A remote selector
that contains the gateway's own LAN takes the LAN away from it; one that contains its own address
or its peer's address sends the tunnel's own IKE and ESP packets into the tunnel.  Such children
are refused.  A child (or spoke) with ``default_route: true`` wants a wide selector such as
0.0.0.0/0: the generated configuration then leaves those addresses out of it, splitting it into
ranges around them (what strongSwan's passthrough policies achieve, here in the selectors, so the
routes the engine derives from them never cover the peer), plus loopback and link-local space.
Route-based tunnels are left alone: their policies are bound to their interface (if_id) and take
only what is routed into it, and the engine routes nothing into it by itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Tuple

from .model import Child, End, Tunnel
from .networks import (
    UNROUTABLE,
    Range,
    address_range,
    address_text,
    common,
    merged,
    parse,
    parsed,
    ranges_of,
    subtract,
)

if TYPE_CHECKING:  # pragma: no cover
    from .resolve import Inventory


def run(inv: Inventory) -> None:
    for tunnel in inv.tunnels:
        if tunnel.route_based:
            continue
        for child in tunnel.children:
            if child.default_route:
                if _unknown_peer_address(inv, tunnel, child):
                    continue
                child.right_ts = _excluded(child.right_ts, viewer=tunnel.left, owner=tunnel.right)
                child.left_ts = _excluded(child.left_ts, viewer=tunnel.right, owner=tunnel.left)
                if _both_ways(inv, tunnel, child):
                    continue
            for side, mine, other in tunnel.ends():
                if mine.managed and mine.host in inv.gateways:
                    _check(inv, tunnel, child, side, mine, other)


def _unknown_peer_address(inv: Inventory, tunnel: Tunnel, child: Child) -> bool:
    """A default route towards a peer given by DNS name or %any cannot leave the peer's address out
    (it is not known when the configuration is built): refused where it reaches beyond the peer's
    own networks, where that address may lie."""
    for side, mine, other in tunnel.ends():
        remote = child.right_ts if side == "left" else child.left_ts
        if not (mine.managed and mine.host in inv.gateways) or not (other.named or not other.reachable):
            continue
        peer_lans = merged(ranges_of(parsed(other.subnets)))
        beyond = [text for text in remote if parse(text) is not None and subtract(parse(text), peer_lans)]
        if not beyond:
            continue
        kind = "a DNS name" if other.named else "%any"
        peer = "%s %s" % (other.label(), other.address) if other.named else other.label()
        inv.add(
            child.path,
            "on %s, tunnel %r child %r has default_route: true towards %s, whose address is %s: it is not known "
            "when the configuration is built, so it cannot be left out of %s, and the tunnel would route its own "
            "IKE and ESP packets into itself; give the peer's IP address, or narrow the selectors and drop "
            "default_route" % (mine.host, tunnel.name, child.name, peer, kind, _joined(beyond)),
        )
        return True
    return False


def _both_ways(inv: Inventory, tunnel: Tunnel, child: Child) -> bool:
    """Selectors that overlap between the two sides of one child: each gateway would route those
    addresses into the tunnel towards the other, and packets would go back and forth until their TTL ends."""
    shared = common(merged(ranges_of(parsed(child.left_ts))), merged(ranges_of(parsed(child.right_ts))))
    if not shared:
        return False
    inv.add(
        child.path,
        "tunnel %r child %r: its left and right selectors overlap (%s): both gateways would route those addresses "
        "into the tunnel towards each other, a routing loop; a default route goes one way: give the other side "
        "its own networks" % (tunnel.name, child.name, _first_of(shared)),
    )
    return True


def _first_of(ranges: List[Range]) -> str:
    more = " and %d more ranges" % (len(ranges) - 1) if len(ranges) > 1 else ""
    return address_text(ranges[0]) + more


def _holes(viewer: End, owner: End) -> List[Range]:
    """What must stay out of the selectors that ``viewer`` routes to ``owner``: its own LAN and
    addresses, the address it sends IKE and ESP to, loopback and link-local space."""
    holes: List[Range] = list(UNROUTABLE)
    holes.extend(ranges_of(parsed(viewer.subnets)))
    for text in [*viewer.own_addresses(), *([owner.address] if owner.reachable else [])]:
        item = address_range(text or "")
        if item is not None:
            holes.append(item)
    return merged(holes)


def _excluded(texts: List[str], viewer: End, owner: End) -> List[str]:
    holes = _holes(viewer, owner)
    out: List[str] = []
    for text in texts:
        ts = parse(text)
        pieces = subtract(ts, holes) if ts is not None else []
        if ts is None or pieces == [ts]:
            out.append(text)
        else:
            out.extend(str(piece) for piece in pieces if str(piece) not in out)
    return out


def _check(inv: Inventory, tunnel: Tunnel, child: Child, side: str, mine: End, other: End) -> None:
    local = child.left_ts if side == "left" else child.right_ts
    remote = child.right_ts if side == "left" else child.left_ts
    remote_ranges = merged(ranges_of(parsed(remote)))
    if not remote_ranges:
        return
    # What lies behind the gateway: its LAN, or without one the networks its side of this child names.
    behind = mine.subnets if mine.subnets else local
    own = merged(ranges_of(parsed(behind)))
    hits: List[Tuple[str, str, Range]] = []  # (kind, what, the range it is about)
    captured = common(remote_ranges, own, inv.comparisons)
    if captured:
        more = " and %d more ranges" % (len(captured) - 1) if len(captured) > 1 else ""
        hits.append(("lan", _lan_text(captured[0], behind) + more, captured[0]))
    peer = [other.address] if other.reachable and not _inside_own_lan(other) else []
    for kind, texts in (("own", mine.own_addresses()), ("peer", peer)):
        for text in texts:
            item = address_range(text or "")
            if item is not None and common(remote_ranges, [item], inv.comparisons):
                what = "its own address %s" % text if kind == "own" else "the peer's address %s" % text
                hits.append((kind, what, item))
    if not hits:
        return
    version, start, end = hits[0][2]
    culprit = next(
        (text for text in remote if _overlaps(text, version, start, end)),
        remote[0],
    )
    consequence = "%s would route %s into the tunnel" % (mine.host, "them" if len(hits) > 1 else "it")
    if any(kind != "lan" for kind, _what, _item in hits):
        consequence += ", the tunnel's own IKE and ESP packets included"
    inv.add(
        child.path,
        "on %s, the remote selectors of tunnel %r child %r (%s) capture %s: %s; narrow the selectors, or for a "
        "deliberate default route set default_route: true (these addresses are then left out)"
        % (
            mine.host,
            tunnel.name,
            child.name,
            culprit,
            _joined([what for _kind, what, _item in hits]),
            consequence,
        ),
    )


def _lan_text(captured: Range, behind: List[str]) -> str:
    """``its own LAN 10.1.0.0/24``, or ``10.1.0.0/24 of its own LAN 10.1.0.0/16`` for a part of it."""
    for text in behind:
        ts = parse(text)
        if ts is not None and ts.version == captured[0] and ts.start <= captured[1] and captured[2] <= ts.end:
            if (ts.start, ts.end) == captured[1:]:
                return "its own LAN %s" % text
            return "%s of its own LAN %s" % (address_text(captured), text)
    return "its own LAN %s" % address_text(captured)


def _inside_own_lan(end: End) -> bool:
    """A peer whose address lies in its own LAN: gateways.py reports that at the peer."""
    item = address_range(end.address or "")
    return item is not None and bool(end.managed and common(merged(ranges_of(parsed(end.subnets))), [item]))


def _overlaps(text: str, version: int, start: int, end: int) -> bool:
    ts = parse(text)
    return ts is not None and ts.version == version and ts.start <= end and start <= ts.end


def _joined(items: List[str]) -> str:
    return items[0] if len(items) == 1 else "%s and %s" % (", ".join(items[:-1]), items[-1])
