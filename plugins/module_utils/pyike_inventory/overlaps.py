# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Selectors of different tunnels (or children of one tunnel) of one host that overlap: the host could not tell which tunnel a
packet belongs to.

Two children of one host overlap when their local selectors and their remote selectors both
intersect (the engine's narrowing, RFC 7296 §2.9, protocol and ports included).  Comparing every
pair of children is quadratic in the tunnels and in their selectors (a hub's children each list
every spoke); instead one sweep over the remote address ranges, sorted, finds the pairs whose
remote sides touch at all (none on a well-formed hub), and only those are narrowed.  Tunnels of
one spoke to the hubs of one topology overlap on purpose (the hubs back each other up).  A
route-based tunnel's policies are bound to its interface (if_id), so they may overlap those of any
other tunnel; only its own children must not overlap each other.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Iterator, List, Set, Tuple

from ._engine import format_path, narrow
from .networks import parsed

if TYPE_CHECKING:  # pragma: no cover
    from .resolve import Inventory

MAX_REPORTED_PER_HOST = 20


def run(inv: Inventory) -> None:
    reported: Set[Tuple[str, ...]] = set()
    for host in inv.gateways:
        entries = inv.host_tunnels(host)
        if len(entries) > 1 or any(len(tunnel.children) > 1 for tunnel, _side in entries):
            _check_host(inv, host, entries, reported)


def _policies(entries):
    policies = []
    for tunnel, side in entries:
        for child in tunnel.children:
            local = child.left_ts if side == "left" else child.right_ts
            remote = child.right_ts if side == "left" else child.left_ts
            policies.append((tunnel, child, parsed(local), parsed(remote)))
    return policies


def candidates(remotes: List[List], counter: List[int]) -> Iterator[Tuple[int, int]]:
    """Pairs (i < j) of indexes into ``remotes`` (lists of selectors) whose address ranges intersect,
    each once, by a sweep over the ranges sorted by start (``counter[0]`` counts the steps)."""
    ranges = sorted(
        (ts.version, ts.start, ts.end, index) for index, selectors in enumerate(remotes) for ts in selectors
    )
    counter[0] += len(ranges)
    active: List[Tuple[int, int, int]] = []  # heap of (version, end, index)
    seen: Set[Tuple[int, int]] = set()
    for version, start, end, index in ranges:
        while active and (active[0][0] < version or active[0][1] < start):
            heapq.heappop(active)
            counter[0] += 1
        for _version, _end, other in active:
            counter[0] += 1
            if other != index:
                pair = (min(other, index), max(other, index))
                if pair not in seen:
                    seen.add(pair)
                    yield pair
        heapq.heappush(active, (version, end, index))


def _check_host(inv: Inventory, host: str, entries, reported: Set[Tuple[str, ...]]) -> None:
    policies = _policies(entries)
    found = 0
    for i, j in candidates([remote for _t, _c, _l, remote in policies], inv.comparisons):
        tunnel_a, child_a, local_a, remote_a = policies[i]
        tunnel_b, child_b, local_b, remote_b = policies[j]
        if child_a is child_b or (  # a tunnel from a host to itself lists its children twice
            tunnel_a is not tunnel_b
            and (
                (tunnel_a.redundancy is not None and tunnel_a.redundancy == tunnel_b.redundancy)
                or tunnel_a.route_based
                or tunnel_b.route_based
            )
        ):
            continue
        mark = ("overlap", tunnel_a.name, child_a.name, tunnel_b.name, child_b.name)
        if mark in reported:
            continue
        inv.comparisons[0] += len(remote_a) * len(remote_b) + len(local_a) * len(local_b)
        common_remote = narrow(remote_a, remote_b)
        common_local = narrow(local_a, local_b) if common_remote else []
        if not common_local:
            continue
        reported.add(mark)
        found += 1
        if found > MAX_REPORTED_PER_HOST:
            inv.add(
                (),
                "on %s, more tunnels overlap than the first %d reported; fix those and validate again"
                % (host, MAX_REPORTED_PER_HOST),
            )
            return
        if tunnel_a is tunnel_b:
            inv.add(
                child_b.path,
                "the selectors of tunnel %r child %r overlap those of its child %r (%s): traffic %s <-> %s "
                "would match both, and the gateways could not tell which Child SA carries it; give the children "
                "disjoint selectors (protocols or ports may tell them apart)"
                % (
                    tunnel_b.name,
                    child_b.name,
                    child_a.name,
                    format_path(child_a.path),
                    common_local[0],
                    common_remote[0],
                ),
            )
            continue
        inv.add(
            child_b.path,
            "on %s, the selectors of tunnel %r child %r overlap those of tunnel %r child %r (%s): "
            "traffic %s <-> %s would match both"
            % (
                host,
                tunnel_b.name,
                child_b.name,
                tunnel_a.name,
                child_a.name,
                format_path(child_a.path),
                common_local[0],
                common_remote[0],
            ),
        )
