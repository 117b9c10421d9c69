"""How the inventory check scales: playbooks/validate.yml on generated hub-and-spoke and full-mesh inventories.

    .venv/bin/python bench/validate_scale.py                         # the default curve, median of 3
    .venv/bin/python bench/validate_scale.py --spokes 100,1000 --mesh 50 --repeat 3
    .venv/bin/python bench/validate_scale.py --checkout /tmp/old     # another checkout (before/after)
    /usr/bin/python3 bench/validate_scale.py --in-process           # the check alone, this interpreter

Each point generates an inventory (a hub with N spokes in one ``hub_and_spoke`` topology, or M
members of one ``full_mesh``; every variable in ``all.vars`` and the hosts' own, so that any
version of validate.yml sees them), runs ``ansible-playbook -i INVENTORY playbooks/validate.yml``
of the checkout ``--repeat`` times and prints the median wall time, the ratio to the baseline
(the same ansible-playbook run on an inventory of the same hosts without any ``ipsec_*``
variable, with a play that does nothing: the cost of Ansible itself), whether it passed, and
the load average (1 min) when the point started.  ``--in-process`` times
``pyike_inventory.validate_inventory`` on the same data in this interpreter instead (no Ansible;
``/usr/bin/python3`` works, with the built-in schema validator when jsonschema is missing).
A point that exceeds ``--timeout`` is printed as such and the larger sizes of its curve are
skipped.  Not a test: it asserts nothing; compare ratios and curves from one run.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
PSK = "bench-only-psk-0f8e2d71c4a9b5e6"
IKE = {"ike": {"proposals": ["aes256gcm16-prfsha256-x25519"]}}
ESP = {"esp": {"proposals": ["aes256gcm16"]}}


def _spoke_address(index: int) -> str:
    return str(ipaddress.ip_address("100.64.0.0") + index)


def _spoke_lan(index: int) -> str:
    return "10.%d.%d.0/24" % (index >> 8, index & 0xFF)


def _global_vars(topology: Dict[str, Any]) -> Dict[str, Any]:
    """all.vars: the proposal groups and one topology, its key from a variable as in production."""
    return {
        "vault_psk": PSK,
        "ipsec_ike_groups": IKE,
        "ipsec_esp_groups": ESP,
        "ipsec_topologies": [{**topology, "ike_group": "ike", "esp_group": "esp", "psk": "{{ vault_psk }}"}],
    }


def hub_and_spoke(spokes: int) -> Dict[str, Any]:
    """An inventory: hub (192.0.2.1, 172.16.0.0/24) and spokes s1..sN in group spokes."""
    hosts = {
        "s%d" % i: {"ipsec_public_address": _spoke_address(i), "ipsec_lan_subnets": [_spoke_lan(i)]}
        for i in range(1, spokes + 1)
    }
    return {
        "all": {
            "vars": _global_vars(
                {"name": "star", "type": "hub_and_spoke", "hub": "hub", "spokes_group": "spokes"}
            ),
            "children": {
                "gateways": {
                    "children": {
                        "hubs": {
                            "hosts": {
                                "hub": {
                                    "ipsec_public_address": "192.0.2.1",
                                    "ipsec_lan_subnets": ["172.16.0.0/24"],
                                }
                            }
                        },
                        "spokes": {"hosts": hosts},
                    }
                }
            },
        }
    }


def full_mesh(members: int) -> Dict[str, Any]:
    """An inventory: members m1..mM (198.18.0.i, 10.100.i.0/24) in group gateways, one full mesh."""
    hosts = {
        "m%d" % i: {
            "ipsec_public_address": str(ipaddress.ip_address("198.18.0.0") + i),
            "ipsec_lan_subnets": ["10.100.%d.0/24" % i],
        }
        for i in range(1, members + 1)
    }
    return {
        "all": {
            "vars": _global_vars({"name": "mesh", "type": "full_mesh", "members_group": "gateways"}),
            "children": {"gateways": {"hosts": hosts}},
        }
    }


def without_ipsec(inventory: Dict[str, Any]) -> Dict[str, Any]:
    """The same hosts and groups without any ipsec_* variable (the baseline's inventory)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: strip(v) for k, v in node.items() if not (isinstance(k, str) and k.startswith("ipsec_"))
            }
        return node

    return strip(inventory)


NOTHING = [{"name": "Nothing", "hosts": "localhost", "gather_facts": False, "tasks": []}]


