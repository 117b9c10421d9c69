"""Example inventories (schemas/examples/inventory) read the way the validate action gathers them.

An example is an Ansible YAML inventory.  :func:`load_inventory` merges variables as Ansible does
for this subset (all.vars < parent group vars < child group vars < host vars), renders
``"{{ name }}"`` references, and splits them into the action's ``data`` (global variables, as
the first host sees them), ``hosts`` (per host its own ipsec_* variables and group_names) and
``groups``.  Bad examples list their expected problems in comment lines ``# expect: <problem>``
(see :func:`expected_problems`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml
from pyike_inventory import global_names, host_names

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "schemas" / "examples" / "inventory"
GOOD = sorted((EXAMPLES / "good").glob("*.yml"))
BAD = sorted((EXAMPLES / "bad").glob("*.yml"))
SCHEMA_FILE = REPO / "schemas" / "inventory.schema.json"

_REFERENCE = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")


def _render(value: Any, variables: Dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {key: _render(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, variables) for item in value]
    if isinstance(value, str):
        match = _REFERENCE.match(value)
        if match:
            return _render(variables[match.group(1)], variables)
    return value


def read_inventory(path: Path) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, List[str]]]:
    """(host -> merged variables, group -> hosts) of a YAML inventory."""
    document = yaml.safe_load(path.read_text())
    hostvars: Dict[str, Dict[str, Any]] = {}
    groups: Dict[str, List[str]] = {}
    memberships: Dict[str, List[str]] = {}

    def walk(group: str, node: Any, inherited: Dict[str, Any]) -> List[str]:
        node = node or {}
        variables = {**inherited, **(node.get("vars") or {})}
        members = groups.setdefault(group, [])
        for host, own in (node.get("hosts") or {}).items():
            hostvars[host] = {**hostvars.get(host, {}), **variables, **(own or {})}
            memberships.setdefault(host, [])
            if group != "all" and group not in memberships[host]:
                memberships[host].append(group)
            if host not in members:
                members.append(host)
        for child, child_node in (node.get("children") or {}).items():
            for host in walk(child, child_node, variables):
                if host not in members:
                    members.append(host)
                if group != "all" and group not in memberships[host]:
                    memberships[host].append(group)
        return members

    walk("all", document["all"], {})
    groups.setdefault("ungrouped", [])
    for host, variables in hostvars.items():
        variables["group_names"] = sorted(memberships.get(host, []))
    return hostvars, groups


def load_inventory(path: Path):
    """(data, hosts, groups) for validate_inventory / engine_configs, as the action gathers them."""
    hostvars, groups = read_inventory(path)
    first = groups["all"][0]
    first_vars = hostvars[first]
    data = {key: _render(first_vars[key], first_vars) for key in global_names(first_vars)}
    hosts = {}
    for host in groups["all"]:
        variables = hostvars[host]
        own = {key: _render(variables[key], variables) for key in host_names(variables, data)}
        own["group_names"] = variables["group_names"]
        hosts[host] = own
    return data, hosts, groups


def expected_problems(path: Path) -> List[str]:
    """The ``# expect: <problem>`` comment lines; a long problem continues on ``#   ...`` lines
    (joined with one space), so that the files stay within the YAML line length."""
    found: List[str] = []
    continuing = False
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            found.append(line[len("# expect:") :].strip())
            continuing = True
        elif continuing and line.startswith("#   "):
            found[-1] += " " + line[1:].strip()
        else:
            continuing = False
    return found
