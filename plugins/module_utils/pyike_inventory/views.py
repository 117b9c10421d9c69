# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The inventory as every gateway sees it: one check whatever the play, the host order or where the
variables are defined (all, group_vars, host_vars).

The global variables (ipsec_tunnels, ipsec_topologies, the proposal groups) may be defined in any
group or host; each host sees its own merge.  The gateway role validates once, with the variables
of whichever host comes first in its play, so every gateway must see the same values: otherwise
the outcome would depend on host order.  :func:`check_views` takes each host's view, compares the views
of the gateways (hosts with gateway variables, and hosts that some view names as a tunnel end or
topology member), reports each variable they disagree on with the hosts on each side, and
validates each distinct view, naming the host whose view a problem comes from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from .build import check as engine_check
from .model import Problem
from .resolve import Inventory
from .schema import HOST_VARIABLES

MAX_LISTED = 5


@dataclass
class HostView:
    """One inventory host: its own gateway variables (and group_names), the global variables as it
    sees them, and the paths (and messages) of global values that could not be templated for it."""

    name: str
    own: Dict[str, Any]
    view: Dict[str, Any]
    errors: List[Tuple[str, str]] = field(default_factory=list)


@dataclass
class Outcome:
    inventory: Optional[Inventory]  # the checked inventory when every gateway sees one; else None
    problems: List[str]
    warnings: List[str]


def named_hosts(view: Mapping[str, Any], groups: Mapping[str, Sequence[str]]) -> Set[str]:
    """The hosts a view names as tunnel ends or topology members (groups expanded)."""
    names: Set[str] = set()
    tunnels = view.get("ipsec_tunnels")
    for tunnel in tunnels if isinstance(tunnels, list) else []:
        if isinstance(tunnel, dict):
            names.update(v for v in (tunnel.get("left"), tunnel.get("right")) if isinstance(v, str))
    topologies = view.get("ipsec_topologies")
    for topology in topologies if isinstance(topologies, list) else []:
        if not isinstance(topology, dict):
            continue
        if isinstance(topology.get("hub"), str):
            names.add(topology["hub"])
        for key in ("hubs", "spokes", "members"):
            for item in topology.get(key) if isinstance(topology.get(key), list) else []:
                host = item.get("host") if isinstance(item, dict) else item
                if isinstance(host, str):
                    names.add(host)
        for key in ("spokes_group", "members_group"):
            if isinstance(topology.get(key), str):
                names.update(groups.get(topology[key], ()))
    return names


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _hosts_text(names: Sequence[str]) -> str:
    shown = list(names[:MAX_LISTED])
    if len(names) > MAX_LISTED:
        return "%s and %d more" % (", ".join(shown), len(names) - MAX_LISTED)
    return shown[0] if len(shown) == 1 else "%s and %s" % (", ".join(shown[:-1]), shown[-1])


