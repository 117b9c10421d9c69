# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks across tunnels: names, ends the engine could not tell apart, addresses and IP families of
the two ends, selector counts a TS payload holds, the TUN MTU IPv6 needs, %any identities, and the
interfaces of route-based tunnels (:mod:`.interfaces`)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Dict, List, Set, Tuple

from . import interfaces
from ._engine import format_path
from .model import End, Path, Tunnel
from .networks import families, ts_payload_problem

if TYPE_CHECKING:  # pragma: no cover
    from .resolve import Inventory

IPV6_MIN_MTU = 1280  # RFC 8200 §5


def run(inv: Inventory) -> None:
    _check_names(inv)
    _check_connections(inv)
    interfaces.check_shared(inv)
    for tunnel in inv.tunnels:
        _check_ends(inv, tunnel)
    _check_selector_counts(inv)
    _check_mtu(inv)
    _warn_any_identities(inv)


def _check_names(inv: Inventory) -> None:
    seen: Dict[str, Tunnel] = {}
    for tunnel in inv.tunnels:
        if not tunnel.name:
            continue
        first = seen.setdefault(tunnel.name, tunnel)
        if first is tunnel:
            continue
        where = format_path(first.path)
        if tunnel.path[0] == "ipsec_tunnels":
            inv.add((*tunnel.path, "name"), "tunnel name %r is already used by %s" % (tunnel.name, where))
        elif first.path == tunnel.path and first.hosts != tunnel.hosts:
            inv.add(
                tunnel.path,
                "generates tunnel %r twice, for %s and for %s (characters other than letters, digits, '_' and '-' "
                "in host names become '-'): rename one of the hosts"
                % (tunnel.name, _hosts(first), _hosts(tunnel)),
            )
        else:
            inv.add(tunnel.path, "generates tunnel %r, a name already used by %s" % (tunnel.name, where))


def _hosts(tunnel: Tunnel) -> str:
    names = ["%r" % host for host in tunnel.hosts]
    return "host %s" % names[0] if len(names) == 1 else "hosts %s" % " and ".join(names)


def _check_connections(inv: Inventory) -> None:
    """Per managed host: two tunnels joining the same addresses and identities (the engine would pick
    the first for both).  Between the same two ends that is one tunnel written twice; between a host
    and two other hosts with one address, the duplicate address is reported with the hosts instead."""
    reported: Set[Tuple[str, str]] = set()
    for host in inv.gateways:
        keys: Dict[Tuple[Any, ...], Tuple[Tunnel, End]] = {}
        for tunnel, side in inv.host_tunnels(host):
            mine, other = (tunnel.left, tunnel.right) if side == "left" else (tunnel.right, tunnel.left)
            if mine.address is None or other.address is None:
                continue
            key = (
                mine.local_address or mine.address,
                other.address,
                mine.id or mine.address,
                other.id or other.address,
            )
            first, first_other = keys.setdefault(key, (tunnel, other))
            if first is tunnel or (first.name, tunnel.name) in reported:
                continue
            reported.add((first.name, tunnel.name))
            if first_other.managed and other.managed and first_other.host != other.host:
                continue  # two hosts with one address: gateways.py names both
            inv.add(
                tunnel.path,
                "tunnel %r joins the same addresses and identities as tunnel %r (%s) on %s, so the engine could "
                "not tell them apart; make them children of one tunnel"
                % (tunnel.name, first.name, format_path(first.path), host),
            )


def _check_ends(inv: Inventory, tunnel: Tunnel) -> None:
    left, right = tunnel.left, tunnel.right
    if not left.reachable or not right.reachable or left.named or right.named:
        return  # a DNS name's family and addresses are known when the engine resolves it
    a, b = ipaddress.ip_address(left.address or ""), ipaddress.ip_address(right.address or "")
    if a.version != b.version:
        inv.add(
            tunnel.path,
            "tunnel %r joins %s at %s (IPv%d) and %s at %s (IPv%d): IKE needs both ends in one IP family"
            % (tunnel.name, left.label(), a, a.version, right.label(), b, b.version),
        )
        return
    if left.managed and right.managed and left.host != right.host:
        return  # two hosts with one address: gateways.py names both
    for mine, other in ((left, right), (right, left)):
        if mine.managed and other.reachable and other.address in mine.own_addresses():
            inv.add(
                tunnel.path,
                "tunnel %r has both ends on %s: the %s is %s's own address, so %s would send IKE to itself; give "
                "the peer's own address"
                % (
                    tunnel.name,
                    other.address,
                    "unmanaged peer's address" if not other.managed else "other end's address",
                    mine.host,
                    mine.host,
                ),
            )
            return


def _check_selector_counts(inv: Inventory) -> None:
    """At most 255 selectors per side of a child (one TS payload); one message per definition."""
    offenders: Dict[Tuple[Path, str], List[Tuple[Tunnel, Any, int]]] = {}
    for tunnel in inv.tunnels:
        for child in tunnel.children:
            for side, texts in (("left_ts", child.left_ts), ("right_ts", child.right_ts)):
                if len(texts) > 255 and ts_payload_problem(texts):
                    offenders.setdefault((child.path, side), []).append((tunnel, child, len(texts)))
    for (path, side), found in offenders.items():
        tunnel, child, count = found[0]
        problem = ts_payload_problem(child.left_ts if side == "left_ts" else child.right_ts) or ""
        if tunnel.path[0] == "ipsec_tunnels" and path != tunnel.path:
            inv.add((*path, side), problem)
        elif tunnel.path[0] == "ipsec_tunnels":
            inv.add(path, "%s: %s" % (side, problem))
        else:
            more = " (and %d more tunnels of this topology)" % (len(found) - 1) if len(found) > 1 else ""
            which = "%s's side" % tunnel.right.host if side == "right_ts" else "%s's side" % tunnel.left.host
            inv.add(
                path,
                "tunnel %r%s would carry %d traffic selectors on %s: %s"
                % (tunnel.name, more, count, which, problem),
            )


def _check_mtu(inv: Inventory) -> None:
    for host, gateway in inv.gateways.items():
        mtu = gateway.settings.get("tun_mtu")
        if not isinstance(mtu, int) or mtu >= IPV6_MIN_MTU:
            continue
        for tunnel, _side in inv.host_tunnels(host):
            if any(6 in families(child.left_ts) | families(child.right_ts) for child in tunnel.children):
                inv.add(
                    ("hostvars", host, "ipsec_tun_mtu"),
                    "%d is below %d, the smallest MTU IPv6 allows (RFC 8200 §5), but tunnel %r carries IPv6"
                    % (mtu, IPV6_MIN_MTU, tunnel.name),
                )
                break


def _warn_any_identities(inv: Inventory) -> None:
    for tunnel in inv.tunnels:
        if tunnel.auth != "psk":
            continue
        for end in (tunnel.left, tunnel.right):
            if not end.managed and end.id is not None and end.id.strip().lower() == "%any":
                inv.warn(
                    (*end.path, "id"),
                    "%any accepts any identity: with a pre-shared key, whoever holds the key can pose as this peer "
                    "(and as every other peer that shares it); give the peer's identity, or use auth: pubkey",
                )
