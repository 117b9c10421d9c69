"""Example and corpus inventories, read the way the validate action gathers them.

An inventory is a YAML inventory file, or a directory holding ``hosts.yml`` with ``group_vars/``
and ``host_vars/`` beside it.  :func:`read_inventory` merges variables as Ansible does for this
subset (all < parent groups < child groups < host; inventory vars < group_vars/host_vars files)
and :func:`host_views` renders ``"{{ name }}"`` references and splits each host's variables into
its own gateway variables and the global variables as it sees them: the input of
``pyike_inventory.check_views``, which the action calls with what Ansible templated.

Expected outcomes are comment lines of the inventory (of ``hosts.yml`` for a directory); a long
line continues on ``#   ...`` lines, joined with one space:

* ``# expect: <problem>``: a problem both validators report;
* ``# expect-action: <problem>``: one only the action reports (about inventory sources);
* ``# warn: <warning>``: a warning;
* ``# action-only: <why>``: the case needs Ansible (Jinja filters, vault): the unit test skips it;
* ``# vault-password: <password>``: the integration test gives it to ansible-playbook;
* ``# secret: <text>``: a text that must not appear in any output (besides every psk value).

A case without ``# expect:`` lines must be valid.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml
from pyike_inventory import HostView, global_names, host_names

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "schemas" / "examples" / "inventory"
GOOD = sorted((EXAMPLES / "good").glob("*.yml"))
BAD = sorted((EXAMPLES / "bad").glob("*.yml"))
SCHEMA_FILE = REPO / "schemas" / "inventory.schema.json"
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
CORPUS = sorted(
    list(CORPUS_DIR.glob("*/*.yml")) + [p for p in CORPUS_DIR.glob("*/*") if (p / "hosts.yml").is_file()]
)

_REFERENCE = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_MARKS = ("expect", "expect-action", "warn", "action-only", "vault-password", "secret")


def case_id(path: Path) -> str:
    return "%s/%s" % (path.parent.name, path.stem if path.is_file() else path.name)


def inventory_file(path: Path) -> Path:
    return path / "hosts.yml" if path.is_dir() else path


def marks(path: Path) -> Dict[str, List[str]]:
    """The ``# <mark>: text`` comment lines of a case, by mark."""
    found: Dict[str, List[str]] = {mark: [] for mark in _MARKS}
    current = None
    for line in inventory_file(path).read_text().splitlines():
        match = re.match(r"^# ([a-z-]+): ?(.*)$", line)
        if match and match.group(1) in found:
            current = match.group(1)
            found[current].append(match.group(2).strip())
        elif current and line.startswith("#   "):
            found[current][-1] += " " + line[1:].strip()
        else:
            current = None
    return found


def expected_problems(path: Path) -> List[str]:
    return marks(path)["expect"]


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _vars_files(directory: Path, name: str) -> Dict[str, Any]:
    """group_vars/<name>.yml or group_vars/<name>/*.yml (and host_vars alike)."""
    merged: Dict[str, Any] = {}
    for candidate in (directory / ("%s.yml" % name), directory / ("%s.yaml" % name)):
        merged.update(_load_yaml(candidate) or {})
    if (directory / name).is_dir():
        for item in sorted((directory / name).glob("*.yml")):
            merged.update(_load_yaml(item) or {})
    return merged


def read_inventory(path: Path) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, List[str]]]:
    """(host -> merged variables, group -> hosts) of a YAML inventory file or directory."""
    source = inventory_file(path)
    base = source.parent
    document = yaml.safe_load(source.read_text()) or {}
    hostvars: Dict[str, Dict[str, Any]] = {}
    groups: Dict[str, List[str]] = {}
    memberships: Dict[str, List[str]] = {}

    def walk(group: str, node: Any, inherited: Dict[str, Any]) -> List[str]:
        node = node or {}
        variables = {**inherited, **(node.get("vars") or {}), **_vars_files(base / "group_vars", group)}
        members = groups.setdefault(group, [])
        for host, own in (node.get("hosts") or {}).items():
            own_vars = {**(own or {}), **_vars_files(base / "host_vars", host)}
            hostvars[host] = {**hostvars.get(host, {}), **variables, **own_vars}
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

    walk("all", document.get("all"), {})
    groups.setdefault("ungrouped", [])
    for host, variables in hostvars.items():
        variables["group_names"] = sorted(memberships.get(host, []))
    return hostvars, groups


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


def host_views(path: Path) -> Tuple[List[HostView], Dict[str, List[str]]]:
    """Every host's view, as the action builds them, and the groups."""
    hostvars, groups = read_inventory(path)
    views = []
    for host in groups["all"]:
        variables = hostvars[host]
        global_keys = global_names(variables)
        view = {key: _render(variables[key], variables) for key in global_keys}
        own = {key: _render(variables[key], variables) for key in host_names(variables, global_keys)}
        own["group_names"] = variables["group_names"]
        views.append(HostView(host, own, view))
    return views, groups


def load_inventory(path: Path):
    """(data, hosts, groups) for validate_inventory / engine_configs: the global variables as the first
    host sees them (the examples define them once, for every host)."""
    views, groups = host_views(path)
    data = views[0].view if views else {}
    return data, {view.name: view.own for view in views}, groups