def _size(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return " (%d %s)" % (len(value), "entry" if len(value) == 1 else "entries")
    return ""


def _disagreements(gateways: List[HostView]) -> List[Problem]:
    problems = []
    keys = sorted({key for host in gateways for key in host.view})
    for key in keys:
        by_value: Dict[str, List[str]] = {}
        values: Dict[str, Any] = {}
        for host in gateways:
            text = _canonical(host.view[key]) if key in host.view else ""
            by_value.setdefault(text, []).append(host.name)
            values[text] = host.view.get(key)
        if len(by_value) < 2:
            continue
        parts, letter = [], ord("A")
        for text, names in sorted(by_value.items(), key=lambda item: item[1][0]):
            verb = "sees" if len(names) == 1 else "see"
            if text:
                parts.append(
                    "%s %s value %s%s" % (_hosts_text(names), verb, chr(letter), _size(values[text]))
                )
                letter += 1
            else:
                parts.append("%s %s none" % (_hosts_text(names), verb))
        problems.append(
            Problem(
                key,
                "the gateways do not all see the same value: %s. The gateway role would use the value of "
                "whichever host comes first in its play; define it once for every gateway (group_vars/all, "
                "or the vars of a group that holds every gateway)" % "; ".join(parts),
            )
        )
    return problems


def _prefixed(problem: Problem, host: str) -> str:
    """A problem of a global variable as ``host`` sees it: ``hostvars.<host>.ipsec_tunnels[0]...``
    (problems of host variables already start with ``hostvars.``)."""
    root = problem.path.split("[", 1)[0].split(".", 1)[0]
    if root.startswith("ipsec_"):
        return str(Problem("hostvars.%s.%s" % (host, problem.path), problem.message))
    return str(problem)


def _no_tunnel(hosts: List[HostView], gateways: List[HostView]) -> str:
    if not hosts:
        return "the inventory has no host: check -i (ansible-inventory -i <source> --graph shows what Ansible reads)"
    where = "as the %d inventory host%s see%s them in all, group_vars and host_vars" % (
        len(hosts),
        "" if len(hosts) == 1 else "s",
        "s" if len(hosts) == 1 else "",
    )
    if not gateways:
        return (
            "no gateway and no tunnel: no host has ipsec_public_address, and neither ipsec_tunnels nor ipsec_topologies describe a tunnel (%s)"
            % where
        )
    return "no tunnel: neither ipsec_tunnels nor ipsec_topologies describe one (%s)" % where


def check_views(
    hosts: List[HostView],
    groups: Mapping[str, Sequence[str]],
    engine: Optional[str] = None,
    read_file: Any = None,
    require_tunnels: bool = False,
    flagged: Sequence[str] = (),
) -> Outcome:
    """Validate the inventory as every gateway sees it (see the module docstring)."""
    hosts = sorted(hosts, key=lambda h: h.name)
    named: Set[str] = set()
    for host in hosts:
        named |= named_hosts(host.view, groups)
    gateways = [h for h in hosts if h.name in named or any(key in h.own for key in HOST_VARIABLES)]
    deciding = gateways or [h for h in hosts if h.view]
    own = {h.name: h.own for h in hosts}
    distinct: Dict[str, List[HostView]] = {}
    for host in deciding:
        distinct.setdefault(_canonical(host.view), []).append(host)
    templating: List[str] = []
    for host in deciding:
        for path, message in host.errors:
            if str(Problem(path, message)) not in templating:
                templating.append(str(Problem(path, message)))
    flags = list(flagged) + [path for host in deciding for path, _message in host.errors]
    if len(distinct) <= 1:
        view = next(iter(distinct.values()))[0].view if distinct else {}
        inventory = Inventory(view, own, groups, engine, read_file=read_file, flagged=flags)
        found = inventory.problems if templating else engine_check(inventory)
        problems = templating + [str(p) for p in found if str(p) not in templating]
        if require_tunnels and not inventory.tunnels and not problems:
            problems.append(_no_tunnel(hosts, gateways))
        return Outcome(inventory if not problems else None, problems, [str(w) for w in inventory.warnings])
    problems = templating + [str(p) for p in _disagreements(deciding)]
    # Each distinct view is checked; what every view has is reported once, the rest with the host
    # (the first in name order) whose view it comes from.
    checked = []
    for members in distinct.values():
        inventory = Inventory(members[0].view, own, groups, engine, read_file=read_file, flagged=flags)
        checked.append((members[0].name, inventory.problems, inventory.warnings))
    everywhere = set.intersection(*(set(map(str, found)) for _name, found, _w in checked))
    common = set.intersection(*(set(map(str, found)) for _name, _p, found in checked))
    warnings: List[str] = []
    for first, found, cautions in checked:
        for items, shared, out in ((found, everywhere, problems), (cautions, common, warnings)):
            for item in items:
                text = str(item) if str(item) in shared else _prefixed(item, first)
                if text not in out:
                    out.append(text)
    return Outcome(None, problems, warnings)
