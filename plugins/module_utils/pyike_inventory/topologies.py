# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``ipsec_topologies``: hub_and_spoke (one hub, or several for redundancy) and full_mesh -> tunnels.

A spoke's tunnel to a hub carries the spoke's selectors against the hub's LAN and every other
spoke's; adjacent plain networks are joined into ranges (:func:`.networks.summarize` rules), so a
thousand spokes numbered from one block need a few selectors, not a thousand: a TS payload holds
at most 255, and the engine matches short lists fast.  The union of the other spokes' networks is
computed once per topology (every spoke's list is the whole union without what only it covers),
which keeps the expansion linear in the number of spokes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from . import tunnels as parts
from ._engine import TrafficSelector
from .model import Child, End, Path, Redundancy, Tunnel
from .networks import Range, merged, parse, range_text, subtract
from .schema import NAME_PATTERN

if TYPE_CHECKING:  # pragma: no cover
    from .resolve import Inventory

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")
_NAME = re.compile(NAME_PATTERN)
_MEMBER_OPTIONS = {"hub_and_spoke": ("local_ts", "remote_ts", "default_route"), "full_mesh": ("local_ts",)}


class Member:
    """A topology member: its end, where it is listed, and its own selectors (else its LAN)."""

    def __init__(
        self, end: End, path: Path, local: List[str], remote: Optional[List[str]], options: Dict[str, Any]
    ) -> None:
        self.end = end
        self.path = path
        self.local = local
        self.remote = remote
        self.options = options

    @property
    def host(self) -> str:
        return self.end.host or ""


def safe_name(text: str) -> str:
    """A host name as part of a generated tunnel name."""
    return _UNSAFE_NAME.sub("-", text)


def resolve(inv: Inventory) -> None:
    topologies = inv.data.get("ipsec_topologies")
    for index, raw in enumerate(topologies if isinstance(topologies, list) else []):
        if not isinstance(raw, dict):
            continue
        path: Path = ("ipsec_topologies", index)
        parts.auth(inv, path, raw, ("psk", "psks", "psk_file"))
        if raw.get("type") == "hub_and_spoke":
            _hub_and_spoke(inv, path, raw)
        elif raw.get("type") == "full_mesh":
            _full_mesh(inv, path, raw)
    _check_psks_keys(inv)


def _wrong_fields(
    inv: Inventory, path: Path, raw: Dict[str, Any], fields: Tuple[str, ...], kind: str, use: str
) -> None:
    for key in fields:
        if key in raw:
            inv.add((*path, key), "is not used by %s topologies, which take %s" % (kind, use))


def _listed(
    inv: Inventory, path: Path, raw: Dict[str, Any], list_key: str, group_key: str, exclude: Set[str]
):
    """(host, path to blame, options) of a topology's members, from a list or a group."""
    has_list, has_group = list_key in raw, group_key in raw
    if has_list and has_group:
        inv.add(path, "give %s or %s, not both" % (list_key, group_key))
        return []
    if not has_list and not has_group:
        inv.add(path, "one of %s or %s is required" % (list_key, group_key))
        return []
    if has_list:
        out = []
        for i, item in enumerate(raw[list_key] or []):
            if isinstance(item, str):
                out.append((item, (*path, list_key, i), {}))
            elif isinstance(item, dict) and isinstance(item.get("host"), str):
                out.append((item["host"], (*path, list_key, i), item))
        return out
    group = raw[group_key]
    if not isinstance(group, str):
        return []
    if group not in inv.groups:
        inv.add((*path, group_key), "unknown group %r" % group)
        return []
    members = [host for host in inv.groups[group] if host not in exclude]
    if not members:
        inv.add(
            (*path, group_key), "group %r has no hosts%s" % (group, " besides the hub" if exclude else "")
        )
    return [(host, (*path, group_key), {}) for host in members]


def _members(inv: Inventory, listed, kind: str) -> List[Member]:
    members: List[Member] = []
    seen: Set[str] = set()
    for host, member_path, options in listed:
        if host in seen:
            inv.add(member_path, "host %r is listed twice" % host)
            continue
        seen.add(host)
        end = parts.host_end(inv, member_path, host)
        for key in options:
            if key != "host" and key not in _MEMBER_OPTIONS[kind]:
                inv.add(
                    (*member_path, key),
                    "is not used by the members of %s topologies, which take only local_ts" % kind,
                )
        remote = None
        if "remote_ts" in options and kind == "hub_and_spoke":
            remote = parts.selectors(inv, (*member_path, "remote_ts"), options["remote_ts"])
        if "local_ts" in options:
            local = parts.selectors(inv, (*member_path, "local_ts"), options["local_ts"])
        else:
            local = list(end.subnets)
            if inv.gateways.get(host) is not None and not end.subnets and not end.subnets_given:
                inv.add(
                    member_path,
                    "host %r has no ipsec_lan_subnets, so its tunnels would carry no traffic" % host,
                )
        members.append(Member(end, member_path, local, remote, options))
    return members


def _hubs(inv: Inventory, path: Path, raw: Dict[str, Any]) -> List[Tuple[str, Path]]:
    if "hub" in raw and "hubs" in raw:
        inv.add(path, "give hub or hubs, not both")
        return []
    if "hub" in raw:
        return [(raw["hub"], (*path, "hub"))] if isinstance(raw["hub"], str) and raw["hub"] else []
    if "hubs" in raw:
        items = raw["hubs"] if isinstance(raw["hubs"], list) else []
        return [(name, (*path, "hubs", i)) for i, name in enumerate(items) if isinstance(name, str) and name]
    inv.add(path, "hub or hubs is required for a hub_and_spoke topology")
    return []


def _hub_and_spoke(inv: Inventory, path: Path, raw: Dict[str, Any]) -> None:
    _wrong_fields(
        inv,
        path,
        raw,
        ("members", "members_group"),
        "hub_and_spoke",
        "hub (or hubs) and spokes or spokes_group",
    )
    hub_names = _hubs(inv, path, raw)
    names = {name for name, _where in hub_names}
    listed = _listed(inv, path, raw, "spokes", "spokes_group", names)
    for host, member_path, _options in listed:
        if host in names:
            inv.add(member_path, "the hub %r cannot also be a spoke" % host)
    spokes = _members(inv, [m for m in listed if m[0] not in names], "hub_and_spoke")
    hubs = []
    for name, where in hub_names:
        hub = parts.host_end(inv, where, name)
        if hub.address == "%any":
            inv.add(
                where, "the hub %r needs a fixed public address (not %%any): its spokes initiate to it" % name
            )
        hubs.append(hub)
    if not hubs:
        return
    others = _OtherSpokes(spokes)
    all_known = all(s.end.known for s in spokes)
    given = sum(1 for s in spokes if s.end.subnets_given)
    for hub in hubs:
        for index, spoke in enumerate(spokes):
            remote = _spoke_remote(spoke, hub, others, index)
            quiet = not hub.known or not all_known
            others_given = given - (1 if spoke.end.subnets_given else 0)
            if not remote and not quiet and not hub.subnets_given and not others_given:
                inv.add(
                    hub.path,
                    "neither the hub %r nor the other spokes have ipsec_lan_subnets: the tunnel of spoke %r "
                    "would carry no traffic" % (hub.host, spoke.host),
                )
            several = "hubs" in raw
            name = "%s-%s%s" % (
                raw.get("name", ""),
                safe_name(hub.host or "") + "-" if several else "",
                safe_name(spoke.host),
            )
            child = Child(
                "lan",
                list(spoke.local),
                remote,
                path,
                default_route=spoke.options.get("default_route") is True,
            )
            _check_sides(inv, spoke.path, child, "spoke %r" % spoke.host, "hub %r" % hub.host)
            _generate(
                inv,
                path,
                raw,
                name,
                (spoke.host, hub.host or ""),
                spoke.end,
                hub,
                child,
                Redundancy(path, spoke.host) if several else None,
                (hub.host or "", spoke.host) if several else (spoke.host,),
            )


class _OtherSpokes:
    """The union of the spokes' plain selectors, and per spoke what only it covers (computed once)."""

    def __init__(self, spokes: List[Member]) -> None:
        self.spokes = spokes
        plain: List[Tuple[Range, int]] = []
        self.exact = True
        for index, spoke in enumerate(spokes):
            for text in spoke.local:
                ts = parse(text)
                if ts is None:
                    continue
                if ts.protocol or not ts.any_port:
                    self.exact = False
                plain.append(((ts.version, ts.start, ts.end), index))
        self.union = merged(item for item, _index in plain)
        self.only: Dict[int, List[Range]] = {}
        if not self.exact:
            return
        # Elementary segments with the number of spokes covering them; a segment covered by one spoke
        # is a hole in that spoke's list.
        events: List[Tuple[int, int, int, int]] = []  # (version, address, +1/-1, spoke)
        for (version, start, end), index in plain:
            events.append((version, start, 1, index))
            events.append((version, end + 1, -1, index))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        active: Dict[int, int] = {}
        previous: Optional[Tuple[int, int]] = None
        for version, address, delta, index in events:
            if previous is not None and previous[0] == version and address > previous[1] and len(active) == 1:
                owner = next(iter(active))
                self.only.setdefault(owner, []).append((version, previous[1], address - 1))
            count = active.get(index, 0) + delta
            if count:
                active[index] = count
            else:
                active.pop(index, None)
            previous = (version, address)

    def without(self, index: int) -> List[Range]:
        """The other spokes' networks: the union without what only spoke ``index`` covers."""
        holes = merged(self.only.get(index, []))
        out: List[Range] = []
        for version, start, end in self.union:
            out.extend(
                (ts.version, ts.start, ts.end) for ts in subtract(TrafficSelector(version, start, end), holes)
            )
        return out


def _spoke_remote(spoke: Member, hub: End, others: _OtherSpokes, index: int) -> List[str]:
    """What a spoke reaches through a hub: its own remote_ts, or the hub's LAN and the other spokes'."""
    options = spoke.options
    if spoke.remote is not None:
        return list(spoke.remote)
    if options.get("default_route") is True:
        wanted = ["0.0.0.0/0"]
        if any(text for text in spoke.local if ":" in text):
            wanted.append("::/0")
        return wanted
    if others.exact:
        ranges: List[Range] = []
        for text in hub.subnets:
            ts = parse(text)
            if ts is not None:
                ranges.append((ts.version, ts.start, ts.end))
        ranges.extend(others.without(index))
        return [range_text(item) for item in merged(ranges)]
    remote = list(hub.subnets)
    for other in others.spokes:
        if other is not spoke:
            remote.extend(text for text in other.local if text not in remote)
    return remote


def _full_mesh(inv: Inventory, path: Path, raw: Dict[str, Any]) -> None:
    _wrong_fields(
        inv, path, raw, ("hub", "hubs", "spokes", "spokes_group"), "full_mesh", "members or members_group"
    )
    members = _members(inv, _listed(inv, path, raw, "members", "members_group", set()), "full_mesh")
    if len(members) == 1:
        inv.add(path, "a full mesh needs at least 2 members, got 1 (%s)" % members[0].host)
    for first in range(len(members)):
        for second in range(first + 1, len(members)):
            left, right = members[first], members[second]
            name = "%s-%s-%s" % (raw.get("name", ""), safe_name(left.host), safe_name(right.host))
            if left.end.address == "%any" and right.end.address == "%any":
                inv.add(
                    path,
                    "neither %s nor %s has a fixed public address (both are %%any), so their tunnel %r could not "
                    "be set up; one of them needs an address" % (left.host, right.host, name),
                )
            elif right.end.address == "%any":
                left, right = right, left  # the member without an address initiates
            child = Child("lan", list(left.local), list(right.local), path)
            _generate(
                inv,
                path,
                raw,
                name,
                (members[first].host, members[second].host),
                left.end,
                right.end,
                child,
                None,
                (members[first].host, members[second].host),
            )


def _check_sides(inv: Inventory, path: Path, child: Child, left: str, right: str) -> None:
    """A generated tunnel carries each IP family on both sides, or that traffic never matches."""
    parts.check_families(
        inv, path, child.left_ts, child.right_ts, ("the side of %s" % left, "the side of %s" % right)
    )


def _generate(
    inv: Inventory,
    path: Path,
    raw: Dict[str, Any],
    name: str,
    pair: Tuple[str, str],
    left: End,
    right: End,
    child: Child,
    redundancy: Optional[Redundancy],
    names: Tuple[str, ...],
) -> None:
    if isinstance(raw.get("name"), str) and not _NAME.match(name):
        inv.add(
            path,
            "generated tunnel name %r is not a valid name (at most 64 letters, digits, '_' or '-'); "
            "shorten the topology name" % name,
        )
    psk_path: Path = (*path, "psk")
    key = raw.get("psk")
    psks = raw.get("psks") if isinstance(raw.get("psks"), dict) else {}
    listed = False  # psks has an entry for the pair (None when it could not be templated)
    for entry in ("%s-%s" % pair, "%s-%s" % pair[::-1]):
        if entry in psks:
            key, psk_path, listed = psks[entry], (*path, "psks", entry), True
            break
    psk_file = raw.get("psk_file") if isinstance(raw.get("psk_file"), str) else None
    method = "pubkey" if raw.get("auth") == "pubkey" else "psk"
    if method == "pubkey":
        key = psk_file = None
    elif key is None and psk_file is None and "psks" in raw and not listed:
        inv.add(
            path,
            "no pre-shared key for the tunnel between %s and %s: give psk, psks[%r] or psk_file"
            % (pair[0], pair[1], "%s-%s" % pair),
        )
    start_action = raw.get("start_action", "start")
    close_action = raw.get("close_action", "none")
    weak = parts.allow_weak(raw)
    inv.tunnels.append(
        Tunnel(
            name=name,
            path=path,
            left=left,
            right=right,
            ike_group=parts.check_group(inv, (*path, "ike_group"), "ike", raw.get("ike_group")),
            esp_group=parts.check_group(inv, (*path, "esp_group"), "esp", raw.get("esp_group")),
            children=[child],
            start_action=start_action if start_action in parts.START_ACTIONS else "start",
            close_action=close_action if close_action in parts.CLOSE_ACTIONS else "none",
            encap=raw.get("encap") if isinstance(raw.get("encap"), bool) else None,
            auth=method,
            psk=parts.psk(inv, psk_path, key, weak) if psk_file is None else None,
            psk_file=psk_file,
            psk_path=psk_path,
            allow_weak_psk=weak,
            hosts=names,
            redundancy=redundancy,
        )
    )


def _check_psks_keys(inv: Inventory) -> None:
    topologies = inv.data.get("ipsec_topologies")
    by_path: Dict[Path, List[str]] = {}
    for tunnel in inv.tunnels:
        if tunnel.left.host and tunnel.right.host:
            pairs = by_path.setdefault(tunnel.path, [])
            pairs.append("%s-%s" % (tunnel.left.host, tunnel.right.host))
            pairs.append("%s-%s" % (tunnel.right.host, tunnel.left.host))
    for index, raw in enumerate(topologies if isinstance(topologies, list) else []):
        if not isinstance(raw, dict) or not isinstance(raw.get("psks"), dict):
            continue
        path: Path = ("ipsec_topologies", index)
        pairs = by_path.get(path, [])
        known = set(pairs)
        for key in raw["psks"]:
            if key not in known:
                inv.add(
                    (*path, "psks", key),
                    "names no tunnel of this topology; the keys are host pairs: %s"
                    % parts.listing(pairs[::2]),
                )