def _env(checkout: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(checkout / ".build" / "collections")
    env["ANSIBLE_CONFIG"] = str(checkout / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def run_playbook(
    checkout: Path, inventory: Path, playbook: Path, timeout: float
) -> Tuple[float, Optional[int]]:
    """(wall seconds, return code or None on timeout)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            ["ansible-playbook", "-i", str(inventory), str(playbook)],
            capture_output=True,
            text=True,
            env=_env(checkout),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, None
    return time.perf_counter() - start, done.returncode


def in_process(checkout: Path, inventory: Dict[str, Any]) -> Tuple[float, Optional[int]]:
    """validate_inventory on the inventory's data in this interpreter: (seconds, 0 if valid else 1)."""
    sys.path.insert(0, str(checkout / "plugins" / "module_utils"))
    from pyike_inventory import validate_inventory

    top = inventory["all"]
    data = {k: v for k, v in top["vars"].items() if k.startswith("ipsec_")}
    for item in data.get("ipsec_topologies", []):
        item["psk"] = PSK
    hosts: Dict[str, Any] = {}
    groups: Dict[str, List[str]] = {"all": []}

    def walk(name: str, node: Dict[str, Any], parents: List[str]) -> None:
        groups.setdefault(name, [])
        for host, values in (node.get("hosts") or {}).items():
            hosts[host] = dict(values, group_names=sorted({*parents, name}))
            for group in [*parents, name, "all"]:
                groups.setdefault(group, []).append(host)
        for child, sub in (node.get("children") or {}).items():
            walk(child, sub, [*parents, name])

    for child, sub in top["children"].items():
        walk(child, sub, [])
    start = time.perf_counter()
    problems = validate_inventory(data, hosts, groups)
    return time.perf_counter() - start, 1 if problems else 0


def point(
    checkout: Path, kind: str, size: int, repeat: int, timeout: float, work: Path, use_process: bool
) -> Dict[str, Any]:
    inventory = hub_and_spoke(size) if kind == "spokes" else full_mesh(size)
    path = work / ("%s-%d.json" % (kind, size))  # JSON is YAML; Ansible's yaml plugin reads it
    path.write_text(json.dumps(inventory))
    load = os.getloadavg()[0]
    times, codes = [], []
    for _attempt in range(repeat):
        if use_process:
            seconds, code = in_process(checkout, json.loads(path.read_text()))
        else:
            seconds, code = run_playbook(checkout, path, checkout / "playbooks" / "validate.yml", timeout)
        times.append(seconds)
        codes.append(code)
        if code is None:
            break
    baseline = None
    if not use_process:
        bare = work / ("%s-%d-bare.json" % (kind, size))
        bare.write_text(json.dumps(without_ipsec(inventory)))
        nothing = work / "nothing.yml"
        nothing.write_text(json.dumps(NOTHING))
        baseline = statistics.median(
            run_playbook(checkout, bare, nothing, timeout)[0] for _run in range(repeat)
        )
    return {
        "kind": kind,
        "size": size,
        "tunnels": size if kind == "spokes" else size * (size - 1) // 2,
        "seconds": statistics.median(times),
        "runs": len(times),
        "baseline": baseline,
        "timeout": None in codes,
        "passed": all(code == 0 for code in codes),
        "load": load,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--spokes", default="100,200,500,1000", help="hub-and-spoke sizes (comma-separated)")
    parser.add_argument("--mesh", default="10,20,40,50", help="full-mesh sizes (comma-separated)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per point; the median counts")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a run is given up")
    parser.add_argument("--checkout", type=Path, default=REPO, help="the collection checkout to measure")
    parser.add_argument(
        "--in-process", action="store_true", help="time validate_inventory in this interpreter"
    )
    parser.add_argument("--json", action="store_true", help="print the points as JSON lines too")
    args = parser.parse_args(argv)
    checkout = args.checkout.resolve()
    if not args.in_process and not (checkout / ".build" / "collections").exists():
        parser.error("%s has no .build/collections: run make setup there first" % checkout)
    work = Path(tempfile.mkdtemp(prefix="pyike-validate-scale-"))
    how = "validate_inventory in %s" % sys.executable if args.in_process else "ansible-playbook validate.yml"
    sys.stdout.write(
        "checkout %s, %s, median of %d, %d CPUs\n" % (checkout, how, args.repeat, os.cpu_count() or 0)
    )
    header = "%-8s %6s %8s %10s %10s %7s %6s %s\n" % (
        "curve",
        "size",
        "tunnels",
        "seconds",
        "ansible",
        "ratio",
        "load",
        "result",
    )
    sys.stdout.write(header)
    try:
        for kind, sizes in (("spokes", args.spokes), ("mesh", args.mesh)):
            for size in [int(s) for s in sizes.split(",") if s.strip()]:
                found = point(checkout, kind, size, args.repeat, args.timeout, work, args.in_process)
                ratio = found["seconds"] / found["baseline"] if found["baseline"] else None
                sys.stdout.write(
                    "%-8s %6d %8d %10s %10s %7s %6.2f %s\n"
                    % (
                        kind,
                        size,
                        found["tunnels"],
                        (">%.0f" % args.timeout) if found["timeout"] else "%.2f" % found["seconds"],
                        "-" if found["baseline"] is None else "%.2f" % float(found["baseline"]),
                        "{:.1f}".format(ratio) if ratio and not found["timeout"] else "-",
                        found["load"],
                        "timeout" if found["timeout"] else ("valid" if found["passed"] else "FAILED"),
                    )
                )
                if args.json:
                    sys.stdout.write(json.dumps(found) + "\n")
                sys.stdout.flush()
                if found["timeout"]:
                    break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
